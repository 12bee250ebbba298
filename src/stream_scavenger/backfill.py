"""``stream-scavenger backfill``: scan the source on this machine and scavenge every page.

What a scanned item stands for and how a page is scavenged live in the function's asset
(:mod:`~.runtime.scavenger.backfill`), so a backfill on AWS runs the same code. Here:
:func:`backfill` runs the segments in threads, with shared write and read budgets and a
checkpoint file that a resumed run starts from, and :func:`summary_lines` prints the report.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import logging
import math
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .runtime.scavenger.backfill import (
    BYTES_PER_READ_UNIT,
    CALL_BUDGET_S,
    DEFAULT_PAGE_SIZE,
    PATIENCE,
    BackfillError,
    Budget,
    PageResult,
    SegmentReader,
    SourceTable,
    Stopped,
    TargetCounts,
    as_records,
    decode_key,
    encode_key,
    place_of,
    scavenge_page,
)
from .runtime.scavenger.config import ScavengerConfig
from .runtime.scavenger.filtering import MappingFilters
from .runtime.scavenger.logs import LOGGER_NAME

#: ``--segments`` range (DynamoDB's ``TotalSegments``: 1..1,000,000).
MAX_SEGMENTS = 1_000_000
#: Segments scanned at once; more are taken in turn, each with its own checkpoint position.
MAX_WORKERS = 32
#: ``--page-size`` range: 1..MAX_PAGE_SIZE (default ``DEFAULT_PAGE_SIZE``).
MAX_PAGE_SIZE = 10_000
CHECKPOINT_VERSION = 1


# ---- checkpoints ---------------------------------------------------------------------------


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
    #: Pages finished per segment, so a resumed run numbers its pages where they are.
    pages: dict[int, int] = field(default_factory=dict)
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
            {int(s): int(n) for s, n in (saved.get("pages") or {}).items()},
        )

    def position(self, segment: int) -> dict[str, Any] | None:
        """The key to scan the segment after (None: from its start)."""
        return self.after.get(segment)

    def save(self, segment: int, after: Mapping[str, Any] | None, items: int) -> None:
        """The segment's page is finished: it goes on after ``after`` (None: it is done)."""
        with self._lock:
            self.scanned += items
            self.pages[segment] = self.pages.get(segment, 0) + 1
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
                "pages": {str(s): n for s, n in sorted(self.pages.items())},
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
        return not self.totals.failed_count


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
            after = checkpoint.position(segment)
            reader = SegmentReader(scan_client, source, segment, segments, after, reads)
            reader.unit_per_item = unit_per_item
            held = False  # a page with records not deleted: the checkpoint stays before it
            first_page = checkpoint.pages.get(segment, 0)  # pages done before a resume
            for page_number, items, after, read_units in reader.pages(page_size, stop):
                records = as_records(items, source, segment, first_page + page_number)
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


#: How a local backfill retries what it could not delete (see :func:`summary_lines`).
RETRY_LOCAL = (
    "each segment's checkpoint stays before its first page with such a record, so the same "
    "command retries from there (deletes are idempotent)"
)


def summary_lines(report: BackfillReport, retry: str = RETRY_LOCAL) -> list[str]:
    """The report as printed: a line of totals, a table per target, capacity and speed;
    ``retry`` says how to retry records not deleted."""
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
    if t.failed_count:
        shown = "; ".join(place_of(s) for s in sorted(t.failed)[:20])
        more = t.failed_count - min(20, len(t.failed))
        lines.append(
            f"not deleted: {t.failed_count} record(s), still reported after {PATIENCE} calls "
            f"without progress: {shown}{f' (and {more} more)' if more else ''}; {retry}"
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
