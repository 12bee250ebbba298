"""A local event source mapping: DynamoDB Local's stream in, Lambda-shaped batches out.

Modelled on Lambda's rules for DynamoDB streams, read from the mapping's own
template properties:

- batches of ``BatchSize`` records from one shard, from ``StartingPosition``
  (where a new mapping starts: the child of a shard it was reading is read
  from the child's first record). LATEST has no sequence number to resume at:
  a shard is taken from the second the mapping first opened it (its records
  made earlier are read past), so a later run of the same checkpoint neither
  skips what came between runs nor delivers what was there before (records of
  that very second may be delivered);
- ``FilterCriteria``, matched with the function's own matcher
  (:class:`~..runtime.scavenger.filtering.MappingFilters`, held to moto's maintained
  EventBridge-pattern matcher by a property test; Lambda's own is not published);
- ``ReportBatchItemFailures``: after a partial failure, resume at the lowest
  reported sequence number (an unknown or empty identifier fails the batch);
- a function error retries the whole batch, split in two first when
  ``BisectBatchOnFunctionError`` is on;
- ``MaximumRetryAttempts`` and ``MaximumRecordAgeInSeconds``: records given up
  on are reported to the on-failure destination with the message Lambda sends.
  The checkpoint moves past them only when the destination keeps the message
  (a file or a queue); with one that does not (memory, the default) it stays
  before them for the rest of the run, so the next run delivers them again;
- ``MaximumBatchingWindowInSeconds``: once the reader has caught up with a
  shard (an empty page), a partial batch waits up to the window for more
  records before it is delivered;
- a checkpoint per shard, saved after every batch's outcome (and past records
  filtered out), so an interrupted run resumes after the last finished batch;
  with it, the shards the mapping read while they were open (and when it first
  opened them at LATEST), whose children are read from their first record
  whatever ``StartingPosition`` says.

Every page of ``DescribeStream`` is read, and shards are drained one after
another, a parent before its children (``ParallelizationFactor`` is not
modelled). Shards are read with :class:`ShardReader`, the reader redrive uses
too: an empty ``GetRecords`` page is not the end of a shard; a closed shard is
read until it has no next iterator, an open one until ``EMPTY_PAGES``
consecutive empty pages, ``POLL_INTERVAL_S`` apart. ``undelivered()`` then
re-reads every shard after its checkpoint, to prove that nothing was left.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

from ..runtime.scavenger.backfill import lambda_shape
from ..runtime.scavenger.filtering import MappingFilters
from .assembly import TableDef

Invoke = Callable[[Mapping[str, Any]], Any]
#: An open shard is drained after this many consecutive empty GetRecords pages ...
EMPTY_PAGES = 5
#: ... this far apart (seconds).
POLL_INTERVAL_S = 0.1


def create_table(client: Any, name: str, table: TableDef) -> str:
    """Create ``table`` as the template defines it (keys and stream); return its stream ARN."""
    props = table.properties
    request: dict[str, Any] = {
        "TableName": name,
        "KeySchema": props["KeySchema"],
        "AttributeDefinitions": props["AttributeDefinitions"],
        "BillingMode": "PAY_PER_REQUEST",
    }
    if table.stream_view_type:
        request["StreamSpecification"] = {
            "StreamEnabled": True,
            "StreamViewType": table.stream_view_type,
        }
    response = client.create_table(**request)
    return str(response["TableDescription"].get("LatestStreamArn", ""))


def table_names_for(tables: Mapping[str, TableDef], prefix: str = "") -> dict[str, str]:
    """Local table names: the logical IDs (DynamoDB Local accepts them), optionally prefixed."""
    return {logical_id: f"{prefix}{logical_id}" for logical_id in tables}


def lambda_record(record: Mapping[str, Any], stream_arn: str, region: str) -> dict[str, Any]:
    """A stream record as Lambda delivers it, with its stream ARN and a real region
    (DynamoDB Local says "ddblocal")."""
    shaped: dict[str, Any] = lambda_shape(record)
    shaped["eventSourceARN"] = stream_arn
    shaped["awsRegion"] = region
    return shaped


# ---- where records given up on go ---------------------------------------------------------


class Destination(Protocol):
    """An on-failure destination: receives Lambda's on-failure message.

    ``durable``: the message outlives the run (a file, a queue). Only then does the
    checkpoint move past the records it names; a destination without the attribute
    counts as not durable.
    """

    def send(self, message: dict[str, Any]) -> None: ...


@dataclass
class MemoryDestination:
    """Keeps the messages in memory (the default; tests read them). Not durable: the
    checkpoint stays before what was given up on, so a later run delivers it again."""

    messages: list[dict[str, Any]] = field(default_factory=list)
    durable: ClassVar[bool] = False

    def send(self, message: dict[str, Any]) -> None:
        self.messages.append(message)


@dataclass
class FileDestination:
    """Appends each message as one JSON line to a file."""

    path: Path
    durable: ClassVar[bool] = True

    def send(self, message: dict[str, Any]) -> None:
        with self.path.open("a") as out:
            out.write(json.dumps(message, sort_keys=True) + "\n")


@dataclass
class SqsDestination:
    """Sends each message to an SQS queue (any endpoint the client points at)."""

    client: Any
    queue_url: str
    durable: ClassVar[bool] = True

    def send(self, message: dict[str, Any]) -> None:
        self.client.send_message(QueueUrl=self.queue_url, MessageBody=json.dumps(message))


# ---- checkpoints ----------------------------------------------------------------------------


@dataclass
class Checkpoints:
    """Last finished sequence number per shard, and the shards read while open, saved to
    ``path`` (if any) under ``key`` after each change.

    The file holds one entry per key: ``{"shards": {shard ID: sequence number},
    "opened": {shard ID: second}}``. ``stream-scavenger run --table`` keys it by the stream, the
    function and a hash of the function's configuration, so another function, or the
    same one with another configuration or targets, starts its own.
    """

    path: Path | None = None
    key: str = ""
    shards: dict[str, str] = field(default_factory=dict)
    #: Shards this mapping read while they were open: their children hold the records after
    #: theirs, so a child is read from its first record (even at ``StartingPosition`` LATEST).
    #: With each, the second (epoch) it was first opened at LATEST, 0 if it was read from its
    #: start: at LATEST, the mapping's records of that shard are the ones from that second on.
    opened: dict[str, int] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path | None, key: str) -> Checkpoints:
        """The checkpoints saved at ``path`` under ``key``; empty if there are none."""
        entry: Any = {}
        if path is not None and path.exists():
            entry = json.loads(path.read_text()).get(key, {})
        if not isinstance(entry, dict):
            entry = {}
        shards, opened = entry.get("shards"), entry.get("opened")
        return cls(
            path,
            key,
            dict(shards) if isinstance(shards, dict) else {},
            {str(k): int(v) for k, v in opened.items()} if isinstance(opened, dict) else {},
        )

    @staticmethod
    def default_path(stream_arn: str, scope: str = "") -> Path:
        """Where ``stream-scavenger run --table`` keeps a stream's checkpoints: a file named
        after its table and stream label (and ``scope``, e.g. the function and its
        configuration), in ``.stream-scavenger/`` of the current directory."""
        name = stream_arn.partition(":table/")[2] or stream_arn
        name = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{name}-{scope}" if scope else name)
        return Path(".stream-scavenger") / f"checkpoint-{name}.json"

    def done(self, shard_id: str, sequence_number: str) -> None:
        """Everything up to ``sequence_number`` in the shard is finished."""
        self.shards[shard_id] = sequence_number
        self._save()

    def open(self, shard_id: str, at_latest: int = 0) -> None:
        """The mapping reads the shard while it is open (first at LATEST in second
        ``at_latest``, or 0: from its start)."""
        if shard_id not in self.opened:
            self.opened[shard_id] = at_latest
            self._save()

    def _save(self) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        saved = json.loads(self.path.read_text()) if self.path.exists() else {}
        saved[self.key] = {"shards": self.shards, "opened": self.opened}
        temporary = self.path.with_name(self.path.name + ".tmp")  # never the file itself
        temporary.write_text(json.dumps(saved, indent=1, sort_keys=True))
        temporary.replace(self.path)


# ---- reading a shard ------------------------------------------------------------------------

#: A ``GetRecords`` page (Lambda-shaped records, maybe none) and whether the shard is drained.
Page = tuple[list[dict[str, Any]], bool]


class ShardReader:
    """Reads a stream's shards by one rule: the local mapping's and redrive's.

    An empty ``GetRecords`` page is not the end of a shard (DynamoDB Streams may answer
    empty before later records). A closed shard, one ``DescribeStream`` lists with an
    ``EndingSequenceNumber``, is read until ``GetRecords`` gives no next iterator, past any
    run of empty pages. An open shard is drained after ``empty_pages`` empty pages in a
    row, ``poll_interval_s`` apart; before saying so the shard is described again, and if it
    closed meanwhile it is read to its end like any closed shard.
    """

    def __init__(
        self,
        streams_client: Any,
        stream_arn: str,
        *,
        empty_pages: int,
        poll_interval_s: float,
        sleep: Callable[[float], None] = time.sleep,
        region: str = "us-east-1",
    ) -> None:
        self._streams = streams_client
        self.stream_arn = stream_arn
        self.empty_pages = empty_pages
        self.poll_interval_s = poll_interval_s
        self._sleep = sleep
        self._region = region

    def shards(self) -> list[dict[str, Any]]:
        """Every shard of the stream, as ``DescribeStream`` lists them (all pages)."""
        shards: list[dict[str, Any]] = []
        page: dict[str, Any] = {}
        while True:
            description = self._streams.describe_stream(StreamArn=self.stream_arn, **page)
            shards += description["StreamDescription"]["Shards"]
            last = description["StreamDescription"].get("LastEvaluatedShardId")
            if not last:
                return shards
            page = {"ExclusiveStartShardId": last}

    def is_open(self, shard_id: str) -> bool:
        """Whether ``DescribeStream`` lists the shard as open now (a shard it does not list
        counts as open: it is read with the bound)."""
        listed = [s for s in self.shards() if s.get("ShardId") == shard_id]
        return not listed or _is_open(listed[0])

    def pages(
        self,
        shard_id: str,
        position: Mapping[str, str],
        described: Mapping[str, Any] | None = None,
    ) -> Iterator[Page]:
        """The shard's pages from ``position`` (``GetShardIterator``'s ``ShardIteratorType``
        and ``SequenceNumber``), empty ones included, each with whether the shard is now
        drained; ends where the shard has no next iterator (closed, read to its end).

        ``described``: the shard as ``DescribeStream`` just listed it (else it is described
        here). A consumer may read on past a drained page (say, for a batching window).
        """
        is_open = _is_open(described) if described is not None else self.is_open(shard_id)
        iterator = self._streams.get_shard_iterator(
            StreamArn=self.stream_arn, ShardId=shard_id, **position
        )["ShardIterator"]
        empty = 0
        while iterator:
            if empty:
                self._sleep(self.poll_interval_s)
            page = self._streams.get_records(ShardIterator=iterator, Limit=1000)
            records = page.get("Records") or []
            empty = 0 if records else empty + 1
            if is_open and empty == self.empty_pages:
                is_open = self.is_open(shard_id)  # closed meanwhile: read it to its end
            shaped = [lambda_record(r, self.stream_arn, self._region) for r in records]
            yield shaped, is_open and empty >= self.empty_pages
            iterator = page.get("NextShardIterator")


# ---- the mapping ----------------------------------------------------------------------------


@dataclass
class RunStats:
    """What a local run did."""

    records_read: int = 0
    records_filtered_out: int = 0
    #: At ``StartingPosition`` LATEST: records of a shard from before the second the mapping
    #: first opened it (read past, not delivered).
    records_before_start: int = 0
    invocations: int = 0
    function_errors: int = 0
    partial_failures: int = 0
    bisections: int = 0
    records_given_up: int = 0
    given_up: list[dict[str, Any]] = field(default_factory=list)
    responses: list[Any] = field(default_factory=list)
    #: Shards whose checkpoint stays where it was (``""``: none yet) because records given
    #: up on went to a destination that does not keep them: the next run delivers them.
    held: dict[str, str] = field(default_factory=dict)


class LocalEventSourceMapping:
    """Reads every shard of one stream to its end and feeds the records to ``invoke``."""

    def __init__(
        self,
        streams_client: Any,
        stream_arn: str,
        invoke: Invoke,
        mapping_properties: Mapping[str, Any],
        *,
        region: str = "us-east-1",
        on_failure: Destination | None = None,
        checkpoints: Checkpoints | None = None,
        clock: Callable[[], float] = time.time,
        on_batch: Callable[[int], None] | None = None,
        function_arn: str = "arn:aws:lambda:us-east-1:000000000000:function:local",
        empty_pages: int = EMPTY_PAGES,
        poll_interval_s: float = POLL_INTERVAL_S,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._stream_arn = stream_arn
        self._invoke = invoke
        props = mapping_properties
        self._batch_size = int(props.get("BatchSize", 100))
        self._starting_position = str(props.get("StartingPosition", "TRIM_HORIZON"))
        self._retry_attempts = int(props.get("MaximumRetryAttempts", -1))
        self._max_age_s = int(props.get("MaximumRecordAgeInSeconds", -1))
        self._bisect = bool(props.get("BisectBatchOnFunctionError", False))
        self._window_s = float(props.get("MaximumBatchingWindowInSeconds", 0))
        self._partial = "ReportBatchItemFailures" in (props.get("FunctionResponseTypes") or [])
        self._filters = MappingFilters.of(props)
        self.on_failure: Destination = on_failure or MemoryDestination()
        self.checkpoints = checkpoints or Checkpoints()
        self._clock = clock
        self._on_batch = on_batch
        self._function_arn = function_arn
        self._reader = ShardReader(
            streams_client,
            stream_arn,
            empty_pages=empty_pages,
            poll_interval_s=poll_interval_s,
            sleep=sleep,
            region=region,
        )

    def run(self) -> RunStats:
        """Process everything now in the stream, shard by shard; return what happened."""
        stats = RunStats()
        listed: set[str] = set()
        finished: set[str] = set()  # closed shards read to their end
        while True:
            # Listed again after each pass: a shard that closed meanwhile has children, and
            # (drained while it was open) its own last records, which come before theirs.
            shards = self.shards()
            if {s["ShardId"] for s in shards} <= listed:
                return stats
            for shard in shards:
                listed.add(shard["ShardId"])
                if shard["ShardId"] not in finished:
                    self._drain(shard, stats)
                if not _is_open(shard):
                    finished.add(shard["ShardId"])

    def shards(self) -> list[dict[str, Any]]:
        """Every shard of the stream (all ``DescribeStream`` pages), parents before children."""
        shards = self._reader.shards()
        parents = {s["ShardId"]: s.get("ParentShardId") for s in shards}

        def generation(shard: Mapping[str, Any]) -> int:
            count, parent = 0, shard.get("ParentShardId")
            while parent in parents and count < len(parents):
                count, parent = count + 1, parents[parent]
            return count

        return sorted(shards, key=generation)

    def undelivered(self) -> dict[str, int]:
        """Per shard, records the mapping would deliver that are still after its checkpoint:
        a fresh read by the same rules, which finds none after a complete run."""
        left: dict[str, int] = {}
        for shard in self.shards():
            count = 0
            position, not_before = self._position(shard)
            for page, drained in self._reader.pages(shard["ShardId"], position, shard):
                count += sum(self._filters.selects(r) and not _before(r, not_before) for r in page)
                if drained:
                    break
            if count:
                left[shard["ShardId"]] = count
        return left

    def _drain(self, shard: Mapping[str, Any], stats: RunStats) -> None:
        """Deliver a shard's records after its checkpoint, in batches, until it is drained."""
        shard_id = shard["ShardId"]
        if _is_open(shard):  # its children come after it: read from their start
            latest = self._position(shard)[0] == {"ShardIteratorType": "LATEST"}
            self.checkpoints.open(shard_id, int(self._clock()) if latest else 0)
        last = self.checkpoints.shards.get(shard_id, "")
        batch: list[dict[str, Any]] = []
        deadline: float | None = None  # of the batching window, once the reader caught up
        position, not_before = self._position(shard)
        for page, drained in self._reader.pages(shard_id, position, shard):
            for record in page:
                last = record["dynamodb"]["SequenceNumber"]
                if _before(record, not_before):
                    stats.records_before_start += 1
                    continue
                stats.records_read += 1
                if not self._filters.selects(record):
                    stats.records_filtered_out += 1
                    continue
                batch.append(record)
                if len(batch) == self._batch_size:
                    self._finish(batch, shard_id, stats, last)
                    batch, deadline = [], None
            if batch and not page:
                deadline = time.monotonic() + self._window_s if deadline is None else deadline
                if time.monotonic() >= deadline:
                    self._finish(batch, shard_id, stats, last)
                    batch, deadline = [], None
            if not batch and last:
                self._advance(shard_id, last, stats)  # records filtered out, none pending
            if drained and not batch:  # (a batch in its window keeps the reader polling)
                break
        if batch:
            self._finish(batch, shard_id, stats, last)

    def _position(self, shard: Mapping[str, Any]) -> tuple[dict[str, str], int]:
        """Where the mapping reads the shard from, and the second before which its records
        are not the mapping's (0: none).

        After the shard's checkpoint if it has one. Else ``StartingPosition``, but: the
        child of a shard the mapping was reading holds the records after the parent's, so
        it is read from its first record; and a shard already opened at LATEST is read from
        its start, its records from before the second it was opened passed over (LATEST
        has no sequence number to resume at).
        """
        shard_id = shard["ShardId"]
        after = self.checkpoints.shards.get(shard_id)
        if after:
            return {"ShardIteratorType": "AFTER_SEQUENCE_NUMBER", "SequenceNumber": after}, 0
        parent = shard.get("ParentShardId")
        if parent in self.checkpoints.shards or parent in self.checkpoints.opened:
            return {"ShardIteratorType": "TRIM_HORIZON"}, 0
        opened_at = self.checkpoints.opened.get(shard_id, 0)
        if self._starting_position == "LATEST" and opened_at:
            return {"ShardIteratorType": "TRIM_HORIZON"}, opened_at
        return {"ShardIteratorType": self._starting_position}, 0

    def _finish(
        self, batch: list[dict[str, Any]], shard_id: str, stats: RunStats, through: str
    ) -> None:
        """Deliver a batch; then (only then) everything read up to ``through`` is finished,
        unless records given up on went to a destination that does not keep them."""
        given_up = len(stats.given_up)
        self._deliver(batch, shard_id, stats, attempts=0)
        if len(stats.given_up) > given_up and not getattr(self.on_failure, "durable", False):
            stats.held.setdefault(shard_id, self.checkpoints.shards.get(shard_id, ""))
        self._advance(shard_id, through, stats)
        if self._on_batch:
            self._on_batch(len(batch))

    def _advance(self, shard_id: str, through: str, stats: RunStats) -> None:
        """The shard's checkpoint moves to ``through``, unless it is held for this run."""
        if shard_id not in stats.held and self.checkpoints.shards.get(shard_id) != through:
            self.checkpoints.done(shard_id, through)

    def _deliver(
        self, batch: list[dict[str, Any]], shard_id: str, stats: RunStats, attempts: int
    ) -> None:
        while batch:
            batch = self._drop_expired(batch, shard_id, stats, attempts)
            if not batch:
                return
            stats.invocations += 1
            attempts += 1
            try:
                response = self._invoke({"Records": batch})
            except Exception:  # noqa: BLE001 - any handler exception is a function error
                stats.function_errors += 1
                if self._exhausted(attempts):
                    self._give_up(batch, shard_id, stats, "RetryAttemptsExhausted", attempts)
                    return
                if self._bisect and len(batch) > 1:
                    stats.bisections += 1
                    half = len(batch) // 2
                    self._deliver(batch[:half], shard_id, stats, attempts)
                    self._deliver(batch[half:], shard_id, stats, attempts)
                    return
                continue
            stats.responses.append(response)
            failed_from = _checkpoint(batch, response) if self._partial else None
            if failed_from is None:
                return
            stats.partial_failures += 1
            batch = batch[failed_from:]
            if self._exhausted(attempts):
                self._give_up(batch, shard_id, stats, "RetryAttemptsExhausted", attempts)
                return

    def _exhausted(self, attempts: int) -> bool:
        """Attempts so far include the first invocation; retries are the ones after it."""
        return 0 <= self._retry_attempts < attempts

    def _drop_expired(
        self, batch: list[dict[str, Any]], shard_id: str, stats: RunStats, attempts: int
    ) -> list[dict[str, Any]]:
        if self._max_age_s < 0:
            return batch
        oldest_allowed = self._clock() - self._max_age_s
        expired = [
            r for r in batch if r["dynamodb"].get("ApproximateCreationDateTime", 0) < oldest_allowed
        ]
        if expired:
            self._give_up(expired, shard_id, stats, "RecordAgeExceeded", attempts)
        return [r for r in batch if r not in expired]

    def _give_up(
        self,
        batch: list[dict[str, Any]],
        shard_id: str,
        stats: RunStats,
        condition: str,
        attempts: int,
    ) -> None:
        message = on_failure_message(
            batch, shard_id, self._stream_arn, condition, attempts, self._function_arn
        )
        stats.given_up.append(message)
        stats.records_given_up += len(batch)
        self.on_failure.send(message)


def on_failure_message(
    batch: list[dict[str, Any]],
    shard_id: str,
    stream_arn: str,
    condition: str,
    attempts: int,
    function_arn: str,
) -> dict[str, Any]:
    """The message Lambda sends to an on-failure destination for a DynamoDB stream batch."""
    first, last = batch[0]["dynamodb"], batch[-1]["dynamodb"]

    def iso(epoch: Any) -> str:
        return (
            dt.datetime.fromtimestamp(float(epoch or 0), dt.UTC).isoformat().replace("+00:00", "Z")
        )

    return {
        "requestContext": {
            "requestId": str(uuid.uuid4()),
            "functionArn": function_arn,
            "condition": condition,
            "approximateInvokeCount": attempts,
        },
        "responseContext": {
            "statusCode": 200,
            "executedVersion": "$LATEST",
            "functionError": "Unhandled",
        },
        "version": "1.0",
        "timestamp": dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z"),
        "DDBStreamBatchInfo": {
            "shardId": shard_id,
            "startSequenceNumber": first["SequenceNumber"],
            "endSequenceNumber": last["SequenceNumber"],
            "approximateArrivalOfFirstRecord": iso(first.get("ApproximateCreationDateTime")),
            "approximateArrivalOfLastRecord": iso(last.get("ApproximateCreationDateTime")),
            "batchSize": len(batch),
            "streamArn": stream_arn,
        },
    }


def _before(record: Mapping[str, Any], not_before: int) -> bool:
    """Whether the record was made before second ``not_before`` (0: never)."""
    made = record["dynamodb"].get("ApproximateCreationDateTime", 0)
    return bool(not_before) and int(made) < not_before


def _is_open(shard: Mapping[str, Any]) -> bool:
    """Whether a shard (as ``DescribeStream`` lists it) may still get records."""
    return "EndingSequenceNumber" not in shard.get("SequenceNumberRange", {})


def _checkpoint(batch: list[dict[str, Any]], response: Any) -> int | None:
    """Index to resume from, or None when the batch succeeded (Lambda's stream rules)."""
    failures = response.get("batchItemFailures") if isinstance(response, dict) else None
    if not failures:
        return None
    positions = {r["dynamodb"]["SequenceNumber"]: i for i, r in enumerate(batch)}
    indexes = []
    for failure in failures:
        identifier = failure.get("itemIdentifier") if isinstance(failure, dict) else None
        if identifier not in positions:
            return 0  # an unknown or empty identifier fails the whole batch
        indexes.append(positions[identifier])
    return min(indexes)
