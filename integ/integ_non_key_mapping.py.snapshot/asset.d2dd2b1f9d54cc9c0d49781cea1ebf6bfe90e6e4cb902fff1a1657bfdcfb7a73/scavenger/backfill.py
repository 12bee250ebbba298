"""Backfill: the records a scan of the source stands for, and their scavenging, page by page.

A stream holds 24 hours. Items written before the stream existed (adopting the scavenger on
a full table), or while the scavenger was broken for longer than that, reach no function.
A backfill reads the source's current items with a parallel ``Scan`` and turns each into
the record the scavenger would have received when the item was written: an ``INSERT``
(``MODIFY`` for a scavenger that acts on ``MODIFY`` only) with the item as ``NewImage`` and
its key attributes as ``Keys``, shaped by the source's ``StreamViewType`` (``KEYS_ONLY`` and
``OLD_IMAGE`` carry no new image). There is never an ``OldImage``: a filter on it cannot
match. A scavenger that acts on ``REMOVE`` only cannot be backfilled (the items are gone).

The records pass the mapping's filter criteria (:class:`~.filtering.MappingFilters`) and go
through the handler's own code (:class:`~.handler.Scavenger`): the same key mapping and
templates, de-duplication, 25 keys a request, pacing, retries and verified answers. Records
the handler reports are sent again while each call makes progress.

This module is in the function's asset (standard library and boto3 only): the CLI's
``stream-scavenger backfill`` (``stream_scavenger.backfill``) runs it on the user's machine.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import functools
import json
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .config import (
    BACKFILL_DONE,
    BACKFILL_HELD_AT,
    BACKFILL_SEGMENT,
    BACKFILL_START_KEY,
    BACKFILL_TOTAL_SEGMENTS,
    BACKFILL_TOTALS,
    BackfillConfig,
    ScavengerConfig,
    backfill_event,
)
from .filtering import FilterPattern, MappingFilters, alternatives

#: Default ``Scan`` page ``Limit``; a read budget may make it smaller. DynamoDB also ends a
#: page at 1 MB.
DEFAULT_PAGE_SIZE = 1000
#: Each handler call gets this much time, as a Lambda timeout would (its own default is 900 s).
CALL_BUDGET_S = 60.0
#: Calls in a row that leave as many records reported as before, before they are given up on.
PATIENCE = 3
#: No handler call starts with less time than this before a page's deadline.
MIN_CALL_S = 1.0
#: The worker makes its pages small enough for their deletes to fit this long in its write
#: budget (one write unit a key, each target acting on the record apart).
WRITE_WINDOW_S = 60.0
#: Eventually consistent reads: one read unit per 8 KB scanned (half a unit per 4 KB).
BYTES_PER_READ_UNIT = 8192


def lambda_shape(value: Any) -> Any:
    """A boto3-parsed value as Lambda delivers it in a record: base64 binaries, epoch times."""
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, dt.datetime):
        return int(value.timestamp())
    if isinstance(value, Mapping):
        return {k: lambda_shape(v) for k, v in value.items()}
    if isinstance(value, list | set | tuple):
        return [lambda_shape(v) for v in value]
    return value


class BackfillError(ValueError):
    """A backfill cannot start: the message says why and what to do."""


def event_name_for(config: ScavengerConfig) -> str:
    """The event a scanned item stands for: ``INSERT``, or ``MODIFY`` for a scavenger that acts
    on ``MODIFY`` but not ``INSERT``; a ``REMOVE``-only scavenger cannot be backfilled."""
    event = backfill_event(config.event_names)
    if event is not None:
        return event
    raise BackfillError(
        "this scavenger acts on REMOVE only: a backfill reads the items the source holds now, "
        "and a REMOVE is about an item that is gone, so there is nothing to read it from "
        "(see docs/backfill.md, 'REMOVE-only scavengers': delete by a scan of the target, or "
        "redrive the on-failure queue while the stream still holds the records)"
    )


#: The fields of a scanned item's record that hold what the stream's record did; the rest
#: (when it was written, its size, sequence number and IDs, the old image) are made up.
FAITHFUL_FIELDS = ("eventName", "eventVersion", "eventSource", "dynamodb")
FAITHFUL_STREAM_FIELDS = ("Keys", "NewImage", "StreamViewType")


def unknowable_fields(pattern: Mapping[str, Any]) -> list[str]:
    """The fields a filter pattern reads that a scanned item's record only makes up."""
    found: list[str] = []
    for branch in alternatives(pattern):
        for key, value in branch.items():
            if key == "dynamodb" and isinstance(value, Mapping):
                found += [f"dynamodb.{k}" for part in alternatives(value) for k in part
                          if k != "$or" and k not in FAITHFUL_STREAM_FIELDS]  # fmt: skip
            elif key != "$or" and (key not in FAITHFUL_FIELDS or key == "dynamodb"):
                found.append(key)
    return found


def check_filters(patterns: Sequence[Mapping[str, Any]]) -> None:
    """Refuse filter criteria that a backfill would decide on values no real record had."""
    fields = sorted({field for pattern in patterns for field in unknowable_fields(pattern)})
    if fields:
        raise BackfillError(
            f"the filter criteria read {', '.join(fields)}: a scanned item's record has no old "
            "image, and its time, size, sequence number and IDs are made up, so a backfill "
            "would select by values no stream record had; it takes filters on eventName, "
            "dynamodb.Keys and dynamodb.NewImage only"
        )


@dataclass(frozen=True)
class SourceTable:
    """The table scanned, as the scavenger's stream would have shown its items."""

    name: str
    key_names: tuple[str, ...]
    #: The source stream's ``StreamViewType`` (the template's, or the deployed table's).
    view_type: str = "NEW_IMAGE"
    event_name: str = "INSERT"
    region: str = "us-east-1"

    @classmethod
    def of(cls, settings: BackfillConfig) -> SourceTable:
        """The table a backfill worker's settings name."""
        return cls(settings.source_table, settings.key_names, settings.view_type,
                   settings.event_name)  # fmt: skip

    @property
    def stream_arn(self) -> str:
        """A stream ARN of the table's name (synthetic: the table may have no stream)."""
        return f"arn:aws:dynamodb:{self.region}:000000000000:table/{self.name}/stream/backfill"


def sequence_number(segment: int, page: int, index: int) -> str:
    """A synthetic, increasing sequence number that names an item's place in the scan."""
    return f"{segment:07d}{page:012d}{index:05d}"


def place_of(sequence: str) -> str:
    """Where a synthetic sequence number's item was: for the report (never a key value)."""
    return f"segment {int(sequence[:7])}, page {int(sequence[7:19])}, item {int(sequence[19:])}"


def as_records(
    items: Sequence[Mapping[str, Any]], source: SourceTable, segment: int, page: int
) -> list[dict[str, Any]]:
    """The stream records the items would have made when written (Lambda's shape)."""
    now = int(time.time())
    with_image = source.view_type in ("NEW_IMAGE", "NEW_AND_OLD_IMAGES")
    records = []
    for index, raw in enumerate(items):
        item = lambda_shape(raw)
        sequence = sequence_number(segment, page, index)
        stream: dict[str, Any] = {
            "ApproximateCreationDateTime": now,
            "Keys": {name: item[name] for name in source.key_names if name in item},
            "SequenceNumber": sequence,
            "SizeBytes": len(json.dumps(item)),
            "StreamViewType": source.view_type,
        }
        if with_image:
            stream["NewImage"] = item
        records.append(
            {
                "eventID": f"backfill-{sequence}",
                "eventName": source.event_name,
                "eventVersion": "1.1",
                "eventSource": "aws:dynamodb",
                "awsRegion": source.region,
                "eventSourceARN": source.stream_arn,
                "dynamodb": stream,
            }
        )
    return records


class Budget:
    """Capacity units per second shared by the segment workers (a token bucket).

    A call takes its estimate before it starts (waiting while the bucket is in debt or
    short of it) and settles with what DynamoDB says it consumed. The bucket starts empty
    and banks at most one second, so the units consumed by time T stay within rate x T
    as long as the estimates are not below the real cost.
    """

    def __init__(
        self,
        units_per_s: float,
        stop: threading.Event | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.units_per_s = units_per_s
        self._stop = stop or threading.Event()
        self._clock = clock
        self._level = 0.0
        self._at = clock()
        self._lock = threading.Lock()

    def take(self, units: float) -> None:
        """Wait until ``units`` (at most one second's worth) are there, then take them."""
        need = min(units, self.units_per_s)
        while True:
            with self._lock:
                now = self._clock()
                gained = (now - self._at) * self.units_per_s
                self._level = min(self.units_per_s, self._level + gained)
                self._at = now
                if self._level >= need:
                    self._level -= units
                    return
                wait_s = (need - self._level) / self.units_per_s
            if self._stop.wait(min(wait_s, 0.5)):
                raise Stopped

    def settle(self, estimate: float, consumed: float) -> None:
        """The call consumed ``consumed`` units, not the ``estimate`` taken."""
        with self._lock:
            self._level += estimate - consumed


class Stopped(Exception):
    """The backfill was asked to stop (Ctrl-C) while waiting for capacity."""


@dataclass
class TargetCounts:
    """One target's counts over the backfill."""

    table: str
    matched: int = 0
    unmappable: int = 0
    duplicates: int = 0
    deleted: int = 0


#: The counts of :class:`PageResult` that add up.
_COUNTS = (
    "items", "filtered_out", "selected", "skipped", "matched", "unmappable", "distinct_keys",
    "duplicates", "deleted", "calls", "requests", "retries", "throttles", "write_units",
    "read_units", "pages",
)  # fmt: skip
#: Records not deleted that a worker's answer names (the rest are counted).
FAILED_SHOWN = 20


@dataclass
class PageResult:
    """What scavenging some records did (added up over pages and segments)."""

    items: int = 0
    filtered_out: int = 0
    selected: int = 0
    skipped: int = 0
    matched: int = 0
    unmappable: int = 0
    #: Distinct keys per handler call (several targets counted apart), summed.
    distinct_keys: int = 0
    duplicates: int = 0
    deleted: int = 0
    calls: int = 0
    requests: int = 0
    retries: int = 0
    throttles: int = 0
    write_units: float = 0.0
    read_units: float = 0.0
    pages: int = 0
    targets: dict[str, TargetCounts] = field(default_factory=dict)
    #: Synthetic sequence numbers of the records still reported when the calls stopped.
    failed: list[str] = field(default_factory=list)
    #: Records not deleted beyond those in ``failed`` (a worker's answer names at most
    #: :data:`FAILED_SHOWN`).
    failed_beyond: int = 0

    @property
    def failed_count(self) -> int:
        """Records not deleted."""
        return len(self.failed) + self.failed_beyond

    def to_json(self) -> dict[str, Any]:
        """The counts as a worker answers with them (at most :data:`FAILED_SHOWN` named)."""
        body = {name: getattr(self, name) for name in _COUNTS}
        body["targets"] = {t: dataclasses.asdict(c) for t, c in self.targets.items()}
        body["failed"] = self.failed[:FAILED_SHOWN]
        body["failed_count"] = self.failed_count
        return body

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> PageResult:
        """Inverse of :meth:`to_json`."""
        result = cls(**{name: body[name] for name in _COUNTS if name in body})
        result.targets = {t: TargetCounts(**c) for t, c in (body.get("targets") or {}).items()}
        result.failed = list(body.get("failed") or [])
        result.failed_beyond = int(body.get("failed_count", 0)) - len(result.failed)
        return result

    def add(self, other: PageResult) -> None:
        for name in _COUNTS:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.failed_beyond += other.failed_beyond
        for table, theirs in other.targets.items():
            mine = self.targets.setdefault(table, TargetCounts(table))
            mine.matched += theirs.matched
            mine.unmappable += theirs.unmappable
            mine.duplicates += theirs.duplicates
            mine.deleted += theirs.deleted
        self.failed += other.failed


@dataclass
class _CallContext:
    """A Lambda-like context: each call has :data:`CALL_BUDGET_S`."""

    budget_s: float
    started: float = field(default_factory=time.monotonic)

    def get_remaining_time_in_millis(self) -> int:
        return int((self.budget_s - (time.monotonic() - self.started)) * 1000)


def scavenge_page(
    scavenger: Any,
    filters: MappingFilters,
    records: Sequence[Mapping[str, Any]],
    *,
    write_budget: Budget | None = None,
    call_budget_s: float = CALL_BUDGET_S,
    patience: int = PATIENCE,
    sleep: Callable[[float], None] = time.sleep,
    deadline: float | None = None,
) -> PageResult:
    """Filter the records as the mapping would, and delete through ``scavenger`` (a
    :class:`~.runtime.scavenger.handler.Scavenger`) what they name.

    Reported records are sent again while calls make progress; after ``patience`` calls in
    a row that do not, they are given up on (``failed``). With ``write_budget``, each call
    waits for its estimate (a key per acting target and record, at least one write unit
    each) and settles with the units the deletes consumed. With ``deadline`` (a
    ``time.monotonic()`` value: the worker's Lambda timeout, less its margin), no call
    starts after it: the records not confirmed by then are given up on (``failed``), so the
    worker answers in time and names them, rather than being stopped mid-page.
    """
    result = PageResult(items=len(records))
    config: ScavengerConfig = scavenger.config
    selected = [r for r in records if filters.selects(r)]
    result.filtered_out = len(records) - len(selected)
    result.selected = len(selected)
    if not selected:
        return result
    event_name = str(selected[0].get("eventName"))
    acting = max(1, sum(event_name in t.event_names for t in config.targets))
    size = len(selected)
    if write_budget is not None:  # each call's estimate fits one second of the budget
        size = max(1, int(write_budget.units_per_s // acting))
    for start in range(0, len(selected), size):
        _scavenge_chunk(
            scavenger, selected[start : start + size], acting, result,
            write_budget, call_budget_s, patience, sleep, deadline,
        )  # fmt: skip
    return result


def _scavenge_chunk(
    scavenger: Any,
    chunk: list[Mapping[str, Any]],
    acting: int,
    result: PageResult,
    write_budget: Budget | None,
    call_budget_s: float,
    patience: int,
    sleep: Callable[[float], None],
    deadline: float | None,
) -> None:
    pending, stalled, first = chunk, 0, True
    while pending:
        budget_s = call_budget_s
        if deadline is not None:
            budget_s = min(budget_s, deadline - time.monotonic())
            if budget_s < MIN_CALL_S:  # out of time: named, not dropped
                result.failed += [str(r["dynamodb"]["SequenceNumber"]) for r in pending]
                return
        estimate = float(len(pending) * acting)
        if write_budget is not None:
            write_budget.take(estimate)
        response = scavenger.handle({"Records": pending}, _CallContext(budget_s))
        summary = scavenger.last_summary
        consumed = float(summary.deletes.consumed_wcu)
        if write_budget is not None:
            write_budget.settle(estimate, max(consumed, 0.0))
        _count(result, summary, first)
        first = False
        reported = {f["itemIdentifier"] for f in response.get("batchItemFailures", [])}
        still = [r for r in pending if r["dynamodb"]["SequenceNumber"] in reported]
        stalled = stalled + 1 if len(still) >= len(pending) else 0
        if stalled >= patience:
            result.failed += [str(r["dynamodb"]["SequenceNumber"]) for r in still]
            return
        if still and stalled:
            sleep(min(5.0, 0.5 * 2**stalled))
        pending = still


def _count(result: PageResult, summary: Any, first: bool) -> None:
    """Add one call's summary: what mapping found from the first call of a chunk only
    (later calls map the same records again), what the deletes did from every call."""
    result.calls += 1
    result.deleted += summary.deleted
    result.requests += summary.deletes.requests
    result.retries += summary.deletes.retries
    result.throttles += summary.deletes.throttles
    result.write_units += summary.deletes.consumed_wcu
    if first:
        result.skipped += summary.skipped
        result.matched += summary.matched
        result.unmappable += summary.unmappable
        result.distinct_keys += summary.distinct_keys
        result.duplicates += summary.duplicates
    for target in summary.targets:
        counts = result.targets.setdefault(target.table, TargetCounts(target.table))
        counts.deleted += target.deleted
        if first:
            counts.matched += target.matched
            counts.unmappable += target.unmappable
            counts.duplicates += target.duplicates


# ---- keys as JSON


def encode_key(key: Mapping[str, Any]) -> dict[str, Any]:
    """A ``LastEvaluatedKey`` as JSON (binary values in base64)."""
    encoded: dict[str, Any] = lambda_shape(key)
    return encoded


def decode_key(key: Mapping[str, Any]) -> dict[str, Any]:
    """Inverse of :func:`encode_key` (key attributes are S, N or B)."""
    return {
        name: {"B": base64.b64decode(v["B"])} if "B" in v else dict(v) for name, v in key.items()
    }


class SegmentReader:
    """One segment's ``Scan`` pages, from a position on, within the read budget."""

    def __init__(
        self,
        client: Any,
        source: SourceTable,
        segment: int,
        segments: int,
        after: Mapping[str, Any] | None,
        budget: Budget | None,
    ) -> None:
        self.client, self.source, self.segment, self.segments = client, source, segment, segments
        self.after, self.budget = after, budget
        #: Read units per item, learnt from each page (first: the table's average size).
        self.unit_per_item = 1024 / BYTES_PER_READ_UNIT

    def pages(
        self, page_size: int, stop: threading.Event
    ) -> Iterator[tuple[int, list[dict[str, Any]], dict[str, Any] | None, float]]:
        """(page number, items, the key to go on after or None at the end, read units)."""
        after = self.after
        number = 0
        while not stop.is_set():
            limit = page_size
            estimate = 0.0
            if self.budget is not None:
                fits = int(self.budget.units_per_s / max(self.unit_per_item, 1e-6))
                limit = max(1, min(page_size, fits))
                estimate = max(0.5, limit * self.unit_per_item)
                self.budget.take(estimate)
            request: dict[str, Any] = {
                "TableName": self.source.name,
                "Segment": self.segment,
                "TotalSegments": self.segments,
                "Limit": limit,
                "ReturnConsumedCapacity": "TOTAL",
            }
            if after:
                request["ExclusiveStartKey"] = after
            page = self.client.scan(**request)
            units = float((page.get("ConsumedCapacity") or {}).get("CapacityUnits") or 0.0)
            if self.budget is not None:
                self.budget.settle(estimate, units)
            items = page.get("Items", [])
            if items and units:
                self.unit_per_item = units / len(items)
            after = page.get("LastEvaluatedKey")
            yield number, items, after, units
            number += 1
            if not after:
                return


# ---- the worker a state machine calls ----------------------------------------------------

#: The worker starts no page with less time than this left, nor with less than twice the
#: longest page so far: it answers with the position reached, and the next call goes on.
PAGE_MARGIN_S = 30.0


def handler(event: Mapping[str, Any], context: Any) -> dict[str, Any]:
    """Scan one segment from ``start_key`` for as long as the invocation's time allows,
    scavenging every page; answer with where the next call goes on (see
    :data:`~.config.BACKFILL_START_KEY` and the names beside it)."""
    from .handler import container_scavenger

    scavenger = container_scavenger()
    settings = BackfillConfig.from_env(os.environ)
    return scan_segment(_scan_client(), scavenger, settings, event, context)


def scan_segment(
    scan_client: Any,
    scavenger: Any,
    settings: BackfillConfig,
    event: Mapping[str, Any],
    context: Any,
    *,
    margin_s: float = PAGE_MARGIN_S,
) -> dict[str, Any]:
    """The worker's work, with its clients given (tests pass DynamoDB Local's)."""
    segment, segments = int(event[BACKFILL_SEGMENT]), int(event[BACKFILL_TOTAL_SEGMENTS])
    if not 0 <= segment < segments:
        raise ValueError(f"segment {segment} is not one of 0..{segments - 1}")
    start = event.get(BACKFILL_START_KEY)
    held = event.get(BACKFILL_HELD_AT)
    totals = PageResult.from_json(event.get(BACKFILL_TOTALS) or {})
    source = SourceTable.of(settings)
    filters = MappingFilters(tuple(FilterPattern.load(text) for text in settings.filters))
    writes = Budget(settings.write_units_per_s) if settings.write_units_per_s else None
    reads = Budget(settings.read_units_per_s) if settings.read_units_per_s else None
    check_filters([p.pattern for p in filters.patterns])
    after: Mapping[str, Any] | None = decode_key(start) if start else None
    reader = SegmentReader(scan_client, source, segment, segments, after, reads)
    pages_before, longest = totals.pages, 0.0
    page_size = settings.page_size
    if writes is not None:
        acting = max(1, sum(source.event_name in t.event_names for t in scavenger.config.targets))
        page_size = max(1, min(page_size, int(writes.units_per_s * WRITE_WINDOW_S / acting)))
    stop = threading.Event()
    done = False
    for number, items, next_key, read_units in reader.pages(page_size, stop):
        started = time.monotonic()
        records = as_records(items, source, segment, pages_before + number)
        left_s = context.get_remaining_time_in_millis() / 1000
        result = scavenge_page(
            scavenger, filters, records, write_budget=writes,
            call_budget_s=max(1.0, min(CALL_BUDGET_S, left_s - margin_s / 2)),
            deadline=started + left_s - margin_s / 2,
        )  # fmt: skip
        result.read_units, result.pages = read_units, 1
        if result.failed and held is None:
            # The first page with a record not deleted: a later run starts again here.
            held = {BACKFILL_START_KEY: encode_key(after) if after else None}
        totals.add(result)
        after, done = next_key, next_key is None
        longest = max(longest, time.monotonic() - started)
        left_s = context.get_remaining_time_in_millis() / 1000
        if left_s < max(margin_s, 2 * longest):
            stop.set()
    return {
        BACKFILL_SEGMENT: segment,
        BACKFILL_TOTAL_SEGMENTS: segments,
        BACKFILL_START_KEY: encode_key(after) if after and not done else None,
        BACKFILL_DONE: done,
        BACKFILL_HELD_AT: held,
        BACKFILL_TOTALS: totals.to_json(),
    }


@functools.cache
def _scan_client() -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client("dynamodb", config=Config(retries={"mode": "standard"}))
