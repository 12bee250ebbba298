"""A replayed record whose delete this container already confirmed costs no request.

Lambda replays every record after the lowest one reported; re-deleting an item that is
gone still costs a write unit, and an item created again since must not be deleted by the
old record's replay.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from stream_scavenger.local.dynamodb_local import LOCAL_CLIENT_SETTINGS
from stream_scavenger.runtime.scavenger.config import ScavengerConfig
from stream_scavenger.runtime.scavenger.deleter import ConfirmedDeletes
from stream_scavenger.runtime.scavenger.handler import Scavenger, make_client
from testkit.events import Context, event, record
from testkit.proxy import Fault, FaultProxy
from testkit.tables import put_items, scan_keys

KEYS = [f"k{i:02d}" for i in range(20)]


def _first_five(items: list[dict[str, Any]]) -> list[int]:
    return [i for i, item in enumerate(items) if item["DeleteRequest"]["Key"]["pk"]["S"] < "k05"]


@pytest.fixture
def proxy(ddb_local: Any) -> Iterator[FaultProxy]:
    # The first request leaves k00..k04 unprocessed and their retry fails (a 500: with one
    # attempt, they are reported); later requests pass.
    def schedule(index: int, body: Any) -> Fault | None:
        return (Fault.unprocessed(pick=_first_five), Fault.http(500))[index] if index < 2 else None

    with FaultProxy(ddb_local.endpoint_url, schedule) as p:
        yield p


def _scavenger(proxy: FaultProxy, table: str) -> Scavenger:
    config = ScavengerConfig.single(target_table=table, key_mapping={"pk": "pk"}, max_attempts=1)
    return Scavenger(config, make_client(config, endpoint_url=proxy.url, **LOCAL_CLIENT_SETTINGS))


def test_a_replay_sends_only_what_was_not_confirmed(
    ddb: Any, make_table: Any, proxy: FaultProxy
) -> None:
    table = make_table({"pk": "S"})
    put_items(ddb, table, [{"pk": k} for k in KEYS])
    batch = event(*(record("INSERT", {"pk": k}) for k in KEYS))
    scavenger = _scavenger(proxy, table)

    first_answer = scavenger.handle(batch, Context(30_000))
    assert len(first_answer["batchItemFailures"]) == 5
    assert scan_keys(ddb, table, ["pk"]) == {(k,) for k in KEYS[:5]}
    put_items(ddb, table, [{"pk": "k10"}])  # created again after its delete was confirmed

    # Lambda replays from the lowest reported record: the whole batch here.
    replay = scavenger.handle(batch, Context(30_000))
    assert replay == {"batchItemFailures": []}
    assert proxy.counts.batch_items == [20, 5, 5]  # the replay sent only k00..k04
    assert scavenger.last_summary.remembered == 15
    assert scavenger.last_summary.targets[0].remembered == 15
    assert scavenger.last_summary.deleted == 5
    assert scan_keys(ddb, table, ["pk"]) == {("k10",)}  # the old record left the new item


def test_records_without_an_event_id_are_always_sent(
    ddb: Any, make_table: Any, proxy: FaultProxy
) -> None:
    table = make_table({"pk": "S"})
    put_items(ddb, table, [{"pk": k} for k in KEYS])
    records = [record("INSERT", {"pk": k}) for k in KEYS]
    for r in records:
        del r["eventID"]
    scavenger = _scavenger(proxy, table)
    scavenger.handle(event(*records), Context(30_000))
    scavenger.handle(event(*records), Context(30_000))
    assert proxy.counts.batch_items == [20, 5, 20]
    assert scavenger.last_summary.remembered == 0


def test_the_memory_is_bounded_oldest_first() -> None:
    memory = ConfirmedDeletes(capacity=2)
    a, b, c = (("arn", f"e{i}", str(i)) for i in range(3))
    key = (("pk", "S", "k"),)
    for record_id in (a, b, c):
        memory.add("t", record_id, key)
    assert [("t", r, key) in memory for r in (a, b, c)] == [False, True, True]
    assert ("u", b, key) not in memory  # per target table
    assert ("t", b, (("pk", "S", "other"),)) not in memory  # and per key
    assert len(memory) == 2


def test_two_records_sharing_an_id_do_not_stand_in_for_each_other(
    ddb_local: Any, ddb: Any, make_table: Any
) -> None:
    """Lambda never sends two records with one ID; arbitrary input may."""
    table = make_table({"pk": "S"})
    put_items(ddb, table, [{"pk": "a"}, {"pk": "b"}])
    twins = [record("INSERT", {"pk": k}, sequence_number="100", event_id="e") for k in "ab"]
    with FaultProxy(ddb_local.endpoint_url) as plain:
        scavenger = _scavenger(plain, table)
        scavenger.handle(event(twins[0]), Context(30_000))
        assert scavenger.handle(event(twins[1]), Context(30_000)) == {"batchItemFailures": []}
        assert plain.counts.batch_items == [1, 1]  # b was sent, not taken as remembered
    assert scan_keys(ddb, table, ["pk"]) == set()
