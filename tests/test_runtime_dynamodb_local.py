"""The scavenger runtime against DynamoDB Local: items really gone, requests counted."""

from __future__ import annotations

import math
from typing import Any

import pytest

from stream_scavenger.runtime.scavenger.config import ScavengerConfig
from stream_scavenger.runtime.scavenger.handler import Scavenger
from testkit.events import Context, event, record
from testkit.tables import CountingClient, put_items, scan_keys

pytestmark = pytest.mark.ddb


def scavenger(
    ddb: Any, table: str, mapping: dict[str, str], **kw: Any
) -> tuple[Scavenger, CountingClient]:
    client = CountingClient(ddb)
    config = ScavengerConfig.single(target_table=table, key_mapping=mapping, **kw)
    return Scavenger(config, client, sleep=lambda s: None), client


def test_article_scenario_deletes_exactly_the_inserted_messages(ddb: Any, make_table: Any) -> None:
    staging = make_table({"messageId": "S", "createdAt": "N"})
    put_items(ddb, staging, [{"messageId": f"m{i}", "createdAt": 1000 + i} for i in range(60)])
    records = [record("INSERT", {"messageId": f"m{i}", "createdAt": 1000 + i}) for i in range(50)]
    scav, client = scavenger(
        ddb,
        staging,
        {"messageId": "messageId", "createdAt": "createdAt"},
        key_types={"messageId": "S", "createdAt": "N"},
        sort_key="createdAt",
    )

    response = scav.handle(event(*records), Context())

    assert response == {"batchItemFailures": []}
    assert scan_keys(ddb, staging, ["messageId"]) == {(f"m{i}",) for i in range(50, 60)}
    assert client.calls == [25, 25]


def test_renamed_key_mapping(ddb: Any, make_table: Any) -> None:
    target = make_table({"stagingId": "S"})
    put_items(ddb, target, [{"stagingId": "a"}, {"stagingId": "b"}])
    scav, _ = scavenger(ddb, target, {"stagingId": "messageId"}, key_types={"stagingId": "S"})

    scav.handle(event(record("INSERT", {"messageId": "a", "createdAt": 1})), Context())

    assert scan_keys(ddb, target, ["stagingId"]) == {("b",)}


def test_non_key_mapping_reads_new_image_for_insert_and_old_image_for_remove(
    ddb: Any, make_table: Any
) -> None:
    target = make_table({"pk": "S", "sk": "S"})
    put_items(ddb, target, [{"pk": p, "sk": "x"} for p in ("ins", "rem", "keep")])
    scav, _ = scavenger(
        ddb,
        target,
        {"pk": "stagingKey", "sk": "kind"},
        event_names=frozenset({"INSERT", "REMOVE"}),
        sort_key="sk",
    )
    batch = event(
        record("INSERT", {"id": "1"}, new={"id": "1", "stagingKey": "ins", "kind": "x"}),
        record("REMOVE", {"id": "2"}, old={"id": "2", "stagingKey": "rem", "kind": "x"}),
        # a REMOVE's NewImage is never read: this one must not delete "keep"
        record("REMOVE", {"id": "3"}, new={"stagingKey": "keep", "kind": "x"}),
    )

    response = scav.handle(batch, Context())

    assert scan_keys(ddb, target, ["pk"]) == {("keep",)}
    assert response == {"batchItemFailures": []}  # the third record is unmappable, not replayed


@pytest.mark.parametrize(
    ("key_type", "values"),
    [
        ("S", ["plain", "ünïcødé ✓", "x" * 1024]),
        ("N", [0, -17, 3.25, 12345678901234567890123456789012345678]),
        ("B", [b"\x00", b"\xff\xfe binary", bytes(range(256))]),
    ],
)
def test_every_key_type_round_trips(
    ddb: Any, make_table: Any, key_type: str, values: list[Any]
) -> None:
    target = make_table({"k": key_type})
    put_items(ddb, target, [{"k": v} for v in values] + [{"k": _other(key_type)}])
    scav, _ = scavenger(ddb, target, {"k": "k"}, key_types={"k": key_type})

    response = scav.handle(event(*[record("INSERT", {"k": v}) for v in values]), Context())

    assert response == {"batchItemFailures": []}
    remaining = scan_keys(ddb, target, ["k"])
    assert len(remaining) == 1, remaining


def _other(key_type: str) -> Any:
    return {"S": "other", "N": 999, "B": b"other"}[key_type]


def test_duplicate_keys_are_sent_once_including_equal_numbers(ddb: Any, make_table: Any) -> None:
    target = make_table({"pk": "S", "n": "N"})
    put_items(ddb, target, [{"pk": f"p{i}", "n": 1} for i in range(10)])
    records = []
    for i in range(10):
        for spelling in ("1", "1.0", "1E0"):  # one number to DynamoDB, three strings
            records.append(record("INSERT", {"pk": {"S": f"p{i}"}, "n": {"N": spelling}}, raw=True))
    scav, client = scavenger(ddb, target, {"pk": "pk", "n": "n"}, sort_key="n")

    response = scav.handle(event(*records), Context())

    assert response == {"batchItemFailures": []}
    assert scan_keys(ddb, target, ["pk"]) == set()
    assert client.calls == [10]


def test_modify_and_remove_are_ignored_unless_selected(ddb: Any, make_table: Any) -> None:
    target = make_table({"pk": "S"})
    put_items(ddb, target, [{"pk": p} for p in ("i", "m", "r")])
    batch = event(
        record("INSERT", {"pk": "i"}), record("MODIFY", {"pk": "m"}), record("REMOVE", {"pk": "r"})
    )

    insert_only, client = scavenger(ddb, target, {"pk": "pk"})
    insert_only.handle(batch, Context())
    assert scan_keys(ddb, target, ["pk"]) == {("m",), ("r",)}
    assert client.calls == [1]

    modify_remove, _ = scavenger(
        ddb, target, {"pk": "pk"}, event_names=frozenset({"MODIFY", "REMOVE"})
    )
    modify_remove.handle(batch, Context())
    assert scan_keys(ddb, target, ["pk"]) == set()


@pytest.mark.parametrize(
    ("records", "distinct"), [(26, 26), (1000, 1000), (10_000, 10_000), (10_000, 2_500)]
)
def test_large_batches_use_the_minimum_number_of_requests(
    ddb: Any, make_table: Any, records: int, distinct: int
) -> None:
    target = make_table({"pk": "S", "sk": "N"})
    put_items(
        ddb, target, [{"pk": f"p{i}", "sk": i} for i in range(distinct)] + [{"pk": "keep", "sk": 0}]
    )
    batch = event(
        *[record("INSERT", {"pk": f"p{i % distinct}", "sk": i % distinct}) for i in range(records)]
    )
    scav, client = scavenger(ddb, target, {"pk": "pk", "sk": "sk"}, sort_key="sk")

    response = scav.handle(batch, Context())

    assert response == {"batchItemFailures": []}
    assert scan_keys(ddb, target, ["pk"]) == {("keep",)}
    assert len(client.calls) == math.ceil(distinct / 25)
    assert sum(client.calls) == distinct


def test_unmappable_record_in_the_middle_does_not_block_the_good_ones(
    ddb: Any, make_table: Any
) -> None:
    target = make_table({"pk": "S"})
    put_items(ddb, target, [{"pk": f"p{i}"} for i in range(5)])
    records = [record("INSERT", {"pk": f"p{i}"}) for i in range(5)]
    records.insert(2, record("INSERT", {"other": "no pk here"}))
    scav, _ = scavenger(ddb, target, {"pk": "pk"}, key_types={"pk": "S"})

    response = scav.handle(event(*records), Context())

    assert response == {"batchItemFailures": []}
    assert scan_keys(ddb, target, ["pk"]) == set()


def test_keys_not_deleted_are_reported_from_the_lowest_sequence_number(
    ddb: Any, make_table: Any
) -> None:
    target = make_table({"pk": "S"})
    put_items(ddb, target, [{"pk": f"p{i}"} for i in range(30)])
    records = [record("INSERT", {"pk": f"p{i}"}) for i in range(30)]

    class RefusesSecondChunk(CountingClient):
        def batch_write_item(self, **kwargs: Any) -> dict[str, Any]:
            keys = [r["DeleteRequest"]["Key"]["pk"]["S"] for r in kwargs["RequestItems"][target]]
            if "p29" in keys:
                from botocore.exceptions import ClientError

                raise ClientError(
                    {"Error": {"Code": "AccessDeniedException", "Message": "no"}}, "BatchWriteItem"
                )
            return super().batch_write_item(**kwargs)

    config = ScavengerConfig.single(target_table=target, key_mapping={"pk": "pk"})
    response = Scavenger(config, RefusesSecondChunk(ddb), sleep=lambda s: None).handle(
        event(*records), Context()
    )

    reported = [f["itemIdentifier"] for f in response["batchItemFailures"]]
    assert reported == [r["dynamodb"]["SequenceNumber"] for r in records[25:]]
    assert scan_keys(ddb, target, ["pk"]) == {(f"p{i}",) for i in range(25, 30)}
