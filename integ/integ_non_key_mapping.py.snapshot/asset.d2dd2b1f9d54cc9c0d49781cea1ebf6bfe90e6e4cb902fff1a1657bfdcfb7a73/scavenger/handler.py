"""The Lambda entry point: ``scavenger.handler.handler``.

Each invocation is one pass of a batch processor: map each record to a key in every
target that acts on its event (``records``), delete the distinct keys of all targets
together (``deleter``), answer with the partial-batch response for streams, and report
the counts. Lambda checkpoints at the lowest reported sequence number and replays
everything after it, so every record with a key (in any target) that was not
confirmed deleted is reported; deletes are idempotent, so replays are harmless, and a
replayed record whose delete this container already confirmed is acknowledged without a
request (``deleter.ConfirmedDeletes``). The exceptions are records that can never
succeed (unmappable, including keys DynamoDB rejects on their own): they are logged and
counted, not reported, so they do not block the shard.

The report, written also when the batch must fail whole, is one summary log line and
the EMF metric lines (``metrics``) of :data:`SUMMARY_METRICS`. The log line's message is
``scavenged`` (``dry run: would delete`` in a dry run), at WARNING when any record is
reported, else INFO; its ``summary`` field is :class:`Summary`, with no item data::

    {"records": 72, "matched": 70, "skipped": 1, "unmappable": 1, "distinct_keys": 50,
     "duplicates": 20, "deleted": 50, "reported": 0, "remembered": 0,
     "deletes": {"requests": 4, "retries": 2, "unprocessed": 0, "throttles": 2,
                 "errors": 0, "splits": 0, "consumed_wcu": 50.0,
                 "error_codes": {"ThrottlingException": 2}},
     "timed_out": false, "throttled_out": false, "not_mapped": 0, "duration_ms": 41.7,
     "targets": [{"table": "staging", "matched": 70, "unmappable": 1,
                  "duplicates": 20, "deleted": 50, "reported": 0, "remembered": 0}]}

An event without a ``Records`` list logs an error instead of the summary line and
emits zero counts.
"""

from __future__ import annotations

import functools
import os
import random
import time
import zlib
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from operator import attrgetter
from typing import Any, TypedDict

import boto3
from botocore.config import Config

from .config import TARGET_METRICS, ScavengerConfig
from .deleter import (
    MIN_REQUEST_S,
    BatchDeleter,
    ChecksumMismatch,
    ConfirmedDeletes,
    Deadline,
    DeleteResult,
    DeleteStats,
    DynamoDBClient,
    RecordId,
)
from .logs import get_logger, quiet_sdk_loggers
from .metrics import emit
from .records import MAPPINGS, Identity, TargetKey, Unmappable, event_name_of, map_record

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


class PartialItemFailure(TypedDict):
    """One record Lambda must replay, named by its ``dynamodb.SequenceNumber``."""

    itemIdentifier: str


class PartialBatchResponse(TypedDict):
    """The answer to a stream batch (``ReportBatchItemFailures``); empty acknowledges all."""

    batchItemFailures: list[PartialItemFailure]


@dataclass
class TargetSummary:
    """One target's counts for one invocation."""

    table: str
    matched: int = 0
    unmappable: int = 0
    duplicates: int = 0
    deleted: int = 0
    reported: int = 0
    #: Records acknowledged without a request: this container confirmed their delete before.
    remembered: int = 0


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
    #: Replayed records whose delete this container had confirmed (in some target): no request.
    remembered: int = 0
    #: How the deletes went; all zero in a dry run, which sends no request.
    deletes: DeleteStats = field(default_factory=DeleteStats)
    timed_out: bool = False
    #: Time ran out with keys unconfirmed while the target throttled (under-provisioned).
    throttled_out: bool = False
    #: Records not looked at because mapping ran out of time (all reported).
    not_mapped: int = 0
    duration_ms: float = 0.0
    targets: list[TargetSummary] = field(default_factory=list)

    @classmethod
    def start(cls, records: int, tables: list[str]) -> Summary:
        """Zero counts for a batch of ``records`` records and these target tables."""
        return cls(records=records, targets=[TargetSummary(table) for table in tables])


#: Each metric of ``config.METRICS`` (which gives its unit) and the :class:`Summary` field
#: it carries: adding a metric is a line there and a line here.
SUMMARY_METRICS = {
    "RecordsReceived": "records",
    "RecordsMatched": "matched",
    "RecordsSkipped": "skipped",
    "UnmappableRecords": "unmappable",
    "DuplicateKeys": "duplicates",
    "KeysDeleted": "deleted",
    "RecordsReported": "reported",
    "BatchWriteRequests": "deletes.requests",
    "Retries": "deletes.retries",
    "UnprocessedItems": "deletes.unprocessed",
    "Throttles": "deletes.throttles",
    "ConsumedWriteCapacity": "deletes.consumed_wcu",
    "ThrottledOut": "throttled_out",
    "BatchLatency": "duration_ms",
}
#: The per-target metrics carry the :class:`TargetSummary` fields of the same names.
TARGET_SUMMARY_METRICS = {name: SUMMARY_METRICS[name] for name in TARGET_METRICS}


def metric_values(counts: Summary | TargetSummary, fields: Mapping[str, str]) -> dict[str, float]:
    """Metric name -> value, read from ``counts`` through ``fields`` (metric -> field path);
    a flag counts 1 or 0 (EMF values are numbers)."""
    values = {name: attrgetter(path)(counts) for name, path in fields.items()}
    return {name: int(v) if isinstance(v, bool) else v for name, v in values.items()}


@dataclass
class MappedBatch:
    """What mapping found: per target, its distinct keys and the records that named them."""

    records: list[Any]
    #: Per target: its distinct keys, by identity.
    keys: list[dict[Identity, TargetKey]]
    #: Per target: (record index, key identity) for every record that named a key there.
    named: list[list[tuple[int, Identity]]]
    #: Indices of the records that could not name a key in at least one target.
    unmappable: set[int] = field(default_factory=set)
    #: Records mapped, a prefix of ``records``: the rest were not looked at (out of time).
    mapped: int = 0
    #: Every target's distinct keys in the order of the first record naming each.
    in_stream_order: list[TargetKey] = field(default_factory=list)

    @classmethod
    def empty(cls, records: list[Any], targets: int) -> MappedBatch:
        """Nothing mapped yet, for ``targets`` targets."""
        return cls(records, [{} for _ in range(targets)], [[] for _ in range(targets)])

    def add(self, position: int, index: int, key: TargetKey) -> bool:
        """Note that record ``index`` names ``key`` in target ``position``; False if a duplicate."""
        self.named[position].append((index, key.identity))
        table_keys = self.keys[position]
        if key.identity in table_keys:
            return False
        table_keys[key.identity] = key
        self.in_stream_order.append(key)
        return True

    def distinct_keys(self) -> list[TargetKey]:
        """Every target's distinct keys, to delete in one go, in stream order: what does not
        get deleted in time is the tail, so Lambda's checkpoint moves as far as it can."""
        return self.in_stream_order


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
        self._confirmed = ConfirmedDeletes()
        self._deleter = BatchDeleter(
            client,
            max_concurrency=config.max_concurrency,
            max_attempts=config.max_attempts,
            sleep=sleep,
            rng=rng or random.random,
        )

    def handle(self, event: Any, context: Any = None) -> PartialBatchResponse:
        """Map the batch, delete its keys, answer with the records to replay, report the counts."""
        started = self._clock()
        # Before mapping: a huge batch spends the invocation's time there too.
        deadline = Deadline(_remaining_seconds(context, started, self._clock), RESERVE_S)
        records = event.get("Records") if isinstance(event, Mapping) else None
        if not isinstance(records, list):
            return self._no_records(event)
        summary = Summary.start(len(records), [t.table for t in self.config.targets])
        batch = self._map_batch(records, deadline, summary)
        result = self._delete(batch, deadline, summary)
        try:
            return self._respond(batch, result, summary)
        finally:
            # Also when the batch must fail whole: the counts still reach logs and metrics.
            self._report(summary, started)

    def _no_records(self, event: Any) -> PartialBatchResponse:
        """Nothing to map: say so, emit zero counts, acknowledge."""
        log.error(
            "event has no Records list; nothing to scavenge",
            extra={"event_type": type(event).__name__},
        )
        self.last_summary = Summary()
        self._emit(self.last_summary)
        return {"batchItemFailures": []}

    def _map_batch(self, records: list[Any], deadline: Deadline, summary: Summary) -> MappedBatch:
        """Map records in order until done or out of mapping time.

        Mapping stops once it has spent ``MAPPING_SHARE`` of the time there was, keeping
        the rest for deleting what it mapped; the records not mapped are reported, so a
        batch too slow to map in one invocation still moves forward.
        """
        batch = MappedBatch.empty(records, len(self.config.targets))
        stop_at = max(MIN_REQUEST_S, deadline.left() * (1 - MAPPING_SHARE))
        for index, record in enumerate(records):
            if index % DEADLINE_CHECK_EVERY == 0 and deadline.left() < stop_at:
                break
            self._map_record(index, record, batch, summary)
            batch.mapped += 1
        summary.not_mapped = len(records) - batch.mapped
        summary.distinct_keys = sum(len(table_keys) for table_keys in batch.keys)
        summary.duplicates = sum(t.duplicates for t in summary.targets)
        return batch

    def _map_record(self, index: int, record: Any, batch: MappedBatch, summary: Summary) -> None:
        """Add the keys one record names, in every target that acts on its event."""
        try:
            event_name = event_name_of(record)
        except Unmappable as why:
            batch.unmappable.add(index)
            self._log_unmappable(record, index, why, None)
            return
        selected = named = remembered = False
        record_id = _record_id(record)
        for position, target in enumerate(self.config.targets):
            if event_name not in target.event_names:
                continue
            selected = True
            counts = summary.targets[position]
            try:
                key = map_record(record, target)
            except Unmappable as why:
                counts.unmappable += 1
                batch.unmappable.add(index)
                self._log_unmappable(record, index, why, target.table)
                continue
            counts.matched += 1
            named = True
            if self.config.log_items:
                log.debug("key", extra={"table": key.table, "key": _printable(key.request)})
            if record_id is not None and (key.table, record_id, key.identity) in self._confirmed:
                counts.remembered += 1
                remembered = True
            elif not batch.add(position, index, key):
                counts.duplicates += 1
        summary.skipped += not selected
        summary.matched += named
        summary.remembered += remembered

    def _delete(self, batch: MappedBatch, deadline: Deadline, summary: Summary) -> DeleteResult:
        """Delete the batch's distinct keys; a dry run takes them all as deleted, sending nothing.

        The records naming a key DynamoDB rejected on its own become unmappable.
        """
        if self.config.dry_run:
            # Everything but the deletes: the counts say what a real run would delete.
            targets = zip(summary.targets, batch.keys, strict=True)
            result = DeleteResult(deleted={t.table: set(keys) for t, keys in targets})
        else:
            result = self._deleter.delete(batch.distinct_keys(), deadline)
            self._remember(batch, result)
        summary.deletes = result.stats
        summary.deleted = result.deleted_count
        for counts in summary.targets:
            counts.deleted = len(result.deleted.get(counts.table, ()))
        summary.timed_out = result.timed_out or batch.mapped < len(batch.records)
        summary.throttled_out = result.throttled_out
        if result.rejected:
            self._unmap_rejected(batch, result, deadline, summary)
        summary.unmappable = len(batch.unmappable)
        return result

    def _remember(self, batch: MappedBatch, result: DeleteResult) -> None:
        """Note every record whose key a response confirmed, so a replay sends nothing."""
        for target, named in zip(self.config.targets, batch.named, strict=True):
            confirmed = result.deleted.get(target.table, set())
            for index, identity in named:
                record_id = _record_id(batch.records[index])
                if identity in confirmed and record_id is not None:
                    self._confirmed.add(target.table, record_id, identity)

    def _unmap_rejected(
        self, batch: MappedBatch, result: DeleteResult, deadline: Deadline, summary: Summary
    ) -> None:
        """Records naming a key DynamoDB rejected on its own become unmappable in that target.

        The reason names the error code only: DynamoDB's message can quote values. These
        lines are written after the deletes, so they may use half the reserve; past that,
        the rest are counted in one line rather than let the answer miss the timeout.
        """
        still_named: set[int] = set()
        lost: set[int] = set()
        logged, unlogged = 0, 0
        for counts, named in zip(summary.targets, batch.named, strict=True):
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
                self._log_unmappable(batch.records[index], index, why, counts.table)
                logged += 1
        if unlogged:
            log.warning(
                "unmappable records not logged one by one: out of time",
                extra={"count": unlogged, "reason": "the target rejects these keys on their own"},
            )
        summary.matched -= len(lost - still_named)
        batch.unmappable |= lost

    def _respond(
        self, batch: MappedBatch, result: DeleteResult, summary: Summary
    ) -> PartialBatchResponse:
        """Report each record not mapped and each with a key not confirmed deleted.

        A rejected key is not reported: replaying it cannot help, and its records are
        unmappable instead.
        """
        to_report = set(range(batch.mapped, len(batch.records)))
        for counts, named in zip(summary.targets, batch.named, strict=True):
            confirmed = result.deleted.get(counts.table, set())
            rejected = result.rejected.get(counts.table, {})
            for index, identity in named:
                if identity not in confirmed and identity not in rejected:
                    counts.reported += 1
                    to_report.add(index)
        summary.reported = len(to_report)
        return partial_batch_response([batch.records[index] for index in sorted(to_report)])

    def _report(self, summary: Summary, started: float) -> None:
        """Log the summary line and emit the metrics."""
        summary.duration_ms = round((self._clock() - started) * 1000, 3)
        self.last_summary = summary
        message = "dry run: would delete" if self.config.dry_run else "scavenged"
        level = log.warning if summary.reported else log.info
        level(message, extra={"summary": asdict(summary)})
        self._emit(summary)

    def _emit(self, summary: Summary) -> None:
        """One EMF line for the invocation and, with several targets, one per target."""
        if len(summary.targets) > 1:
            for target in summary.targets:
                values = metric_values(target, TARGET_SUMMARY_METRICS)
                emit(values, self._function_name, target_table=target.table)
        emit(metric_values(summary, SUMMARY_METRICS), self._function_name)

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


def partial_batch_response(to_report: list[Any]) -> PartialBatchResponse:
    """The answer naming ``to_report`` by sequence number, in the order Lambda checkpoints.

    Raises :class:`UnreportableFailure` when one of them has no sequence number.
    """
    sequence_numbers = {_sequence_number(record) for record in to_report}
    if None in sequence_numbers:
        raise UnreportableFailure(
            "a record whose key was not deleted has no dynamodb.SequenceNumber; "
            "failing the invocation so Lambda retries the whole batch"
        )
    ordered = sorted((s for s in sequence_numbers if s is not None), key=_sequence_order)
    return {"batchItemFailures": [{"itemIdentifier": s} for s in ordered]}


def _sequence_number(record: Any) -> str | None:
    stream = record.get("dynamodb") if isinstance(record, MAPPINGS) else None
    value = stream.get("SequenceNumber") if isinstance(stream, MAPPINGS) else None
    return value if isinstance(value, str) and value else None


def _record_id(record: Any) -> RecordId | None:
    """What names a stream record across replays; None when a part is missing."""
    if not isinstance(record, MAPPINGS):
        return None
    arn, event_id = record.get("eventSourceARN"), record.get("eventID")
    sequence_number = _sequence_number(record)
    if isinstance(arn, str) and isinstance(event_id, str) and sequence_number:
        return (arn, event_id, sequence_number)
    return None


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


def make_client(scavenger: ScavengerConfig, /, **overrides: Any) -> Any:
    """A DynamoDB client that fails fast: the scavenger does its own retries.

    Created the standard boto3 way, so ``AWS_ENDPOINT_URL`` and
    ``AWS_ENDPOINT_URL_DYNAMODB`` point it at another endpoint; ``overrides``
    are passed to ``boto3.client`` (tests use them for an endpoint and region), a
    ``config`` among them merged over the scavenger's own (e.g. ``proxies={}``).
    Client-side parameter validation is off: the requests are built from keys already
    checked against the key schema, DynamoDB validates on the server anyway (a rejected
    key is isolated and counted unmappable), and it cost about 11 us per record.
    """
    base = Config(
        retries={"total_max_attempts": 1, "mode": "standard"},
        connect_timeout=2,
        read_timeout=10,
        max_pool_connections=scavenger.max_concurrency,
        parameter_validation=False,
    )
    given = overrides.pop("config", None)
    client = boto3.client("dynamodb", **overrides, config=base.merge(given) if given else base)
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
def container_scavenger() -> Scavenger:
    """The container's one scavenger (its client, pacer and memory of confirmed deletes)."""
    config = ScavengerConfig.from_env(os.environ)
    # The runtime may have set the root logger to DEBUG, where botocore logs request bodies.
    quiet_sdk_loggers(config.log_items)
    return Scavenger(config, make_client(config))


def handler(event: Any, context: Any) -> PartialBatchResponse:
    """Lambda entry point; the config and client are built once per container."""
    return container_scavenger().handle(event, context)


if os.environ.get("AWS_LAMBDA_FUNCTION_NAME") and os.environ.get("SCAVENGER_CONFIG"):
    # In Lambda, build the client during the init phase, not on the first batch.
    container_scavenger()
