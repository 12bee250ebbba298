"""Backfill: delete what the stream can no longer deliver, by scanning the source table.

A stream holds 24 hours. Items written before the stream existed (adopting the scavenger on
a full table), or while the scavenger was broken for longer than that, reach no function.
A backfill reads the source's current items with a parallel ``Scan`` and turns each into
the record the scavenger would have received when the item was written: an ``INSERT``
(``MODIFY`` for a scavenger that acts on ``MODIFY`` only) with the item as ``NewImage`` and
its key attributes as ``Keys``, shaped by the source's ``StreamViewType`` (``KEYS_ONLY`` and
``OLD_IMAGE`` carry no new image). There is never an ``OldImage``: a filter on it cannot
match. A scavenger that acts on ``REMOVE`` only cannot be backfilled (the items are gone).

The records pass the mapping's filter criteria (:class:`~.local.event_source_mapping.
MappingFilters`, the local mapping's matcher) and go through the handler's own code
(:class:`~.runtime.scavenger.handler.Scavenger`): the same key mapping and templates,
de-duplication, 25 keys a request, pacing, retries and verified answers. Records the handler
reports are sent again while each call makes progress.

:func:`scavenge_page` is the per-page work, a function of (scavenger, filters, records):
what a worker on AWS would call too. :func:`backfill` runs the segments on this machine,
with the shared budgets and the checkpoint.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import io
import json
import logging
import math
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .local.event_source_mapping import MappingFilters, lambda_shape
from .runtime.scavenger.config import ScavengerConfig
from .runtime.scavenger.logs import LOGGER_NAME

#: ``--segments`` range (DynamoDB's ``TotalSegments``: 1..1,000,000).
MAX_SEGMENTS = 1_000_000
#: Segments scanned at once; more are taken in turn, each with its own checkpoint position.
MAX_WORKERS = 32
#: Default ``Scan`` page ``Limit`` (``--page-size``, 1..:data:`MAX_PAGE_SIZE`); a read
#: budget may make it smaller. DynamoDB also ends a page at 1 MB.
DEFAULT_PAGE_SIZE = 1000
MAX_PAGE_SIZE = 10_000
#: Each handler call gets this much time, as a Lambda timeout would (its own default is 900 s).
CALL_BUDGET_S = 60.0
#: Calls in a row that leave as many records reported as before, before they are given up on.
PATIENCE = 3
#: Eventually consistent reads: one read unit per 8 KB scanned (half a unit per 4 KB).
BYTES_PER_READ_UNIT = 8192
CHECKPOINT_VERSION = 1


class BackfillError(ValueError):
    """A backfill cannot start: the message says why and what to do."""


def event_name_for(config: ScavengerConfig) -> str:
    """The event a scanned item stands for: ``INSERT``, or ``MODIFY`` for a scavenger that acts
    on ``MODIFY`` but not ``INSERT``; a ``REMOVE``-only scavenger cannot be backfilled."""
    events = config.event_names
    if "INSERT" in events:
        return "INSERT"
    if "MODIFY" in events:
        return "MODIFY"
    raise BackfillError(
        "this scavenger acts on REMOVE only: a backfill reads the items the source holds now, "
        "and a REMOVE is about an item that is gone, so there is nothing to read it from "
        "(see docs/backfill.md, 'REMOVE-only scavengers': delete by a scan of the target, or "
        "redrive the on-failure queue while the stream still holds the records)"
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

    def add(self, other: PageResult) -> None:
        for name in (
            "items", "filtered_out", "selected", "skipped", "matched", "unmappable",
            "distinct_keys", "duplicates", "deleted", "calls", "requests", "retries",
            "throttles", "write_units", "read_units", "pages",
        ):  # fmt: skip
            setattr(self, name, getattr(self, name) + getattr(other, name))
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
) -> PageResult:
    """Filter the records as the mapping would, and delete through ``scavenger`` (a
    :class:`~.runtime.scavenger.handler.Scavenger`) what they name.

    Reported records are sent again while calls make progress; after ``patience`` calls in
    a row that do not, they are given up on (``failed``). With ``write_budget``, each call
    waits for its estimate (a key per acting target and record, at least one write unit
    each) and settles with the units the deletes consumed.
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
            write_budget, call_budget_s, patience, sleep,
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
) -> None:
    pending, stalled, first = chunk, 0, True
    while pending:
        estimate = float(len(pending) * acting)
        if write_budget is not None:
            write_budget.take(estimate)
        response = scavenger.handle({"Records": pending}, _CallContext(call_budget_s))
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


# ---- checkpoints ---------------------------------------------------------------------------


def encode_key(key: Mapping[str, Any]) -> dict[str, Any]:
    """A ``LastEvaluatedKey`` as JSON (binary values in base64)."""
    encoded: dict[str, Any] = lambda_shape(key)
    return encoded


def decode_key(key: Mapping[str, Any]) -> dict[str, Any]:
    """Inverse of :func:`encode_key` (key attributes are S, N or B)."""
    return {
        name: {"B": base64.b64decode(v["B"])} if "B" in v else dict(v) for name, v in key.items()
    }


@dataclass
class Checkpoint:
    """Where each segment's scan is: after a key, or done; saved after each finished page.

    The file holds one backfill (``identity``: table, function, configuration hash and
    segment count); one made for another is refused. Each save writes a temporary file and
    renames it over the old one, so a kill at any moment leaves the old or the new file.
    """

    path: Path | None
    identity: dict[str, Any]
    after: dict[int, dict[str, Any]] = field(default_factory=dict)
    done: set[int] = field(default_factory=set)
    #: Items scanned so far (for the progress bar of a resumed run).
    scanned: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @staticmethod
    def default_path(table: str, function: str, digest: str) -> Path:
        """``.stream-scavenger/backfill-<table>-<function>-<config hash>.json``."""
        name = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{table}-{function}-{digest[:12]}")
        return Path(".stream-scavenger") / f"backfill-{name}.json"

    @classmethod
    def load(cls, path: Path | None, identity: dict[str, Any]) -> Checkpoint:
        """The checkpoint at ``path``, or a fresh one; refuses one of another backfill."""
        if path is None or not path.exists():
            return cls(path, identity)
        try:
            saved = json.loads(path.read_text())
        except ValueError:
            raise BackfillError(f"checkpoint {path} is not JSON: remove it to start over") from None
        theirs = {k: saved.get(k) for k in identity} if isinstance(saved, dict) else {}
        if theirs != identity or saved.get("version") != CHECKPOINT_VERSION:
            wrong = [f"{k} {theirs.get(k)!r} (now {v!r})" for k, v in identity.items()
                     if theirs.get(k) != v]  # fmt: skip
            differ = ", ".join(wrong) or f"version {saved.get('version')!r}"
            raise BackfillError(
                f"checkpoint {path} belongs to another backfill: {differ}; use the same "
                "--segments and configuration, another --checkpoint FILE, or remove it"
            )
        return cls(
            path,
            identity,
            {int(s): decode_key(k) for s, k in saved.get("after", {}).items()},
            {s for first, last in saved.get("done", []) for s in range(first, last + 1)},
            int(saved.get("scanned", 0)),
        )

    def position(self, segment: int) -> dict[str, Any] | None:
        """The key to scan the segment after (None: from its start)."""
        return self.after.get(segment)

    def save(self, segment: int, after: Mapping[str, Any] | None, items: int) -> None:
        """The segment's page is finished: it goes on after ``after`` (None: it is done)."""
        with self._lock:
            self.scanned += items
            if after is None:
                self.done.add(segment)
                self.after.pop(segment, None)
            else:
                self.after[segment] = dict(after)
            if self.path is None:
                return
            body = {
                "version": CHECKPOINT_VERSION,
                **self.identity,
                "after": {str(s): encode_key(k) for s, k in sorted(self.after.items())},
                "done": _ranges(self.done),
                "scanned": self.scanned,
            }
            self.path.parent.mkdir(parents=True, exist_ok=True)
            temporary = self.path.with_name(self.path.name + ".tmp")
            temporary.write_text(json.dumps(body, indent=1, sort_keys=True))
            temporary.replace(self.path)


def _ranges(numbers: set[int]) -> list[list[int]]:
    """``{0, 1, 2, 5}`` -> ``[[0, 2], [5, 5]]`` (a million done segments stay small)."""
    ranges: list[list[int]] = []
    for n in sorted(numbers):
        if ranges and ranges[-1][1] == n - 1:
            ranges[-1][1] = n
        else:
            ranges.append([n, n])
    return ranges


# ---- the run -------------------------------------------------------------------------------


@dataclass
class BackfillReport:
    """What a backfill did in this run (a resumed one: since it resumed)."""

    source: SourceTable
    segments: int
    dry_run: bool
    totals: PageResult
    seconds: float
    target_tables: list[str]
    #: Items the table held by ``DescribeTable`` (approximate on AWS: updated every 6 hours).
    item_count: int = 0
    resumed_after: int = 0

    @property
    def ok(self) -> bool:
        """Every selected record's keys were deleted (or, in a dry run, counted)."""
        return not self.totals.failed


def backfill(
    scan_client: Any,
    config: ScavengerConfig,
    writes_client: Callable[[], Any],
    filters: MappingFilters,
    source: SourceTable,
    *,
    segments: int = 4,
    page_size: int = DEFAULT_PAGE_SIZE,
    max_write_units: float | None = None,
    max_read_units: float | None = None,
    checkpoint: Checkpoint | None = None,
    dry_run: bool = False,
    on_page: Callable[[int], None] | None = None,
    call_budget_s: float = CALL_BUDGET_S,
) -> BackfillReport:
    """Scan the source in ``segments`` and scavenge every page; return the report.

    Each worker has its own :class:`Scavenger` and ``writes_client()`` (none in a dry run:
    the handler's dry-run path counts and sends nothing). A segment's checkpoint moves after
    each page whose records were all deleted (or filtered out, or unmappable) and stops
    moving at the first page with a record that was not: the rest of the segment is still
    scanned and scavenged, and the next run starts again at that page. The handler's EMF
    lines are kept from stdout and its log lines below ERROR dropped (the report has the
    counts). Ctrl-C
    stops the workers after their current page (its position saved) and is raised again.
    """
    from .runtime.scavenger.handler import Scavenger

    dry_run = dry_run or config.dry_run
    effective = dry_run_config(config) if dry_run else config
    checkpoint = checkpoint or Checkpoint(None, {})
    stop = threading.Event()
    writes = Budget(max_write_units, stop) if max_write_units else None
    reads = Budget(max_read_units, stop) if max_read_units else None
    described = scan_client.describe_table(TableName=source.name)["Table"]
    item_count = int(described.get("ItemCount") or 0)
    size = int(described.get("TableSizeBytes") or 0)
    unit_per_item = (size / item_count if item_count else 1024) / BYTES_PER_READ_UNIT
    totals, lock = PageResult(), threading.Lock()
    totals.targets = {t.table: TargetCounts(t.table) for t in config.targets}
    resumed_after = checkpoint.scanned
    todo = [s for s in range(segments) if s not in checkpoint.done]
    started = time.monotonic()

    def work(queue: Iterator[int]) -> None:
        scavenger = Scavenger(effective, _NoWrites() if dry_run else writes_client())
        for segment in queue:
            reader = _SegmentReader(scan_client, source, segment, segments, checkpoint, reads)
            reader.unit_per_item = unit_per_item
            held = False  # a page with records not deleted: the checkpoint stays before it
            for page_number, items, after, read_units in reader.pages(page_size, stop):
                records = as_records(items, source, segment, page_number)
                result = scavenge_page(
                    scavenger, filters, records, write_budget=writes, call_budget_s=call_budget_s
                )
                result.read_units, result.pages = read_units, 1
                held = held or bool(result.failed)
                if not dry_run and not held:
                    checkpoint.save(segment, after, len(items))  # once its deletes are done
                with lock:
                    totals.add(result)
                if on_page:
                    on_page(len(items))
            if stop.is_set():
                return

    queue = _shared(iter(todo))
    workers = max(1, min(MAX_WORKERS, len(todo)))
    handler_log = logging.getLogger(LOGGER_NAME)
    level = handler_log.level
    handler_log.setLevel(logging.ERROR)
    try:
        with (
            contextlib.redirect_stdout(io.StringIO()) as emf,
            ThreadPoolExecutor(max_workers=workers, thread_name_prefix="backfill") as pool,
        ):
            futures = [pool.submit(work, queue) for _ in range(workers)]
            try:
                running = set(futures)
                while running:
                    finished, running = wait(running, timeout=0.2, return_when=FIRST_EXCEPTION)
                    emf.seek(0)
                    emf.truncate()
                    for future in finished:
                        future.result()  # a worker's exception stops the backfill
            except BaseException:
                stop.set()
                wait(futures)
                raise
    except Stopped:
        raise KeyboardInterrupt from None
    finally:
        handler_log.setLevel(level)
    return BackfillReport(
        source, segments, dry_run, totals, time.monotonic() - started,
        [t.table for t in config.targets], item_count, resumed_after,
    )  # fmt: skip


class _NoWrites:
    """The dry run's client: the handler's dry-run path never calls it; if it did, nothing
    would be written."""

    def batch_write_item(self, **_: Any) -> dict[str, Any]:
        raise RuntimeError("a dry run sends no BatchWriteItem")


def _shared(iterator: Iterator[int]) -> Iterator[int]:
    """An iterator the workers share (each segment is taken once)."""
    lock = threading.Lock()

    def take() -> Iterator[int]:
        while True:
            with lock:
                value = next(iterator, None)
            if value is None:
                return
            yield value

    return take()


class _SegmentReader:
    """One segment's ``Scan`` pages, from its checkpoint on, within the read budget."""

    def __init__(
        self,
        client: Any,
        source: SourceTable,
        segment: int,
        segments: int,
        checkpoint: Checkpoint,
        budget: Budget | None,
    ) -> None:
        self.client, self.source, self.segment, self.segments = client, source, segment, segments
        self.checkpoint, self.budget = checkpoint, budget
        #: Read units per item, learnt from each page (first: the table's average size).
        self.unit_per_item = 1024 / BYTES_PER_READ_UNIT

    def pages(
        self, page_size: int, stop: threading.Event
    ) -> Iterator[tuple[int, list[dict[str, Any]], dict[str, Any] | None, float]]:
        """(page number, items, the key to go on after or None at the end, read units)."""
        after = self.checkpoint.position(self.segment)
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


def summary_lines(report: BackfillReport) -> list[str]:
    """The report as printed: a line of totals, a table per target, capacity and speed."""
    t = report.totals
    verb = "would delete" if report.dry_run else "keys deleted"
    lines = [
        f"backfill of {report.source.name} as {report.source.event_name} records "
        f"({report.segments} segment(s), {t.pages} page(s)"
        + (f", resumed after {report.resumed_after} items" if report.resumed_after else "")
        + f"): items scanned: {t.items}, filtered out: {t.filtered_out}, "
        f"selected: {t.selected}, skipped: {t.skipped}, unmappable: {t.unmappable}, "
        f"distinct keys: {t.distinct_keys}, duplicates: {t.duplicates}",
    ]
    header = ("target", "matched", verb, "duplicates", "unmappable")
    rows = [
        (c.table, str(c.matched), str(c.deleted), str(c.duplicates), str(c.unmappable))
        for c in report.totals.targets.values()
    ]
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    for row in (header, *rows):
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    rate = f"{t.items / report.seconds:.0f}" if report.seconds else "-"
    lines.append(
        f"BatchWriteItem requests: {t.requests}, retries: {t.retries}, throttles: "
        f"{t.throttles}, read units: {t.read_units:g}, write units: {t.write_units:g}, "
        f"seconds: {report.seconds:.2f}, items/s: {rate}"
    )
    if t.failed:
        shown = "; ".join(place_of(s) for s in sorted(t.failed)[:20])
        more = f" (and {len(t.failed) - 20} more)" if len(t.failed) > 20 else ""
        lines.append(
            f"not deleted: {len(t.failed)} record(s), still reported after {PATIENCE} calls "
            f"without progress: {shown}{more}; each segment's checkpoint stays before its "
            "first page with such a record, so the same command retries from there (deletes "
            "are idempotent)"
        )
    return lines


def config_digest(function: str, environment: Mapping[str, str], filters: Any) -> str:
    """A hash of what decides a backfill's deletes (names the default checkpoint)."""
    import hashlib

    config = ScavengerConfig.from_env(environment)
    decisive = {
        "function": function,
        "SCAVENGER_CONFIG": environment.get("SCAVENGER_CONFIG"),
        "targets": [target.table for target in config.targets],
        "FilterCriteria": filters,
    }
    return hashlib.sha256(json.dumps(decisive, sort_keys=True, default=str).encode()).hexdigest()


def write_units_share(report: BackfillReport, max_write_units: float) -> float:
    """Share of the write budget the backfill used (1.0: all of it)."""
    allowed = max_write_units * report.seconds
    return report.totals.write_units / allowed if allowed else math.nan


def dry_run_config(config: ScavengerConfig) -> ScavengerConfig:
    """The same configuration, counting instead of deleting."""
    return dataclasses.replace(config, dry_run=True)
