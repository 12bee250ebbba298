"""A 2xx is not a confirmation unless it is a well-formed, verified BatchWriteItem answer.

Only keys that were sent and are absent from a present ``UnprocessedItems`` map (whose
tables and keys are among those sent) of an answer whose ``x-amz-crc32`` matches its body
count as deleted. Anything else is retried like a 5xx and, if it never gets better, the
records are reported: never acknowledged while their keys remain.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from stream_scavenger.local.dynamodb_local import LOCAL_CLIENT_SETTINGS
from stream_scavenger.runtime.scavenger.config import ScavengerConfig
from stream_scavenger.runtime.scavenger.handler import Scavenger, make_client
from testkit.events import Context, event, record
from testkit.proxy import Fault, FaultProxy, always, first
from testkit.tables import put_items, scan_keys

pytestmark = pytest.mark.ddb


def _unprocessed(table: str, key: str) -> bytes:
    item = {"DeleteRequest": {"Key": {"pk": {"S": key}}}}
    return json.dumps({"UnprocessedItems": {table: [item]}}).encode()


#: name -> (fault for a table, the error code the scavenger counts it under)
MALFORMED: dict[str, tuple[Callable[[str], Fault], str]] = {
    "empty-body": (lambda t: Fault.malformed(b""), "MalformedResponse"),
    "empty-object": (lambda t: Fault.malformed(b"{}"), "MalformedResponse"),
    "not-json": (lambda t: Fault.malformed(b"<html>OK</html>"), "MalformedResponse"),
    "error-shaped-200": (
        lambda t: Fault.malformed(b'{"__type":"x#ValidationException","message":"no"}'),
        "MalformedResponse",
    ),
    "unprocessed-null": (
        lambda t: Fault.malformed(b'{"UnprocessedItems":null}'),
        "MalformedResponse",
    ),
    "unprocessed-items-not-a-list": (
        lambda t: Fault.malformed(json.dumps({"UnprocessedItems": {t: "all"}}).encode()),
        "AttributeError",  # botocore's parser fails on it: no answer at all, retried as well
    ),
    "unprocessed-put-request": (
        lambda t: Fault.malformed(
            json.dumps({"UnprocessedItems": {t: [{"PutRequest": {"Item": {}}}]}}).encode()
        ),
        "MalformedResponse",
    ),
    "unprocessed-table-not-sent": (
        lambda t: Fault.malformed(_unprocessed("not-a-target", "k0")),
        "MalformedResponse",
    ),
    "unprocessed-key-not-sent": (
        lambda t: Fault.malformed(_unprocessed(t, "never-sent")),
        "MalformedResponse",
    ),
    "wrong-crc32": (lambda t: Fault.bad_crc(), "ChecksumMismatch"),
}


@pytest.fixture
def proxy(ddb_local: Any) -> Iterator[FaultProxy]:
    with FaultProxy(ddb_local.endpoint_url) as running:
        yield running


def setup(ddb: Any, make_table: Any, proxy: FaultProxy, n: int, **options: Any) -> Any:
    table = make_table({"pk": "S"})
    put_items(ddb, table, [{"pk": f"k{i}"} for i in range(n)] + [{"pk": "keep"}])
    records = [record("INSERT", {"pk": f"k{i}"}) for i in range(n)]
    config = ScavengerConfig.single(target_table=table, key_mapping={"pk": "pk"}, **options)
    client = make_client(config, endpoint_url=proxy.url, **LOCAL_CLIENT_SETTINGS)
    return table, records, Scavenger(config, client, sleep=lambda s: None)


@pytest.mark.parametrize("case", MALFORMED.values(), ids=MALFORMED.keys())
def test_an_answer_that_confirms_nothing_never_acknowledges_a_record(
    ddb: Any, make_table: Any, proxy: FaultProxy, case: tuple[Callable[[str], Fault], str]
) -> None:
    make_fault, code = case
    table, records, scavenger = setup(ddb, make_table, proxy, 30, max_attempts=3)
    proxy.schedule = always(make_fault(table))

    response = scavenger.handle(event(*records), Context())

    assert [f["itemIdentifier"] for f in response["batchItemFailures"]] == [
        r["dynamodb"]["SequenceNumber"] for r in records
    ]
    assert len(scan_keys(ddb, table, ["pk"])) == 31, "the proxy forwarded no delete"
    summary = scavenger.last_summary
    assert (summary.deleted, summary.reported) == (0, 30)
    assert proxy.counts.operations["BatchWriteItem"] == summary.deletes.requests == 2 * 3
    assert summary.deletes.errors == 6 and summary.deletes.retries == 4


@pytest.mark.parametrize("case", MALFORMED.values(), ids=MALFORMED.keys())
def test_an_answer_that_confirms_nothing_is_retried_like_a_5xx(
    ddb: Any,
    make_table: Any,
    proxy: FaultProxy,
    case: tuple[Callable[[str], Fault], str],
    capfd: pytest.CaptureFixture[str],
) -> None:
    make_fault, code = case
    table, records, scavenger = setup(ddb, make_table, proxy, 30)
    proxy.schedule = first(2, make_fault(table))
    capfd.readouterr()

    response = scavenger.handle(event(*records), Context())

    assert response == {"batchItemFailures": []}
    assert scan_keys(ddb, table, ["pk"]) == {("keep",)}
    summary = scavenger.last_summary
    assert (summary.deleted, summary.deletes.retries, summary.deletes.errors) == (30, 2, 2)
    (line,) = [json.loads(x) for x in capfd.readouterr().err.splitlines() if '"scavenged"' in x]
    assert line["summary"]["deletes"]["error_codes"] == {code: 2}


def test_a_wrong_crc32_after_the_deletes_is_retried_and_then_confirmed(
    ddb: Any, make_table: Any, proxy: FaultProxy
) -> None:
    table, records, scavenger = setup(ddb, make_table, proxy, 30)
    proxy.schedule = first(1, Fault.bad_crc(after=True))

    assert scavenger.handle(event(*records), Context()) == {"batchItemFailures": []}

    assert scan_keys(ddb, table, ["pk"]) == {("keep",)}
    assert proxy.counts.operations["BatchWriteItem"] == 3  # 2 chunks, one of them twice
    assert (scavenger.last_summary.deletes.retries, scavenger.last_summary.deletes.errors) == (1, 1)


def test_an_answer_without_a_checksum_header_is_checked_for_structure_only(
    ddb: Any, make_table: Any, proxy: FaultProxy
) -> None:
    table, records, scavenger = setup(ddb, make_table, proxy, 30)
    proxy.schedule = always(Fault.no_crc())

    assert scavenger.handle(event(*records), Context()) == {"batchItemFailures": []}

    assert scan_keys(ddb, table, ["pk"]) == {("keep",)}
    assert proxy.counts.faults["answer:no-crc"] == 2
    assert (scavenger.last_summary.deletes.retries, scavenger.last_summary.deletes.errors) == (0, 0)


class Answers:
    """DynamoDB Local underneath; each answer rewritten by ``rewrite`` (for any client)."""

    def __init__(self, client: Any, rewrite: Callable[[dict[str, Any]], Any], forward: bool):
        self.client, self.rewrite, self.forward = client, rewrite, forward

    def batch_write_item(self, **kwargs: Any) -> Any:
        answer = self.client.batch_write_item(**kwargs) if self.forward else {}
        return self.rewrite(answer)


@pytest.mark.parametrize(
    "rewrite",
    [lambda a: None, lambda a: {}, lambda a: "ok", lambda a: {"UnprocessedItems": []}],
    ids=["none", "empty", "a-string", "unprocessed-list"],
)
def test_the_structure_check_holds_for_any_client(
    ddb: Any, make_table: Any, rewrite: Callable[[dict[str, Any]], Any]
) -> None:
    table = make_table({"pk": "S"})
    put_items(ddb, table, [{"pk": f"k{i}"} for i in range(5)])
    config = ScavengerConfig.single(target_table=table, key_mapping={"pk": "pk"}, max_attempts=2)
    scavenger = Scavenger(config, Answers(ddb, rewrite, forward=False), sleep=lambda s: None)

    response = scavenger.handle(event(*(record("INSERT", {"pk": f"k{i}"}) for i in range(5))))

    assert len(response["batchItemFailures"]) == 5
    assert scavenger.last_summary.deletes.errors == 2 and scavenger.last_summary.deleted == 0


def test_a_malformed_consumed_capacity_does_not_undo_confirmed_deletes(
    ddb: Any, make_table: Any
) -> None:
    table = make_table({"pk": "S"})
    put_items(ddb, table, [{"pk": f"k{i}"} for i in range(5)])
    config = ScavengerConfig.single(target_table=table, key_mapping={"pk": "pk"})
    client = Answers(ddb, lambda a: {**a, "ConsumedCapacity": "lots"}, forward=True)
    scavenger = Scavenger(config, client, sleep=lambda s: None)

    response = scavenger.handle(event(*(record("INSERT", {"pk": f"k{i}"}) for i in range(5))))

    assert response == {"batchItemFailures": []}
    assert scan_keys(ddb, table, ["pk"]) == set()
    assert (scavenger.last_summary.deleted, scavenger.last_summary.deletes.consumed_wcu) == (5, 0.0)


def test_an_error_answer_that_fails_its_checksum_is_not_trusted_either(
    ddb: Any, make_table: Any, proxy: FaultProxy
) -> None:
    """A ValidationException makes a lone key unmappable: a corrupted one must not."""
    table, records, scavenger = setup(ddb, make_table, proxy, 1, max_attempts=3)
    proxy.schedule = always(Fault.error("ValidationException", crc="bad"))

    response = scavenger.handle(event(*records), Context())

    assert response == {
        "batchItemFailures": [{"itemIdentifier": records[0]["dynamodb"]["SequenceNumber"]}]
    }
    assert scavenger.last_summary.unmappable == 0
    assert proxy.counts.operations["BatchWriteItem"] == 3, "retried like a 5xx"
