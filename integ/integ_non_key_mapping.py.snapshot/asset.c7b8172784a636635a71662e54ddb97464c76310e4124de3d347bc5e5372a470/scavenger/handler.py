"""The Lambda entry point: ``scavenger.handler.handler``.

Per invocation: map each record to a key in every target that acts on its
event (``records``), delete the distinct keys of all targets together
(``deleter``), and answer with the partial-batch response for streams.
Lambda checkpoints at the lowest reported sequence number and replays
everything after it, so every record with a key (in any target) that was not
confirmed deleted is reported; deletes are idempotent, so replays are harmless.
"""

from __future__ import annotations

import functools
import os
import time
import zlib
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import boto3
from botocore.config import Config

from .config import ScavengerConfig
from .deleter import (
    MIN_REQUEST_S,
    BatchDeleter,
    ChecksumMismatch,
    Deadline,
    DeleteResult,
    DynamoDBClient,
)
from .logs import get_logger, quiet_sdk_loggers
from .metrics import emit
from .records import Identity, TargetKey, Unmappable, event_name_of, map_record

#: Seconds kept back from the Lambda timeout to build the answer and log.
RESERVE_S = 0.8
#: Budget when there is no Lambda context (a direct call from a script).
NO_CONTEXT_BUDGET_S = 900.0
#: Mapping may spend at most this share of the time left when the invocation starts; the
#: rest is for deleting what was mapped, so even a batch too slow to map makes progress.
MAPPING_SHARE = 0.5
#: The deadline is read once per this many records while mapping.
DEADLINE_CHECK_EVERY = 64

log = get_logger()


class UnreportableFailure(Exception):
    """A record whose key was not deleted has no sequence number to report.

    Raising makes Lambda retry the whole batch (and bisect it), which is the
    only way left not to acknowledge that record.
    """


@dataclass
class TargetSummary:
    """One target's counts for one invocation."""

    table: str
    matched: int = 0
    unmappable: int = 0
    duplicates: int = 0
    deleted: int = 0
    reported: int = 0


@dataclass
class Summary:
    """Counts for one invocation; logged as one line, no item data.

    With several targets, ``matched`` counts records that named a key in at least
    one target and ``unmappable`` records that could not name one in at least one
    target (a record can be both); ``targets`` holds each target's own counts.
    """

    records: int = 0
    matched: int = 0
    skipped: int = 0
    unmappable: int = 0
    distinct_keys: int = 0
    duplicates: int = 0
    deleted: int = 0
    reported: int = 0
    requests: int = 0
    retries: int = 0
    unprocessed: int = 0
    throttles: int = 0
    errors: int = 0
    splits: int = 0
    consumed_wcu: float = 0.0
    timed_out: bool = False
    #: Records not looked at because mapping ran out of time (all reported).
    not_mapped: int = 0
    duration_ms: float = 0.0
    targets: list[TargetSummary] = field(default_factory=list)


class Scavenger:
    """Turns one stream batch into deletes and a partial-batch response."""

    def __init__(
        self,
        config: ScavengerConfig,
        client: DynamoDBClient,
        *,
        sleep: Callable[[float], None] = time.sleep,
        rng: Callable[[], float] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self._clock = clock
        self._function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "local")
        #: Counts of the most recent invocation (for tests and the local runner).
        self.last_summary = Summary()
        extra = {"rng": rng} if rng is not None else {}
        self._deleter = BatchDeleter(
            client,
            max_concurrency=config.max_concurrency,
            max_attempts=config.max_attempts,
            sleep=sleep,
            **extra,
        )

    def handle(self, event: Any, context: Any = None) -> dict[str, list[dict[str, str]]]:
        """Process one invocation's event; return ``{"batchItemFailures": [...]}``."""
        started = self._clock()
        # Before mapping: a huge batch spends the invocation's time there too.
        deadline = Deadline(_remaining_seconds(context, started, self._clock), RESERVE_S)
        summary = Summary()
        records = event.get("Records") if isinstance(event, Mapping) else None
        if not isinstance(records, list):
            log.error(
                "event has no Records list; nothing to scavenge",
                extra={"event_type": type(event).__name__},
            )
            self.last_summary = summary
            self._emit(summary)
            return {"batchItemFailures": []}

        summary.records = len(records)
        summary.targets = [TargetSummary(t.table) for t in self.config.targets]
        # Per target: its distinct keys, and (record index, key) for every record that named one.
        keys: list[dict[Identity, TargetKey]] = [{} for _ in self.config.targets]
        wanted: list[list[tuple[int, Identity]]] = [[] for _ in self.config.targets]
        unmappable: set[int] = set()
        mapped = self._map_all(records, deadline, keys, wanted, unmappable, summary)
        summary.not_mapped = len(records) - mapped
        summary.distinct_keys = sum(len(table_keys) for table_keys in keys)
        summary.duplicates = sum(t.duplicates for t in summary.targets)
        if self.config.dry_run:
            # Everything but the deletes: the counts say what a real run would delete.
            result = DeleteResult(
                deleted={t.table: set(k) for t, k in zip(summary.targets, keys, strict=True)}
            )
        else:
            result = self._deleter.delete(
                [key for table_keys in keys for key in table_keys.values()], deadline
            )
        stats = result.stats
        summary.deleted = result.deleted_count
        summary.requests, summary.retries = stats.requests, stats.retries
        summary.unprocessed, summary.throttles = stats.unprocessed, stats.throttles
        summary.errors, summary.consumed_wcu = stats.errors, stats.consumed_wcu
        summary.splits = stats.splits
        summary.timed_out = result.timed_out or mapped < len(records)
        if result.rejected:
            self._count_rejected(records, wanted, result, deadline, unmappable, summary)
        summary.unmappable = len(unmappable)
        missed = set(range(mapped, len(records)))
        for counts, named in zip(summary.targets, wanted, strict=True):
            confirmed = result.deleted.get(counts.table, set())
            rejected = result.rejected.get(counts.table, {})
            counts.deleted = len(confirmed)
            for index, identity in named:
                if identity not in confirmed and identity not in rejected:
                    counts.reported += 1
                    missed.add(index)
        failures = [records[index] for index in sorted(missed)]
        summary.reported = len(failures)
        try:
            return _failure_response(failures)
        finally:
            # Also when the batch must fail whole: the counts still reach logs and metrics.
            summary.duration_ms = round((self._clock() - started) * 1000, 3)
            self.last_summary = summary
            message = "dry run: would delete" if self.config.dry_run else "scavenged"
            level = log.warning if failures else log.info
            level(message, extra={"summary": asdict(summary), "error_codes": stats.error_codes})
            self._emit(summary)

    def _map_all(
        self,
        records: list[Any],
        deadline: Deadline,
        keys: list[dict[Identity, TargetKey]],
        wanted: list[list[tuple[int, Identity]]],
        unmappable: set[int],
        summary: Summary,
    ) -> int:
        """Map records in order until done or out of mapping time; how many were mapped.

        Mapping stops once it has spent half the time there was, keeping the rest for
        deleting what it mapped; the caller reports the records not mapped, so a batch
        too slow to map in one invocation still moves forward.
        """
        stop_at = max(MIN_REQUEST_S, deadline.left() * (1 - MAPPING_SHARE))
        for index, record in enumerate(records):
            if index % DEADLINE_CHECK_EVERY == 0 and deadline.left() < stop_at:
                return index
            try:
                event_name = event_name_of(record)
            except Unmappable as why:
                unmappable.add(index)
                self._log_unmappable(record, index, why, None)
                continue
            self._map(record, index, event_name, keys, wanted, unmappable, summary)
        return len(records)

    def _map(
        self,
        record: Mapping[str, Any],
        index: int,
        event_name: str,
        keys: list[dict[Identity, TargetKey]],
        wanted: list[list[tuple[int, Identity]]],
        unmappable: set[int],
        summary: Summary,
    ) -> None:
        """Add the keys one record names, in every target that acts on its event."""
        selected = named = False
        for position, target in enumerate(self.config.targets):
            if event_name not in target.event_names:
                continue
            selected = True
            counts = summary.targets[position]
            try:
                key = map_record(record, target)
            except Unmappable as why:
                counts.unmappable += 1
                unmappable.add(index)
                self._log_unmappable(record, index, why, target.table)
                continue
            counts.matched += 1
            named = True
            table_keys = keys[position]
            if key.identity in table_keys:
                counts.duplicates += 1
            else:
                table_keys[key.identity] = key
            wanted[position].append((index, key.identity))
            if self.config.log_items:
                log.debug("key", extra={"table": key.table, "key": _printable(key.request)})
        summary.skipped += not selected
        summary.matched += named

    def _count_rejected(
        self,
        records: list[Any],
        wanted: list[list[tuple[int, Identity]]],
        result: DeleteResult,
        deadline: Deadline,
        unmappable: set[int],
        summary: Summary,
    ) -> None:
        """Records naming a key DynamoDB rejected on its own become unmappable in that target.

        The reason names the error code only: DynamoDB's message can quote values. These
        lines are written after the deletes, so they may use half the reserve; past that,
        the rest are counted in one line rather than let the answer miss the timeout.
        """
        still_named: set[int] = set()
        lost: set[int] = set()
        logged, unlogged = 0, 0
        for counts, named in zip(summary.targets, wanted, strict=True):
            rejected = result.rejected.get(counts.table, {})
            for index, identity in named:
                code = rejected.get(identity)
                if code is None:
                    still_named.add(index)
                    continue
                counts.matched -= 1
                counts.unmappable += 1
                lost.add(index)
                if unlogged or (
                    logged % DEADLINE_CHECK_EVERY == 0 and deadline.left() < -RESERVE_S / 2
                ):
                    unlogged += 1
                    continue
                why = Unmappable(f"the target rejects this key on its own ({code})")
                self._log_unmappable(records[index], index, why, counts.table)
                logged += 1
        if unlogged:
            log.warning(
                "unmappable records not logged one by one: out of time",
                extra={"count": unlogged, "reason": "the target rejects these keys on their own"},
            )
        summary.matched -= len(lost - still_named)
        unmappable |= lost

    @staticmethod
    def _log_unmappable(record: Any, index: int, why: Unmappable, table: str | None) -> None:
        log.warning(
            "unmappable record",
            extra={
                "sequence_number": _sequence_number(record),
                "index": index,
                "reason": str(why),
                **({"target_table": table} if table is not None else {}),
            },
        )

    def _emit(self, summary: Summary) -> None:
        if len(summary.targets) > 1:
            for target in summary.targets:
                emit(
                    {
                        "RecordsMatched": target.matched,
                        "UnmappableRecords": target.unmappable,
                        "DuplicateKeys": target.duplicates,
                        "KeysDeleted": target.deleted,
                        "RecordsReported": target.reported,
                    },
                    self._function_name,
                    target_table=target.table,
                )
        emit(
            {
                "RecordsReceived": summary.records,
                "RecordsMatched": summary.matched,
                "RecordsSkipped": summary.skipped,
                "UnmappableRecords": summary.unmappable,
                "DuplicateKeys": summary.duplicates,
                "KeysDeleted": summary.deleted,
                "RecordsReported": summary.reported,
                "BatchWriteRequests": summary.requests,
                "Retries": summary.retries,
                "UnprocessedItems": summary.unprocessed,
                "Throttles": summary.throttles,
                "ConsumedWriteCapacity": summary.consumed_wcu,
                "BatchLatency": summary.duration_ms,
            },
            self._function_name,
        )


def _failure_response(failures: list[Mapping[str, Any]]) -> dict[str, list[dict[str, str]]]:
    sequence_numbers = {_sequence_number(record) for record in failures}
    if None in sequence_numbers:
        raise UnreportableFailure(
            "a record whose key was not deleted has no dynamodb.SequenceNumber; "
            "failing the invocation so Lambda retries the whole batch"
        )
    ordered = sorted((s for s in sequence_numbers if s is not None), key=_sequence_order)
    return {"batchItemFailures": [{"itemIdentifier": s} for s in ordered]}


def _sequence_number(record: Any) -> str | None:
    stream = record.get("dynamodb") if isinstance(record, Mapping) else None
    value = stream.get("SequenceNumber") if isinstance(stream, Mapping) else None
    return value if isinstance(value, str) and value else None


def _sequence_order(sequence_number: str) -> tuple[int, int, str, str]:
    """Sort key: ASCII digit strings in numeric order first, then any other string.

    Compares digits by length and text, never with ``int()`` (which refuses more
    than 4,300 digits and takes "²" for a digit it cannot convert): linear in the
    length, and no spelling raises.
    """
    if sequence_number.isascii() and sequence_number.isdigit():
        digits = sequence_number.lstrip("0")
        return (0, len(digits), digits, sequence_number)
    return (1, 0, "", sequence_number)


def _remaining_seconds(
    context: Any, started: float, clock: Callable[[], float]
) -> Callable[[], float]:
    remaining_ms = getattr(context, "get_remaining_time_in_millis", None)
    if callable(remaining_ms):
        return lambda: float(remaining_ms()) / 1000.0
    return lambda: NO_CONTEXT_BUDGET_S - (clock() - started)


def _printable(key: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    return {
        attr: {t: (v.hex() if isinstance(v, bytes) else v) for t, v in value.items()}
        for attr, value in key.items()
    }


def make_client(config: ScavengerConfig, **overrides: Any) -> Any:
    """A DynamoDB client that fails fast: the scavenger does its own retries.

    Created the standard boto3 way, so ``AWS_ENDPOINT_URL`` and
    ``AWS_ENDPOINT_URL_DYNAMODB`` point it at another endpoint; ``overrides``
    are passed to ``boto3.client`` (tests use them for an endpoint and region).
    """
    client = boto3.client(
        "dynamodb",
        **overrides,
        config=Config(
            retries={"total_max_attempts": 1, "mode": "standard"},
            connect_timeout=2,
            read_timeout=10,
            max_pool_connections=config.max_concurrency,
        ),
    )
    client.meta.events.register("after-call.dynamodb.BatchWriteItem", _verify_crc32)
    return client


def _verify_crc32(http_response: Any, **_: Any) -> None:
    """Refuse an answer whose body does not match its ``x-amz-crc32`` header.

    botocore only retries such an answer, and with one attempt it hands back what it
    parsed; an answer without the header is left to the deleter's structure check.
    """
    expected = http_response.headers.get("x-amz-crc32")
    if expected is None:
        return
    actual = zlib.crc32(http_response.content) & 0xFFFFFFFF
    if not (expected.isascii() and expected.isdigit() and int(expected) == actual):
        raise ChecksumMismatch("the answer's body does not match its x-amz-crc32")


@functools.cache
def _container_scavenger() -> Scavenger:
    config = ScavengerConfig.from_env(os.environ)
    # The runtime may have set the root logger to DEBUG, where botocore logs request bodies.
    quiet_sdk_loggers(config.log_items)
    return Scavenger(config, make_client(config))


def handler(event: Any, context: Any) -> dict[str, list[dict[str, str]]]:
    """Lambda entry point; the config and client are built once per container."""
    return _container_scavenger().handle(event, context)


if os.environ.get("AWS_LAMBDA_FUNCTION_NAME") and os.environ.get("SCAVENGER_CONFIG"):
    # In Lambda, build the client during the init phase, not on the first batch.
    _container_scavenger()
