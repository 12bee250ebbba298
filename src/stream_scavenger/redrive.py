"""Redrive records given up on: on-failure messages in, deletes out.

Lambda's on-failure message for a DynamoDB stream names a shard and a range of
sequence numbers, not the records. While the stream still holds them (24 hours),
they are read back, passed through the event source mapping's own filter criteria,
replayed through the scavenger's delete logic, and the message is deleted only when
the whole range was read through its end record and every replayed record succeeded.

Whenever that cannot be made sure of, the message is kept (visible again at the end
of the run) and the report says why: a message that is not understood, a message of
another function (or one that cannot be matched to this function), a mapping whose
filters cannot be determined for the message's stream, a range the stream no longer
holds whole (trimmed, a shard closed before its end, an open shard that stays empty), a
range the filters would not have delivered (its first or last record filtered out, or
a ``batchSize`` other than the count the filters select in it), a replay that raised or
reported failures, a replay that outlasted the message's visibility timeout, or a
failed delete. One message never stops the others.

The range is read with the local mapping's :class:`~.runner.ShardReader` (one rule for
both): a closed shard until it has no next iterator, an open one until
:data:`EMPTY_PAGES` empty pages in a row, :data:`EMPTY_PAGE_WAIT_S` apart.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any

from .local.assembly import AssemblyError, FunctionDef
from .local.event_source_mapping import ShardReader
from .runtime.scavenger.filtering import MappingFilters

Replay = Callable[[Mapping[str, Any]], Any]

#: Consecutive empty ``GetRecords`` pages of an open shard before the range's end is given
#: up on, and the pause after each (DynamoDB Streams may answer empty before later records).
EMPTY_PAGES = 20
EMPTY_PAGE_WAIT_S = 0.25
#: How long a received message stays invisible: the handler's own budget without a Lambda
#: context (900 s) and a minute to read the range. Messages are received one at a time.
HOLD_S = 960
#: A message is deleted only while at least this much of its visibility timeout is left.
DELETE_MARGIN_S = 10.0
_SEQUENCE_NUMBER = re.compile(r"[0-9]{1,40}")


class Outcome(Enum):
    """What became of one on-failure message."""

    REDRIVEN = "redriven"
    WOULD_REDRIVE = "would redrive"
    NOT_UNDERSTOOD = "not understood"
    FILTERS_UNKNOWN = "filters unknown"
    UNREADABLE = "unreadable"
    FAILED_AGAIN = "failed again"
    NOT_DELETED = "not deleted"


class Kept(Exception):
    """The message stays on the queue, for this reason."""

    def __init__(self, outcome: Outcome, reason: str) -> None:
        super().__init__(reason)
        self.outcome, self.reason = outcome, reason


@dataclass(frozen=True)
class BatchRange:
    """An on-failure message's ``DDBStreamBatchInfo``, checked."""

    stream_arn: str
    shard_id: str
    #: Sequence numbers as the message spells them (digits only; start <= end).
    start: str
    end: str
    batch_size: int | None = None
    #: ``requestContext.functionArn``: the function that gave up on the batch.
    function_arn: str | None = None

    @classmethod
    def parse(cls, body: Any) -> BatchRange:
        """The range of a message body; raises :class:`Kept` (not understood) saying why not."""
        try:
            message = json.loads(body)
        except (TypeError, ValueError):
            raise _not_understood("not JSON") from None
        info = message.get("DDBStreamBatchInfo") if isinstance(message, dict) else None
        if info is None:
            raise _not_understood("no DDBStreamBatchInfo: not a DynamoDB stream on-failure message")
        if not isinstance(info, dict):
            raise _not_understood("DDBStreamBatchInfo is not an object")
        for name in ("streamArn", "shardId"):
            if not isinstance(info.get(name), str) or not info[name]:
                raise _not_understood(f"{name} is missing or empty")
        for name in ("startSequenceNumber", "endSequenceNumber"):
            if name not in info:
                raise _not_understood(f"{name} is missing")
            if not isinstance(info[name], str):
                raise _not_understood(f"{name} is not a string: {_show(info[name])}")
            if not _SEQUENCE_NUMBER.fullmatch(info[name]):
                raise _not_understood(f"{name} is not a string of digits: {_show(info[name])}")
        start, end = info["startSequenceNumber"], info["endSequenceNumber"]
        if int(start) > int(end):
            raise _not_understood(f"startSequenceNumber {start} is after endSequenceNumber {end}")
        if "batchSize" not in info:
            raise _not_understood("batchSize is missing")
        size = info["batchSize"]
        if type(size) is not int or size < 1:
            raise _not_understood(f"batchSize is not a positive integer: {_show(size)}")
        context = message.get("requestContext")
        function_arn = context.get("functionArn") if isinstance(context, dict) else None
        return cls(
            info["streamArn"],
            info["shardId"],
            start,
            end,
            size,
            function_arn if isinstance(function_arn, str) else None,
        )

    def __str__(self) -> str:
        return f"shard {self.shard_id}, sequence numbers {self.start}..{self.end}"


@dataclass(frozen=True)
class Mappings:
    """A function's event source mappings: where each message's filter criteria come from.

    Each mapping has its ``EventSourceArn`` and ``FilterCriteria`` (the template's or
    ``ListEventSourceMappings``' shape). A message is redriven only when it can be matched
    to the function (its ``requestContext.functionArn``): two functions reading the same
    stream may share a queue, and replaying the other one's range through this one's
    targets deletes what that one's filters kept.
    """

    mappings: tuple[Mapping[str, Any], ...]
    #: The function's ARN, when known (deployed, or given): a message must name it (any
    #: version or alias of it).
    function_arn: str | None = None
    #: Otherwise, with a cloud assembly, the function's logical ID: CloudFormation names a
    #: function ``<stack>-<logical ID>-<suffix>``, so the message's function name must hold
    #: ``-<logical ID>-``.
    logical_id: str | None = None

    def check_function(self, batch: BatchRange) -> None:
        """Raises :class:`Kept` (filters unknown) unless the message is this function's."""
        theirs = batch.function_arn
        if not theirs:
            raise _filters_unknown(
                "the message names no function (requestContext.functionArn): whether it is "
                "this function's cannot be checked"
            )
        if self.function_arn:
            if _unqualified(theirs) != _unqualified(self.function_arn):
                raise _filters_unknown(
                    f"the message is from function {theirs}, not {self.function_arn}"
                )
            return
        if self.logical_id:
            if f"-{self.logical_id}-" not in _function_name(theirs):
                raise _filters_unknown(
                    f"the message is from function {theirs}, whose name does not hold "
                    f"{self.logical_id} as CloudFormation names it "
                    f"(<stack>-{self.logical_id}-<suffix>): if it is this function anyway "
                    "(a shortened or chosen name), name it with --function-arn"
                )
            return
        raise _filters_unknown("the function the messages belong to is unknown")

    def filters_for(self, batch: BatchRange) -> MappingFilters:
        """The filters of the one mapping that reads the message's stream; raises
        :class:`Kept` when the message is another function's, when that mapping is not
        exactly one, or when its criteria cannot be read."""
        self.check_function(batch)
        found = [m for m in self.mappings if m.get("EventSourceArn") == batch.stream_arn]
        if not found:
            reads = sorted({str(m.get("EventSourceArn")) for m in self.mappings}) or ["nothing"]
            raise _filters_unknown(
                f"no event source mapping of the function reads stream {batch.stream_arn} "
                f"(its mappings read {', '.join(reads)})"
            )
        if len(found) > 1:
            raise _filters_unknown(
                f"{len(found)} event source mappings of the function read stream "
                f"{batch.stream_arn}: whose filters applied is unknown"
            )
        mapping = found[0]
        if mapping.get("FilterCriteriaError"):
            raise _filters_unknown(
                f"cannot read the mapping's filter criteria: {mapping['FilterCriteriaError']}"
            )
        if mapping.get("KMSKeyArn") and not mapping.get("FilterCriteria"):
            raise _filters_unknown(
                "cannot read the mapping's filter criteria: encrypted with "
                f"{mapping['KMSKeyArn']}, and not returned (kms:Decrypt on that key is needed)"
            )
        try:
            filters = MappingFilters.of(mapping)
        except Exception as err:  # noqa: BLE001 - any unreadable criteria keep the message
            raise _filters_unknown(f"cannot read the mapping's filter criteria: {err}") from None
        return filters


def deployed_mappings(lambda_client: Any, function_name: str) -> tuple[dict[str, str], Mappings]:
    """A deployed function's environment and event source mappings (every page), each read
    with ``GetEventSourceMapping``: the list leaves encrypted filter criteria out."""
    try:
        configuration = lambda_client.get_function_configuration(FunctionName=function_name)
        pages = lambda_client.get_paginator("list_event_source_mappings").paginate(
            FunctionName=function_name
        )
        mappings = tuple(
            lambda_client.get_event_source_mapping(UUID=listed["UUID"])
            for page in pages
            for listed in page.get("EventSourceMappings", [])
        )
    except Exception as err:  # noqa: BLE001 - a set-up error: nothing was touched yet
        raise ValueError(f"cannot read function {function_name}: {err}") from None
    environment = dict(configuration.get("Environment", {}).get("Variables", {}))
    return environment, Mappings(mappings, configuration.get("FunctionArn"))


def assembly_mappings(
    function: FunctionDef,
    table_names: Mapping[str, str],
    ddb: Any,
    function_arn: str | None = None,
) -> Mappings:
    """A synthesized function's mapping, reading the stream its source table has now.

    Messages are matched to the function by ``function_arn`` if given, else by its logical
    ID in their function's name (see :class:`Mappings`).
    """
    mapping = function.mapping
    if mapping is None:
        raise AssemblyError(f"{function.logical_id} has no event source mapping")
    stream_arn = mapping.properties.get("EventSourceArn")
    if not isinstance(stream_arn, str):
        if mapping.source_table is None or mapping.source_table not in table_names:
            raise AssemblyError(
                f"cannot tell which stream {mapping.logical_id} reads: use --function-name"
            )
        table = table_names[mapping.source_table]
        try:
            stream_arn = ddb.describe_table(TableName=table)["Table"].get("LatestStreamArn")
        except Exception as err:  # noqa: BLE001 - a set-up error: nothing was touched yet
            raise AssemblyError(f"cannot read table {table}: {err}") from None
        if not stream_arn:
            raise AssemblyError(f"table {table} has no stream")
    return Mappings(
        ({**mapping.properties, "EventSourceArn": stream_arn},),
        function_arn=function_arn,
        logical_id=function.logical_id,
    )


def read_range(
    streams: Any,
    batch: BatchRange,
    region: str = "us-east-1",
    sleep: Callable[[float], None] = time.sleep,
) -> list[dict[str, Any]]:
    """Every record of the range through its end record, Lambda-shaped.

    Read by the :class:`~.runner.ShardReader` rule. Raises :class:`Kept` (unreadable) when
    the stream does not hold the range whole: its first record is gone, its end record is
    missing, the shard ended (no next iterator) before it, or the shard, open as
    ``DescribeStream`` lists it, answered :data:`EMPTY_PAGES` empty pages in a row before it.
    """
    start, end = int(batch.start), int(batch.end)
    reader = ShardReader(
        streams,
        batch.stream_arn,
        empty_pages=EMPTY_PAGES,
        poll_interval_s=EMPTY_PAGE_WAIT_S,
        sleep=sleep,
        region=region,
    )
    position = {"ShardIteratorType": "AT_SEQUENCE_NUMBER", "SequenceNumber": batch.start}
    records: list[dict[str, Any]] = []
    last = "its start"
    empty = 0
    try:
        for page, drained in reader.pages(batch.shard_id, position):
            for record in page:
                spelt = str(record["dynamodb"]["SequenceNumber"])
                number = int(spelt)
                if not records and number != start:
                    raise _unreadable(
                        f"no longer in the stream: its first record {batch.start} is not in "
                        f"the shard (past the 24-hour retention?), which now goes on at {spelt}"
                    )
                if number > end:
                    raise _unreadable(
                        f"its end record {batch.end} is not in the shard: it goes from {last} "
                        f"to {spelt}"
                    )
                records.append(record)
                last = spelt
                if number == end:
                    return records
            empty = 0 if page else empty + 1
            if drained:
                raise _unreadable(
                    f"the range's end {batch.end} was not reached: {empty} empty pages in a "
                    f"row after {last}, and the shard is still open (DescribeStream lists no "
                    "EndingSequenceNumber for it)"
                )
    except Kept:
        raise
    except Exception as err:  # noqa: BLE001 - whatever the stream answers, the message is kept
        raise _unreadable_because(err) from None
    raise _unreadable(
        f"the shard is closed before the range's end {batch.end} (no next iterator after {last})"
    )


@dataclass(frozen=True)
class MessageResult:
    """One message: what became of it, and why it was kept."""

    message_id: str
    outcome: Outcome
    reason: str = ""
    range: BatchRange | None = None
    #: Records the filters select (replayed, or in a dry run would be).
    records: int = 0
    #: Records of the range the mapping's filters leave out (never replayed).
    filtered_out: int = 0

    @property
    def kept(self) -> bool:
        """The message is still on the queue after a real run."""
        return self.outcome not in (Outcome.REDRIVEN, Outcome.WOULD_REDRIVE)


@dataclass
class RedriveReport:
    """What a redrive did, per on-failure message."""

    dry_run: bool = False
    results: list[MessageResult] = field(default_factory=list)
    #: Why the redrive stopped before the queue was empty ("" if it did not).
    stopped: str = ""

    @property
    def records(self) -> int:
        """Records replayed (in a dry run: that would be)."""
        return sum(r.records for r in self.results)

    @property
    def filtered_out(self) -> int:
        """Records of the ranges that the mapping's filters leave out."""
        return sum(r.filtered_out for r in self.results)

    @property
    def kept(self) -> list[MessageResult]:
        """The messages left on the queue, each with its reason."""
        return [r for r in self.results if r.kept]

    @property
    def ok(self) -> bool:
        """Every message was redriven (or, in a dry run, could be), and the queue was read out."""
        return not self.kept and not self.stopped

    def lines(self) -> list[str]:
        """The report as printed: a summary, then one line per kept message."""
        verb = "would redrive" if self.dry_run else "redriven"
        kept = self.kept
        counts = ", ".join(
            f"{o.value}: {n}" for o in Outcome if (n := sum(r.outcome is o for r in kept))
        )
        lines = [
            f"messages: {len(self.results)}, records: {self.records}, "
            f"filtered out: {self.filtered_out}, {verb}: {len(self.results) - len(kept)}, "
            f"kept: {len(kept)}" + (f" ({counts})" if counts else "")
        ]
        for r in kept:
            where = f" [{r.range}]" if r.range else ""
            lines.append(f"kept {r.message_id} ({r.outcome.value}): {r.reason}{where}")
        if self.stopped:
            lines.append(f"stopped: {self.stopped}")
        return lines


def redrive(
    sqs: Any,
    queue_url: str,
    streams: Any,
    replay: Replay,
    mappings: Mappings,
    *,
    dry_run: bool = False,
    region: str = "us-east-1",
    max_messages: int = 10_000,
    hold_s: int = HOLD_S,
    wait_s: int = 1,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> RedriveReport:
    """Redrive every message now in the queue (at most ``max_messages``), one at a time.

    Each message is received with a visibility timeout of ``hold_s`` and processed at once;
    long polling (``wait_s``) so that an empty answer means an empty queue. Messages not
    deleted are made visible again at the end.
    """
    run = _Run(sqs, queue_url, streams, replay, mappings, dry_run, region, hold_s, clock, sleep)
    report = RedriveReport(dry_run=dry_run)
    try:
        run.receive_all(report, max_messages, wait_s)
    finally:  # Ctrl-C too: what was not deleted is visible again at once
        for message_id, receipt in run.receipts.items():
            if run.done.get(message_id) is not Outcome.REDRIVEN:
                run.release(receipt)
    return report


@dataclass
class _Run:
    sqs: Any
    queue_url: str
    streams: Any
    replay: Replay
    mappings: Mappings
    dry_run: bool
    region: str
    hold_s: int
    clock: Callable[[], float]
    sleep: Callable[[float], None]
    #: MessageId -> the latest receipt handle, and what became of the message.
    receipts: dict[str, str] = field(default_factory=dict)
    done: dict[str, Outcome] = field(default_factory=dict)

    def receive_all(self, report: RedriveReport, max_messages: int, wait_s: int) -> None:
        """Receive one message at a time and redrive it, until the queue answers none."""
        repeats = 0
        while repeats <= len(self.receipts):  # only messages already done keep coming: stop
            if len(report.results) >= max_messages:
                report.stopped = f"after {max_messages} messages; the queue may hold more"
                return
            try:
                received = self.sqs.receive_message(
                    QueueUrl=self.queue_url,
                    MaxNumberOfMessages=1,
                    VisibilityTimeout=self.hold_s,
                    WaitTimeSeconds=wait_s,
                ).get("Messages", [])
            except Exception as err:  # noqa: BLE001 - report what was done so far
                report.stopped = f"receiving from the queue failed: {err}"
                return
            if not received:
                return
            for message in received:
                message_id = str(message.get("MessageId"))
                seen = message_id in self.receipts
                self.receipts[message_id] = message["ReceiptHandle"]
                if not seen:
                    repeats = 0
                    report.results.append(self.one(message))
                    continue
                repeats += 1  # a duplicate delivery, or its hold lapsed: done already
                if self.done.get(message_id) is Outcome.REDRIVEN:
                    with contextlib.suppress(Kept):  # a copy of a redriven message
                        self.delete(message["ReceiptHandle"])

    def one(self, message: Mapping[str, Any]) -> MessageResult:
        """Redrive one message: deleted only once every check and record succeeded."""
        received = self.clock()
        result = MessageResult(str(message.get("MessageId")), Outcome.REDRIVEN)
        try:
            batch = BatchRange.parse(message.get("Body"))
            result = replace(result, range=batch)
            filters = self.mappings.filters_for(batch)
            records = read_range(self.streams, batch, self.region, self.sleep)
            selected = _selected(records, filters, batch)
            result = replace(
                result, records=len(selected), filtered_out=len(records) - len(selected)
            )
            if self.dry_run:
                result = replace(result, outcome=Outcome.WOULD_REDRIVE)
            else:
                _replay(self.replay, selected)
                if self.clock() - received > self.hold_s - DELETE_MARGIN_S:
                    raise Kept(
                        Outcome.NOT_DELETED,
                        f"the replay succeeded but outlasted the message's visibility timeout "
                        f"({self.hold_s} s): another receiver may hold it now, so it was not "
                        "deleted; redrive it again",
                    )
                self.delete(message["ReceiptHandle"])
        except Kept as kept:
            result = replace(result, outcome=kept.outcome, reason=kept.reason)
        self.done[result.message_id] = result.outcome
        return result

    def delete(self, receipt: str) -> None:
        try:
            self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=receipt)
        except Exception as err:  # noqa: BLE001 - the message stays: say so
            raise Kept(
                Outcome.NOT_DELETED, f"every record succeeded, but deleting it failed: {err}"
            ) from None

    def release(self, receipt: str) -> None:
        """Make a message visible again (if that fails, its visibility timeout still ends)."""
        with contextlib.suppress(Exception):
            self.sqs.change_message_visibility(
                QueueUrl=self.queue_url, ReceiptHandle=receipt, VisibilityTimeout=0
            )


def _selected(
    records: list[dict[str, Any]], filters: MappingFilters, batch: BatchRange
) -> list[dict[str, Any]]:
    """The records the mapping's filters select, if the range is one those filters made."""
    for which, record in (("first", records[0]), ("last", records[-1])):
        if not filters.selects(record):
            raise _filters_unknown(
                f"its {which} record is not one the mapping's filters select, yet Lambda "
                "delivered it: the filters that delivered the range were others, so replaying "
                "with these could delete what those kept"
            )
    selected = [r for r in records if filters.selects(r)]
    # Lambda gives up on (and counts in batchSize) the records it delivered: the filtered-in
    # ones of the range. Any other count says the filters were others when it did: replaying
    # with these would leave records unreplayed (fewer) or replay ones they kept (more).
    size = batch.batch_size
    if size != len(selected):
        count = "no batchSize" if size is None else f"batchSize {size}"
        raise _filters_unknown(
            f"{count} is not the {len(selected)} record(s) the mapping's filters select in "
            f"the range ({len(records)} records): the filters that delivered it were others "
            "(changed since?)"
        )
    return selected


def _replay(replay: Replay, records: list[dict[str, Any]]) -> None:
    """Replay the records; raises :class:`Kept` (failed again) unless every one succeeded."""
    try:
        response = replay({"Records": records})
    except Exception as err:  # noqa: BLE001 - a handler failure fails this message only
        raise Kept(Outcome.FAILED_AGAIN, f"the replay raised {type(err).__name__}: {err}") from None
    failures = response.get("batchItemFailures") if isinstance(response, Mapping) else None
    if failures == []:
        return
    if isinstance(failures, list):
        first = failures[0].get("itemIdentifier") if isinstance(failures[0], Mapping) else None
        reason = f"{len(failures)} record(s) reported for replay again (first: {first})"
    else:
        reason = f"the replay's answer is not a batch response: {_show(response)}"
    raise Kept(Outcome.FAILED_AGAIN, reason)


def _unreadable_because(err: Exception) -> Kept:
    """A streams call failed: the range cannot be read now, so the message is kept."""
    error = getattr(err, "response", None)
    code = error.get("Error", {}).get("Code") if isinstance(error, dict) else None
    if code == "TrimmedDataAccessException":
        return _unreadable(f"no longer in the stream (past its 24-hour retention): {err}")
    return _unreadable(f"cannot read the range: {code or type(err).__name__}: {err}")


def _unqualified(function_arn: str) -> str:
    return ":".join(function_arn.split(":")[:7])  # without a version or alias


def _function_name(function_arn: str) -> str:
    """The name in ``arn:aws:lambda:<region>:<account>:function:<name>[:<qualifier>]``."""
    parts = function_arn.split(":")
    return parts[6] if len(parts) > 6 else ""


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _not_understood(reason: str) -> Kept:
    return Kept(Outcome.NOT_UNDERSTOOD, reason)


def _filters_unknown(reason: str) -> Kept:
    return Kept(Outcome.FILTERS_UNKNOWN, reason)


def _unreadable(reason: str) -> Kept:
    return Kept(Outcome.UNREADABLE, reason)
