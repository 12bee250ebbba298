"""A key DynamoDB rejects on its own is unmappable: logged and counted, never reported.

Replaying the same bytes can never succeed, so reporting such a record would only block
the shard until ``max_record_age``. This matters most for imported targets, whose key
schema is unknown at synth time (``key_types`` empty): the record's key type is then
checked by DynamoDB alone. Here DynamoDB Local is the one that rejects.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.exceptions import ClientError

from stream_scavenger.local.dynamodb_local import LOCAL_CLIENT_SETTINGS
from stream_scavenger.runtime.scavenger.config import ScavengerConfig, TargetConfig
from stream_scavenger.runtime.scavenger.handler import Scavenger, make_client
from testkit.events import Context, event, record
from testkit.proxy import Fault, FaultProxy
from testkit.tables import put_items, scan_keys

#: table key type -> a typed value of another key type, as it comes in a stream record
WRONG_TYPE = {
    "N": {"S": "secret-4711"},
    "S": {"N": "4711"},
    "B": {"S": "secret-4711"},
}
GOOD = {"N": lambda i: i, "S": lambda i: f"k{i}", "B": lambda i: f"k{i}".encode()}


def warnings(err: str) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    return [line for line in lines if line["message"] == "unmappable record"]


def client_for(ddb_local: Any, config: ScavengerConfig) -> Any:
    return make_client(config, endpoint_url=ddb_local.endpoint_url, **LOCAL_CLIENT_SETTINGS)


@pytest.mark.parametrize("key_type", WRONG_TYPE)
def test_an_imported_targets_wrongly_typed_key_is_unmappable_not_reported(
    ddb: Any, ddb_local: Any, make_table: Any, key_type: str, capfd: pytest.CaptureFixture[str]
) -> None:
    table = make_table({"pk": key_type})
    put_items(ddb, table, [{"pk": GOOD[key_type](i)} for i in range(30)])
    records = [record("INSERT", {"pk": GOOD[key_type](i)}) for i in range(30)]
    # One wrongly typed key, named by two records.
    bad = [record("INSERT", {"pk": WRONG_TYPE[key_type]}, raw=True) for _ in range(2)]
    records[10:10] = bad[:1]
    records[20:20] = bad[1:]
    config = ScavengerConfig.single(target_table=table, key_mapping={"pk": "pk"}, key_types={})
    scavenger = Scavenger(config, client_for(ddb_local, config), sleep=lambda s: None)
    capfd.readouterr()

    response = scavenger.handle(event(*records), Context())

    assert response == {"batchItemFailures": []}, "a rejected key must not block the shard"
    assert scan_keys(ddb, table, ["pk"]) == set(), "every other key is deleted"
    summary = scavenger.last_summary
    assert (summary.matched, summary.unmappable, summary.deleted, summary.reported) == (
        30,
        2,
        30,
        0,
    )
    assert (summary.targets[0].matched, summary.targets[0].unmappable) == (30, 2)
    out = capfd.readouterr()
    logged = warnings(out.err)
    assert [w["sequence_number"] for w in logged] == [r["dynamodb"]["SequenceNumber"] for r in bad]
    assert all("ValidationException" in w["reason"] for w in logged)
    assert all(w["target_table"] == table for w in logged)
    assert "4711" not in out.out + out.err, "no key value in logs"
    assert "mismatch" not in (out.out + out.err).lower(), "not DynamoDB's message text either"


def test_a_key_rejected_in_one_target_still_deletes_from_the_others(
    ddb: Any, ddb_local: Any, make_table: Any
) -> None:
    numbers, strings = make_table({"pk": "N"}), make_table({"ref": "S"})
    put_items(ddb, numbers, [{"pk": 1}])
    put_items(ddb, strings, [{"ref": f"k{i}"} for i in range(5)])
    config = ScavengerConfig(
        targets=(TargetConfig(numbers, {"pk": "pk"}), TargetConfig(strings, {"ref": "pk"}))
    )
    scavenger = Scavenger(config, client_for(ddb_local, config), sleep=lambda s: None)
    records = [record("INSERT", {"pk": f"k{i}"}) for i in range(5)]

    response = scavenger.handle(event(*records), Context())

    assert response == {"batchItemFailures": []}
    assert scan_keys(ddb, strings, ["ref"]) == set()
    assert scan_keys(ddb, numbers, ["pk"]) == {("1",)}
    summary = scavenger.last_summary
    first, second = summary.targets
    assert (first.matched, first.unmappable, first.deleted, first.reported) == (0, 5, 0, 0)
    assert (second.matched, second.unmappable, second.deleted, second.reported) == (5, 0, 5, 0)
    # Each record still named a key (in the second target) and was unmappable in the first.
    assert (summary.matched, summary.unmappable, summary.reported) == (5, 5, 0)


def test_a_rejected_key_without_a_sequence_number_does_not_fail_the_batch(
    ddb: Any, ddb_local: Any, make_table: Any
) -> None:
    table = make_table({"pk": "N"})
    console = record("INSERT", {"pk": "not-a-number"})
    del console["dynamodb"]["SequenceNumber"]
    config = ScavengerConfig.single(target_table=table, key_mapping={"pk": "pk"})
    scavenger = Scavenger(config, client_for(ddb_local, config), sleep=lambda s: None)

    assert scavenger.handle(event(console), Context()) == {"batchItemFailures": []}
    assert scavenger.last_summary.unmappable == 1


def test_keys_confirmed_before_a_split_stay_confirmed(
    ddb: Any, ddb_local: Any, make_table: Any
) -> None:
    """25 keys; the answer leaves the last two unprocessed; their retry is rejected as invalid.

    The 23 confirmed keys must not be reported because the retry then splits.
    """
    table = make_table({"pk": "S"})
    put_items(ddb, table, [{"pk": f"k{i}"} for i in range(25)])
    records = [record("INSERT", {"pk": f"k{i}"}) for i in range(25)]
    schedule = {
        0: Fault.unprocessed(pick=lambda items: [23, 24]),
        1: Fault.error("ValidationException"),
    }
    config = ScavengerConfig.single(target_table=table, key_mapping={"pk": "pk"})
    with FaultProxy(ddb_local.endpoint_url, lambda index, body: schedule.get(index)) as proxy:
        client = make_client(config, endpoint_url=proxy.url, **LOCAL_CLIENT_SETTINGS)
        scavenger = Scavenger(config, client, sleep=lambda s: None)
        response = scavenger.handle(event(*records), Context())

    assert response == {"batchItemFailures": []}
    assert scan_keys(ddb, table, ["pk"]) == set()
    assert (scavenger.last_summary.deleted, scavenger.last_summary.deletes.splits) == (25, 1)


class RejectsEverything:
    """Answers every request with ValidationException; the last one ends at ``late_s``."""

    def __init__(self, clock: list[float], late_s: float | None) -> None:
        self.clock, self.late_s = clock, late_s

    def batch_write_item(self, **kwargs: Any) -> dict[str, Any]:
        if self.late_s is not None:
            self.clock[0] = self.late_s
        raise ClientError(
            {"Error": {"Code": "ValidationException", "Message": "value 4711 is bad"}},
            "BatchWriteItem",
        )


@pytest.mark.parametrize("late", [False, True], ids=["in-time", "past-the-deadline"])
def test_logging_rejected_records_never_overruns_the_answer(
    late: bool, capfd: pytest.CaptureFixture[str]
) -> None:
    """One rejected key named by 100 records: one line each, or one line if out of time."""
    clock = [0.0]

    class Context:
        def get_remaining_time_in_millis(self) -> int:
            return int((10.0 - clock[0]) * 1000)

    # 10 s budget, 0.8 s reserve: at 9.7 s the deadline is 0.5 s behind, past half the reserve.
    client = RejectsEverything(clock, 9.7 if late else None)
    config = ScavengerConfig.single(target_table="table", key_mapping={"pk": "pk"})
    scavenger = Scavenger(config, client, sleep=lambda s: None, clock=lambda: clock[0])
    records = [record("INSERT", {"pk": "k"}) for _ in range(100)]
    capfd.readouterr()

    assert scavenger.handle(event(*records), Context()) == {"batchItemFailures": []}

    assert scavenger.last_summary.unmappable == 100
    lines = [json.loads(x) for x in capfd.readouterr().err.splitlines() if x.startswith("{")]
    one_by_one = [x for x in lines if x["message"] == "unmappable record"]
    counted = [x for x in lines if x["message"].startswith("unmappable records not logged")]
    if late:
        assert (len(one_by_one), [x["count"] for x in counted]) == (0, [100])
    else:
        assert (len(one_by_one), counted) == (100, [])
    assert "4711" not in json.dumps(lines)
