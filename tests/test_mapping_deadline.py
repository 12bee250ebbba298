"""The deadline covers the mapping phase: a batch too slow to map is answered in time.

Mapping is made slow in simulated time (each record costs ``COST_S`` on a fake clock that
both ``Scavenger(clock=...)`` and the Lambda context read). The handler must stop mapping
in time, delete what it mapped, and report every record it did not map.
"""

from __future__ import annotations

from typing import Any

import pytest

from stream_scavenger.local.dynamodb_local import LOCAL_CLIENT_SETTINGS
from stream_scavenger.runtime.scavenger import handler as handler_module
from stream_scavenger.runtime.scavenger.config import ScavengerConfig
from stream_scavenger.runtime.scavenger.handler import (
    NO_CONTEXT_BUDGET_S,
    Scavenger,
    make_client,
)
from testkit.events import event, record
from testkit.tables import put_items, scan_keys

pytestmark = pytest.mark.ddb
COST_S = 0.005


class FakeClock:
    """Time that only mapping moves; a Lambda context with ``budget_s`` that reads it."""

    def __init__(self, budget_s: float) -> None:
        self.now = 0.0
        self.budget_s = budget_s

    def __call__(self) -> float:
        return self.now

    def get_remaining_time_in_millis(self) -> int:
        return int((self.budget_s - self.now) * 1000)


@pytest.fixture
def slow_mapping(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Make every map_record call cost ``cost_s`` of the clock's time."""

    def install(clock: FakeClock, cost_s: float) -> None:
        real = handler_module.map_record

        def slow(*args: Any, **kwargs: Any) -> Any:
            clock.now += cost_s
            return real(*args, **kwargs)

        monkeypatch.setattr(handler_module, "map_record", slow)

    return install


def assert_a_prefix_deleted_and_the_rest_reported(
    ddb: Any, table: str, records: list[dict[str, Any]], response: dict[str, Any]
) -> int:
    """The records mapped in time are deleted; every record after them is reported."""
    reported = [f["itemIdentifier"] for f in response["batchItemFailures"]]
    cut = len(records) - len(reported)
    assert 0 < cut < len(records), "part of the batch was mapped and deleted, not all of it"
    assert reported == [r["dynamodb"]["SequenceNumber"] for r in records[cut:]]
    left = {k for (k,) in scan_keys(ddb, table, ["pk"])}
    assert left == {r["dynamodb"]["Keys"]["pk"]["S"] for r in records[cut:]}
    return cut


@pytest.mark.parametrize("with_context", [True, False], ids=["lambda-context", "no-context"])
def test_a_batch_too_slow_to_map_is_answered_in_time(
    ddb: Any, ddb_local: Any, make_table: Any, slow_mapping: Any, with_context: bool
) -> None:
    budget_s = 4.0 if with_context else NO_CONTEXT_BUDGET_S
    n = 1000
    clock = FakeClock(budget_s)
    slow_mapping(clock, 1.25 * budget_s / n)  # mapping all of it would take 1.25 budgets
    table = make_table({"pk": "S"})
    put_items(ddb, table, [{"pk": f"k{i}"} for i in range(n)])
    records = [record("INSERT", {"pk": f"k{i}"}) for i in range(n)]
    config = ScavengerConfig.single(target_table=table, key_mapping={"pk": "pk"})
    client = make_client(config, endpoint_url=ddb_local.endpoint_url, **LOCAL_CLIENT_SETTINGS)
    scavenger = Scavenger(config, client, sleep=lambda s: None, clock=clock)

    response = scavenger.handle(event(*records), clock if with_context else None)

    assert clock.now < budget_s, "answered before the timeout"
    cut = assert_a_prefix_deleted_and_the_rest_reported(ddb, table, records, response)
    summary = scavenger.last_summary
    assert summary.timed_out and summary.not_mapped == n - cut
    assert (summary.deleted, summary.reported) == (cut, n - cut)


def test_a_dry_run_too_slow_to_map_reports_what_it_did_not_look_at(
    ddb: Any, ddb_local: Any, make_table: Any, slow_mapping: Any
) -> None:
    clock = FakeClock(4.0)
    slow_mapping(clock, COST_S)
    table = make_table({"pk": "S"})
    records = [record("INSERT", {"pk": f"k{i}"}) for i in range(1000)]
    config = ScavengerConfig.single(target_table=table, key_mapping={"pk": "pk"}, dry_run=True)
    scavenger = Scavenger(config, object(), clock=clock)  # type: ignore[arg-type]

    response = scavenger.handle(event(*records), clock)

    assert clock.now < 4.0
    reported = [f["itemIdentifier"] for f in response["batchItemFailures"]]
    summary = scavenger.last_summary
    assert 0 < len(reported) < 1000 and summary.not_mapped == len(reported)
    assert reported == [r["dynamodb"]["SequenceNumber"] for r in records[-len(reported) :]]
    assert summary.deleted == 1000 - len(reported), "what a real run would have deleted"
