"""No delete is ever lost: the scavenger under injected BatchWriteItem faults.

Every selected, well-formed record must end deleted or reported for replay:
after an invocation, a record whose key is still in the target table must be
at or after the lowest sequence number the response reports.
"""

from __future__ import annotations

import itertools
import json
import random
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stream_scavenger.local.dynamodb_local import LOCAL_CLIENT_SETTINGS
from stream_scavenger.runtime.scavenger.config import ScavengerConfig, TargetConfig
from stream_scavenger.runtime.scavenger.deleter import (
    BACKOFF_BASE_S,
    BACKOFF_CAP_S,
    MIN_REQUEST_S,
    THROTTLE_CODES,
)
from stream_scavenger.runtime.scavenger.handler import (
    RESERVE_S,
    Scavenger,
    UnreportableFailure,
    make_client,
)
from testkit.events import Context, event, record
from testkit.proxy import Fault, FaultProxy, always, first
from testkit.tables import put_items, scan_keys

pytestmark = pytest.mark.ddb
TRANSIENT = {
    "unprocessed-half": Fault.unprocessed(0.5),
    "unprocessed-all": Fault.unprocessed(1.0),
    "unprocessed-last": Fault.unprocessed(pick=lambda items: [len(items) - 1]),
    "provisioned-throughput": Fault.error("ProvisionedThroughputExceededException"),
    "throttling": Fault.error("ThrottlingException"),
    "request-limit": Fault.error("RequestLimitExceeded"),
    "http-500": Fault.http(500),
    "http-503": Fault.http(503),
    "dropped-before": Fault.drop(),
    "dropped-after": Fault.drop(after=True),
    "slow": Fault.slow(0.3),
    "empty-body-200": Fault.malformed(b""),
    "empty-object-200": Fault.malformed(b"{}"),
    "wrong-crc32": Fault.bad_crc(),
    "wrong-crc32-after-deleting": Fault.bad_crc(after=True),
}


@pytest.fixture
def proxy(ddb_local: Any) -> Iterator[FaultProxy]:
    with FaultProxy(ddb_local.endpoint_url) as running:
        yield running


class FakeTime:
    """A clock that only sleeping moves; a Lambda context that reads it."""

    def __init__(self, budget_s: float) -> None:
        self.now = 0.0
        self.budget_s = budget_s
        self.sleeps: list[float] = []
        self._lock = threading.Lock()

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append(seconds)
            self.now += seconds

    def get_remaining_time_in_millis(self) -> int:
        return int((self.budget_s - self.now) * 1000)


def scavenger(
    proxy: FaultProxy, table: str, *, sleep: Any = lambda s: None, rng: Any = None, **kw: Any
) -> Scavenger:
    config = ScavengerConfig.single(target_table=table, key_mapping={"pk": "pk"}, **kw)
    client = make_client(
        config,
        endpoint_url=proxy.url,
        **LOCAL_CLIENT_SETTINGS,
    )
    return Scavenger(config, client, sleep=sleep, rng=rng)


def assert_nothing_lost(
    ddb: Any,
    table: str,
    records: list[dict[str, Any]],
    response: Any,
    events: frozenset[str],
    key_attr: str = "pk",
    rejected: set[tuple[str, str]] | None = None,
) -> None:
    """The invariant: every selected record whose key survives is at/after the lowest report.

    Records whose key DynamoDB rejected in a one-key request (``rejected``, from the proxy's
    ``rejected_alone``) are unmappable: they may survive unreported.
    """
    reported = [f["itemIdentifier"] for f in response["batchItemFailures"]]
    assert len(reported) == len(set(reported)), "a record was reported twice"
    sequence_numbers = {r["dynamodb"]["SequenceNumber"] for r in records}
    assert set(reported) <= sequence_numbers, "reported a record that is not in the batch"
    lowest = min((int(s) for s in reported), default=None)
    present = {k for (k,) in scan_keys(ddb, table, [key_attr])}
    for r in records:
        if r["eventName"] not in events:
            continue
        key = _raw(r["dynamodb"]["Keys"]["pk"])
        wire = json.dumps({key_attr: r["dynamodb"]["Keys"]["pk"]}, sort_keys=True)
        if (table, wire) in (rejected or set()):
            continue
        if key in present:
            seq = int(r["dynamodb"]["SequenceNumber"])
            assert lowest is not None and seq >= lowest, (
                f"record {seq} acknowledged but its key was not deleted"
            )


def _raw(typed: dict[str, Any]) -> Any:
    import base64

    ((t, v),) = typed.items()
    return base64.b64decode(v) if t == "B" else v


def fill(ddb: Any, make_table: Any, n: int, key_type: str = "S") -> tuple[str, list[Any]]:
    table = make_table({"pk": key_type})
    keys: list[Any] = [
        {"S": lambda i: f"k{i}", "N": lambda i: i, "B": lambda i: f"k{i}".encode()}[key_type](i)
        for i in range(n)
    ]
    put_items(
        ddb,
        table,
        [{"pk": k} for k in keys] + [{"pk": {"S": "keep", "N": -1, "B": b"keep"}[key_type]}],
    )
    return table, keys


# ---- transient faults ----------------------------------------------------------------------


@pytest.mark.parametrize("fault", TRANSIENT.values(), ids=TRANSIENT.keys())
def test_transient_faults_end_with_every_key_deleted(
    ddb: Any, make_table: Any, proxy: FaultProxy, fault: Fault
) -> None:
    table, keys = fill(ddb, make_table, 100)
    records = [record("INSERT", {"pk": k}) for k in keys]
    proxy.schedule = first(3, fault)
    time_ = FakeTime(60)
    scav = scavenger(proxy, table, sleep=time_.sleep)

    response = scav.handle(event(*records), Context())

    assert response == {"batchItemFailures": []}
    assert scan_keys(ddb, table, ["pk"]) == {("keep",)}
    summary = scav.last_summary
    assert summary.deleted == 100 and summary.reported == 0
    assert (
        proxy.counts.operations["BatchWriteItem"]
        == summary.deletes.requests
        == 4 + summary.deletes.retries
    )
    expected_retries = (0, 0) if fault.kind == "slow" else (1, 3)  # a late answer is no failure
    assert expected_retries[0] <= summary.deletes.retries <= expected_retries[1]
    if fault.kind == "unprocessed" or fault.code in THROTTLE_CODES:
        assert sum(time_.sleeps) > 0, "throttled: the pacer waits before sending again"
    else:
        assert len(time_.sleeps) == summary.deletes.retries  # one backoff per failed request
    assert sum(proxy.counts.faults.values()) == 3


def test_backoff_doubles_from_50ms_with_full_jitter_and_is_capped(
    ddb: Any, make_table: Any, proxy: FaultProxy
) -> None:
    table, keys = fill(ddb, make_table, 1)
    proxy.schedule = always(Fault.http(500))  # throttles are paced instead (test_pacing.py)

    for jitter, attempts in ((1.0, 8), (0.5, 8), (1.0, 12)):
        time_ = FakeTime(600)
        scav = scavenger(
            proxy, table, sleep=time_.sleep, rng=lambda j=jitter: j, max_attempts=attempts
        )
        scav.handle(event(record("INSERT", {"pk": keys[0]})), Context())
        expected = [jitter * min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2**n) for n in range(attempts - 1)]
        assert time_.sleeps == pytest.approx(expected)

    real = FakeTime(600)
    scavenger(proxy, table, sleep=real.sleep, rng=random.Random(7).random).handle(
        event(record("INSERT", {"pk": keys[0]})), Context()
    )
    bounds = [BACKOFF_BASE_S * 2**n for n in range(7)]
    assert all(0 <= s <= b for s, b in zip(real.sleeps, bounds, strict=True))
    assert len(set(real.sleeps)) == 7, "jitter: no two delays alike"


def test_errors_that_never_end_use_the_documented_attempts_and_report_everything(
    ddb: Any, make_table: Any, proxy: FaultProxy
) -> None:
    table, keys = fill(ddb, make_table, 60)
    records = [record("INSERT", {"pk": k}) for k in keys]
    proxy.schedule = always(Fault.http(503))

    scav = scavenger(proxy, table)
    response = scav.handle(event(*records), Context())

    assert proxy.counts.operations["BatchWriteItem"] == 3 * 8  # 3 chunks, 8 attempts each
    assert [f["itemIdentifier"] for f in response["batchItemFailures"]] == [
        r["dynamodb"]["SequenceNumber"] for r in records
    ]
    assert len(scan_keys(ddb, table, ["pk"])) == 61
    assert scav.last_summary.throttled_out is False  # failing, not under-provisioned


def test_throttling_that_never_ends_is_retried_while_the_time_lasts(
    ddb: Any, make_table: Any, proxy: FaultProxy
) -> None:
    table, keys = fill(ddb, make_table, 60)
    records = [record("INSERT", {"pk": k}) for k in keys]
    proxy.schedule = always(Fault.error("ThrottlingException"))
    time_ = FakeTime(budget_s=30.0)

    scav = scavenger(proxy, table, sleep=time_.sleep)
    response = scav.handle(event(*records), time_)

    assert scav.last_summary.throttled_out is True
    assert [f["itemIdentifier"] for f in response["batchItemFailures"]] == [
        r["dynamodb"]["SequenceNumber"] for r in records
    ]
    left = time_.get_remaining_time_in_millis() / 1000
    assert RESERVE_S <= left < RESERVE_S + 2 * MIN_REQUEST_S + 25, "the time was used, not left"
    assert proxy.counts.operations["BatchWriteItem"] > 3  # the chunks were sent again


def test_retrying_stops_in_time_for_the_answer(
    ddb: Any, make_table: Any, proxy: FaultProxy
) -> None:
    table, keys = fill(ddb, make_table, 30)
    records = [record("INSERT", {"pk": k}) for k in keys]
    proxy.schedule = always(Fault.error("ProvisionedThroughputExceededException"))
    time_ = FakeTime(budget_s=2.0)  # backoffs alone would take 6.35 s at full jitter

    response = scavenger(proxy, table, sleep=time_.sleep, rng=lambda: 1.0).handle(
        event(*records), time_
    )

    assert time_.get_remaining_time_in_millis() >= RESERVE_S * 1000
    assert proxy.counts.operations["BatchWriteItem"] < 2 * 8
    assert len(response["batchItemFailures"]) == 30
    assert_nothing_lost(ddb, table, records, response, frozenset({"INSERT"}))


def test_answers_before_the_timeout_while_requests_hang(
    ddb: Any, make_table: Any, proxy: FaultProxy
) -> None:
    table, keys = fill(ddb, make_table, 50)
    records = [record("INSERT", {"pk": k}) for k in keys]
    proxy.schedule = lambda index, body: Fault.slow(4.0) if index == 1 else None

    class RealContext:
        deadline = time.monotonic() + 2.5

        def get_remaining_time_in_millis(self) -> int:
            return int((self.deadline - time.monotonic()) * 1000)

    context = RealContext()
    response = scavenger(proxy, table).handle(event(*records), context)

    assert context.get_remaining_time_in_millis() > 0, "the handler must answer before its timeout"
    # the hung chunk's 25 keys are reported; the other chunk's were confirmed and acknowledged
    assert len(response["batchItemFailures"]) == 25
    assert_nothing_lost(ddb, table, records, response, frozenset({"INSERT"}))


def test_a_failure_without_a_sequence_number_fails_the_whole_invocation(
    ddb: Any, make_table: Any, proxy: FaultProxy
) -> None:
    table, keys = fill(ddb, make_table, 1)
    console_record = record("INSERT", {"pk": keys[0]})
    del console_record["dynamodb"]["SequenceNumber"]
    proxy.schedule = always(Fault.error("AccessDeniedException"))

    with pytest.raises(UnreportableFailure):
        scavenger(proxy, table).handle(event(console_record), Context())


def test_non_retryable_errors_are_not_retried_but_reported(
    ddb: Any, make_table: Any, proxy: FaultProxy
) -> None:
    table, keys = fill(ddb, make_table, 30)
    records = [record("INSERT", {"pk": k}) for k in keys]
    proxy.schedule = lambda index, body: (
        Fault.error("AccessDeniedException") if index == 0 else None
    )

    response = scavenger(proxy, table, max_concurrency=1).handle(event(*records), Context())

    assert proxy.counts.operations["BatchWriteItem"] == 2
    assert [f["itemIdentifier"] for f in response["batchItemFailures"]] == [
        r["dynamodb"]["SequenceNumber"] for r in records[:25]
    ]
    assert_nothing_lost(ddb, table, records, response, frozenset({"INSERT"}))


def test_a_key_dynamodb_rejects_is_isolated_unmappable_and_the_rest_deleted(
    ddb: Any, make_table: Any, proxy: FaultProxy
) -> None:
    table, keys = fill(ddb, make_table, 25)
    records = [record("INSERT", {"pk": k}) for k in keys]
    poison = {"S": "k13"}

    def reject_poison(index: int, body: dict[str, Any]) -> Fault | None:
        (items,) = body["RequestItems"].values()
        if any(i["DeleteRequest"]["Key"]["pk"] == poison for i in items):
            return Fault.error("ValidationException")
        return None

    proxy.schedule = reject_poison
    scav = scavenger(proxy, table)
    response = scav.handle(event(*records), Context())

    # Rejected on its own: replaying it can never help, so it is unmappable, not reported.
    assert response == {"batchItemFailures": []}
    assert scan_keys(ddb, table, ["pk"]) == {("keep",), ("k13",)}
    assert scav.last_summary.deletes.splits == 5  # 25 -> 13 -> 7 -> 4 -> 2 -> 1 around the bad key
    assert (scav.last_summary.unmappable, scav.last_summary.deleted) == (1, 24)


# ---- concurrency ---------------------------------------------------------------------------


def test_results_do_not_depend_on_thread_timing(
    ddb: Any, make_table: Any, proxy: FaultProxy
) -> None:
    """Faults chosen by content, answers delayed at random: every concurrency gives one outcome."""
    jitter = random.Random(3)

    def by_content(index: int, body: dict[str, Any]) -> Fault | None:
        (items,) = body["RequestItems"].values()
        first_key = int(items[0]["DeleteRequest"]["Key"]["pk"]["S"].split("-")[1][1:])
        time.sleep(jitter.random() * 0.01)
        if first_key % 7 == 0:
            return Fault.http(500)  # this chunk never succeeds (throttles are paced by time)
        if len(items) > 1:
            return Fault.unprocessed(pick=lambda its: [len(its) - 1])  # always the last one back
        return None

    proxy.schedule = by_content
    outcomes = []
    for round_, concurrency in enumerate((1, 3, 8, 16)):
        table = make_table({"pk": "S"})
        keys = [f"r{round_}-k{i}" for i in range(400)]
        put_items(ddb, table, [{"pk": k} for k in keys])
        records = [
            record("INSERT", {"pk": k}, sequence_number=str(1000 + i)) for i, k in enumerate(keys)
        ]
        # Time enough for every chunk that can succeed: throttles are retried while the time
        # lasts, so with too little the outcome would depend on how fast the threads run.
        response = scavenger(proxy, table, max_concurrency=concurrency).handle(
            event(*records), Context(ms=10**9)
        )
        reported = [f["itemIdentifier"] for f in response["batchItemFailures"]]
        assert len(reported) == len(set(reported))
        assert_nothing_lost(ddb, table, records, response, frozenset({"INSERT"}))
        remaining = sorted(k.split("-", 1)[1] for (k,) in scan_keys(ddb, table, ["pk"]))
        outcomes.append((reported, remaining))
    assert all(o == outcomes[0] for o in outcomes)
    assert outcomes[0][0], "the schedule must leave some chunks failing"


# ---- property: random batches, random faults -------------------------------------------------

FAULTS = st.sampled_from(
    [
        Fault.unprocessed(0.3),
        Fault.unprocessed(1.0),
        Fault.error("ProvisionedThroughputExceededException"),
        Fault.error("ThrottlingException"),
        Fault.error("RequestLimitExceeded"),
        Fault.error("ValidationException"),
        Fault.http(500),
        Fault.http(503),
        Fault.drop(),
        Fault.drop(after=True),
        Fault.malformed(b""),
        Fault.malformed(b"{}"),
        Fault.bad_crc(),
        Fault.bad_crc(after=True),
    ]
)
_examples = itertools.count()


@st.composite
def batches(draw: st.DrawFn) -> dict[str, Any]:
    size = draw(st.one_of(st.integers(0, 120), st.integers(0, 10_000)))
    distinct = draw(st.integers(1, max(1, min(size, 2_000))))
    key_type = draw(st.sampled_from(["S", "N", "B"]))
    picks = (
        draw(st.lists(st.integers(0, distinct - 1), min_size=size, max_size=size))
        if size <= 120
        else None
    )
    seed = draw(st.integers(0, 2**32 - 1))
    rng = random.Random(seed)
    if picks is None:
        picks = [rng.randrange(distinct) for _ in range(size)]
    events = [rng.choice(["INSERT", "MODIFY", "REMOVE"]) for _ in range(size)]
    selected = draw(st.sets(st.sampled_from(["INSERT", "MODIFY", "REMOVE"]), min_size=1))
    return {
        "key_type": key_type,
        "distinct": distinct,
        "picks": picks,
        "events": events,
        "selected": frozenset(selected),
    }


#: Settings of the property tests (example counts come from the ci / slow profiles).
PROPERTY = settings(
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)


def key_values(key_type: str, prefix: str) -> Any:
    """Example-unique key values of one type, so examples never see each other's items."""
    n = next(_examples)
    return {
        "S": lambda i: f"{prefix}{n}-{i}",
        "N": lambda i: n * 100_000 + i,
        "B": lambda i: f"{prefix}{n}-{i}".encode(),
    }[key_type]


@PROPERTY
@given(
    batch=batches(),
    schedule=st.lists(st.none() | FAULTS, max_size=30),
    tail=st.none() | FAULTS,
    budget_s=st.sampled_from([60.0, 3.0, 1.2]),
    concurrency=st.sampled_from([1, 4, 8]),
)
def test_no_selected_record_is_ever_acknowledged_undeleted(
    ddb: Any,
    make_table: Any,
    proxy: FaultProxy,
    batch: dict[str, Any],
    schedule: list[Fault | None],
    tail: Fault | None,
    budget_s: float,
    concurrency: int,
) -> None:
    """Random batches and fault schedules; ``tail`` is the fault of every request past the list."""
    key_type = batch["key_type"]
    value = key_values(key_type, "x")
    table = make_table({"pk": key_type})
    put_items(ddb, table, [{"pk": value(i)} for i in range(batch["distinct"])])
    records = [
        record(e, {"pk": value(p)}) for e, p in zip(batch["events"], batch["picks"], strict=True)
    ]
    proxy.schedule = lambda index, body: schedule[index] if index < len(schedule) else tail
    time_ = FakeTime(budget_s)

    response = scavenger(
        proxy, table, sleep=time_.sleep, event_names=batch["selected"], max_concurrency=concurrency
    ).handle(event(*records), time_)

    assert_nothing_lost(
        ddb, table, records, response, batch["selected"], rejected=proxy.counts.rejected_alone
    )
    assert time_.get_remaining_time_in_millis() > 0


def _second_table_items(items: list[dict[str, Any]]) -> list[int]:
    return [i for i, item in enumerate(items) if "ref" in item["DeleteRequest"]["Key"]]


def _first_table_items(items: list[dict[str, Any]]) -> list[int]:
    return [i for i, item in enumerate(items) if "pk" in item["DeleteRequest"]["Key"]]


#: Faults that hit one table of a request only (the second target's key is named ``ref``).
ONE_TABLE_FAULTS = st.sampled_from(
    [Fault.unprocessed(pick=_second_table_items), Fault.unprocessed(pick=_first_table_items)]
)


@PROPERTY
@given(
    batch=batches(),
    second_events=st.sets(st.sampled_from(["INSERT", "MODIFY", "REMOVE"]), min_size=1),
    schedule=st.lists(st.none() | FAULTS | ONE_TABLE_FAULTS, max_size=30),
    tail=st.none() | FAULTS | ONE_TABLE_FAULTS,
    budget_s=st.sampled_from([60.0, 3.0, 1.2]),
)
def test_with_two_targets_no_record_is_acknowledged_with_a_key_left_in_either(
    ddb: Any,
    make_table: Any,
    proxy: FaultProxy,
    batch: dict[str, Any],
    second_events: set[str],
    schedule: list[Fault | None],
    tail: Fault | None,
    budget_s: float,
) -> None:
    """The same invariant when one request carries deletes for two tables, each with its events."""
    key_type = batch["key_type"]
    value = key_values(key_type, "y")
    tables = [make_table({"pk": key_type}), make_table({"ref": key_type})]
    for table, attr in zip(tables, ("pk", "ref"), strict=True):
        put_items(ddb, table, [{attr: value(i)} for i in range(batch["distinct"])])
    records = [
        record(e, {"pk": value(p)}) for e, p in zip(batch["events"], batch["picks"], strict=True)
    ]
    events = [batch["selected"], frozenset(second_events)]
    config = ScavengerConfig(
        targets=(
            TargetConfig(tables[0], {"pk": "pk"}, events[0]),
            TargetConfig(tables[1], {"ref": "pk"}, events[1]),
        )
    )
    client = make_client(config, endpoint_url=proxy.url, **LOCAL_CLIENT_SETTINGS)
    proxy.schedule = lambda index, body: schedule[index] if index < len(schedule) else tail
    time_ = FakeTime(budget_s)

    response = Scavenger(config, client, sleep=time_.sleep).handle(event(*records), time_)

    for table, attr, selected in zip(tables, ("pk", "ref"), events, strict=True):
        assert_nothing_lost(
            ddb, table, records, response, selected, attr, proxy.counts.rejected_alone
        )
    assert time_.get_remaining_time_in_millis() > 0
