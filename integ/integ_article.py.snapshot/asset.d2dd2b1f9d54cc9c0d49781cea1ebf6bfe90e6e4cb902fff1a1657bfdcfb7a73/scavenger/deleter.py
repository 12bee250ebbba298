"""How keys are deleted: chunks of 25, bounded concurrency, paced retries, a deadline.

One ``BatchWriteItem`` takes deletes for several tables (25 in total), so keys
for different targets share requests and the request count stays
ceil(distinct keys / 25) however many targets there are.

A key counts as deleted only when a well-formed ``BatchWriteItem`` answer
confirmed it: it was sent and is absent from the answer's ``UnprocessedItems``
map, which must be present and name only tables and keys that were sent (the
client made by ``handler.make_client`` also checks the ``x-amz-crc32``). Any
other 2xx is retried like a 5xx. Everything not confirmed, whether it was
throttled, refused, still in flight at the deadline or never sent, is returned
as not deleted, so the caller can report it for replay; a key DynamoDB rejects
as invalid on its own is returned as rejected (replaying it can never help).

Throttling (``UnprocessedItems``, a throttling error) is retried for as long as the
invocation's time lasts, at the rate the :class:`~.pacing.Pacer` learns the tables accept;
only other failures (5xx, dropped connections, malformed answers) count towards
``max_attempts``, with exponential backoff between them. Chunks go out in the order of the
keys given (the handler gives them in stream order), so what runs out of time is the tail.
"""

from __future__ import annotations

import itertools
import random
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Protocol

from .pacing import Pacer
from .records import Identity, TargetKey, identity_of

KeyRef = tuple[str, Identity]
"""A key's table and identity: what the deleter tracks while a chunk is in flight."""

#: BatchWriteItem accepts at most this many requests.
CHUNK_SIZE = 25
#: Backoff before retry n (1-based) is uniform in [0, min(CAP, BASE * 2**(n-1))].
BACKOFF_BASE_S = 0.05
BACKOFF_CAP_S = 5.0
#: A retry is started only if at least this much time is left after its backoff.
MIN_REQUEST_S = 0.25

#: The codes counted for a 2xx answer that confirms nothing (see :func:`unprocessed_refs`)
#: and for one whose body does not match its ``x-amz-crc32`` (see ``handler.make_client``).
MALFORMED_RESPONSE = "MalformedResponse"
CHECKSUM_MISMATCH = "ChecksumMismatch"  # the name of :class:`ChecksumMismatch`
#: Error codes that mean "try again later"; anything else is not retried in this invocation.
RETRYABLE_CODES = frozenset(
    {
        MALFORMED_RESPONSE,
        CHECKSUM_MISMATCH,
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "InternalServerError",
        "ServiceUnavailable",
        "TransactionInProgressException",
    }
)
THROTTLE_CODES = frozenset(
    {"ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded"}
)


class DynamoDBClient(Protocol):
    """The one call of a boto3 DynamoDB client the deleter needs."""

    def batch_write_item(self, **kwargs: Any) -> dict[str, Any]: ...


class Deadline:
    """Time left in the invocation, less a reserve kept for answering Lambda."""

    def __init__(self, remaining_s: Callable[[], float], reserve_s: float) -> None:
        self._remaining_s = remaining_s
        self._reserve_s = reserve_s

    def left(self) -> float:
        """Seconds that may still be spent on deletes (may be negative)."""
        return self._remaining_s() - self._reserve_s


@dataclass
class DeleteStats:
    """Counts for one call of :meth:`BatchDeleter.delete` (the summary line's ``deletes``)."""

    #: ``BatchWriteItem`` requests sent, retries included.
    requests: int = 0
    #: Requests sent again for keys a request before did not confirm (after a backoff, or
    #: paced after a throttle).
    retries: int = 0
    #: Keys an answer handed back in ``UnprocessedItems``, summed over attempts.
    unprocessed: int = 0
    #: Failed requests by code: throttled, and anything else (a malformed answer too).
    throttles: int = 0
    errors: int = 0
    #: Chunks halved to isolate a key DynamoDB rejects on its own.
    splits: int = 0
    consumed_wcu: float = 0.0
    #: Failed requests per error code (``MalformedResponse``, ``ChecksumMismatch``, ...).
    error_codes: dict[str, int] = field(default_factory=dict)

    def error(self, code: str) -> None:
        """Count one failed request under ``code``."""
        self.error_codes[code] = self.error_codes.get(code, 0) + 1
        if code in THROTTLE_CODES:
            self.throttles += 1
        else:
            self.errors += 1

    def add(self, other: DeleteStats) -> None:
        """Fold another chunk's counts into these."""
        self.requests += other.requests
        self.retries += other.retries
        self.unprocessed += other.unprocessed
        self.throttles += other.throttles
        self.errors += other.errors
        self.splits += other.splits
        self.consumed_wcu += other.consumed_wcu
        for code, n in other.error_codes.items():
            self.error_codes[code] = self.error_codes.get(code, 0) + n


@dataclass
class DeleteResult:
    """Which keys were confirmed deleted, and how it went."""

    #: Table name -> identities of its keys that a response confirmed deleted.
    deleted: dict[str, set[Identity]] = field(default_factory=dict)
    #: Table name -> identity -> error code, for keys DynamoDB rejected as invalid on their
    #: own: the same bytes can never succeed, so they are unmappable, not to be replayed.
    rejected: dict[str, dict[Identity, str]] = field(default_factory=dict)
    stats: DeleteStats = field(default_factory=DeleteStats)
    timed_out: bool = False
    #: Time ran out with keys unconfirmed while the target was throttling.
    throttled_out: bool = False

    @property
    def deleted_count(self) -> int:
        """Keys confirmed deleted, over all tables."""
        return sum(len(identities) for identities in self.deleted.values())


RecordId = tuple[str, str, str]
"""A stream record's ``eventSourceARN``, ``eventID`` and ``dynamodb.SequenceNumber``."""

#: Records whose deletes one container remembers: a few of Lambda's largest batches.
CONFIRMED_CAPACITY = 50_000


class ConfirmedDeletes:
    """The records, per target table and key, whose delete this container saw confirmed.

    Lambda replays every record after the lowest reported one, and deleting an item that
    is already gone still costs a write unit; a replayed record found here is acknowledged
    without a request. That is also what the user meant: a replay must not delete an item
    created again since. Bounded: the oldest are forgotten first (a forgotten record is
    deleted again, which is harmless). The key is part of the entry, so two records that
    share an ID (Lambda never sends such) cannot stand in for each other.
    """

    def __init__(self, capacity: int = CONFIRMED_CAPACITY) -> None:
        self._capacity = capacity
        self._seen: OrderedDict[tuple[str, RecordId, Identity], None] = OrderedDict()

    def __contains__(self, entry: tuple[str, RecordId, Identity]) -> bool:
        return entry in self._seen

    def __len__(self) -> int:
        return len(self._seen)

    def add(self, table: str, record: RecordId, identity: Identity) -> None:
        """Remember that ``record``'s key ``identity`` in ``table`` was confirmed deleted."""
        entry = (table, record, identity)
        self._seen[entry] = None
        self._seen.move_to_end(entry)
        while len(self._seen) > self._capacity:
            self._seen.popitem(last=False)


def chunks(keys: Sequence[TargetKey], size: int = CHUNK_SIZE) -> Iterator[Sequence[TargetKey]]:
    """Consecutive slices of at most ``size`` keys."""
    for start in range(0, len(keys), size):
        yield keys[start : start + size]


class BatchDeleter:
    """Deletes distinct keys, of one table or several, in the fewest ``BatchWriteItem`` calls."""

    def __init__(
        self,
        client: DynamoDBClient,
        *,
        max_concurrency: int,
        max_attempts: int,
        sleep: Callable[[float], None] = time.sleep,
        rng: Callable[[], float] = random.random,
        pacer: Pacer | None = None,
    ) -> None:
        self._client = client
        self._max_concurrency = max_concurrency
        self._max_attempts = max_attempts
        self._sleep = sleep
        self._rng = rng
        #: Shared by every chunk and every invocation of this deleter (one per container).
        self.pacer = pacer or Pacer(largest=CHUNK_SIZE)
        self._pool: ThreadPoolExecutor | None = None
        #: The chunks of the last invocation: one still running holds a worker of the pool.
        self._last_chunks: list[Future[_ChunkOutcome]] = []

    def backoff(self, retry: int) -> float:
        """Full-jitter exponential backoff before retry number ``retry`` (1-based)."""
        return float(self._rng()) * min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2.0 ** (retry - 1))

    def delete(self, keys: Sequence[TargetKey], deadline: Deadline) -> DeleteResult:
        """Delete ``keys`` (distinct per table); stop in time for ``deadline``."""
        result = DeleteResult()
        if not keys:
            return result
        stop = threading.Event()
        self.pacer.begin(deadline.left)
        pool = self._workers()
        futures: list[Future[_ChunkOutcome]] = []
        try:
            futures += [
                pool.submit(self._delete_chunk, chunk, deadline, stop, order)
                for order, chunk in enumerate(chunks(keys))
            ]
            done, not_done = wait(futures, timeout=max(deadline.left(), 0))
            # Whatever is still in flight is not confirmed: its keys stay undeleted.
            result.timed_out = bool(not_done)
            out_of_time = bool(not_done)
            paced_out = False
            for future in futures:
                if future not in done:
                    continue
                if future.exception() is not None:
                    # A bug, not a DynamoDB answer: the chunk's keys stay undeleted.
                    result.stats.error(type(future.exception()).__name__)
                    continue
                outcome = future.result()
                out_of_time |= outcome.out_of_time
                paced_out |= outcome.paced_out
                for key in outcome.deleted:
                    result.deleted.setdefault(key.table, set()).add(key.identity)
                for key, code in outcome.rejected:
                    result.rejected.setdefault(key.table, {})[key.identity] = code
                result.stats.add(outcome.stats)
            # "Under-provisioned": the time ran out, and the target throttled now or the
            # rate it accepted (learned from its throttles) held the rest back.
            result.throttled_out = out_of_time and (self.pacer.throttled or paced_out)
        finally:
            # Chunks not started never start; those in flight see ``stop`` and end.
            stop.set()
            self.pacer.end()
            for future in futures:
                future.cancel()
            self._last_chunks = futures
        return result

    def _workers(self) -> ThreadPoolExecutor:
        """The container's worker threads; new ones when a request of the last invocation
        still hangs (until its read timeout), so it holds no worker this one needs."""
        if self._pool is None or not all(f.done() for f in self._last_chunks):
            if self._pool is not None:
                self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = ThreadPoolExecutor(self._max_concurrency, thread_name_prefix="scavenger")
        return self._pool

    def _delete_chunk(
        self, chunk: Sequence[TargetKey], deadline: Deadline, stop: threading.Event, order: int
    ) -> _ChunkOutcome:
        """Delete one chunk; a chunk DynamoDB rejects as invalid is split to isolate the bad key."""
        outcome = _ChunkOutcome()
        groups = [list(chunk)]
        while groups:
            group = groups.pop()
            try:
                self._delete_group(group, deadline, stop, outcome, order)
            except _Split as split:
                half = len(split.keys) // 2
                outcome.stats.splits += 1
                groups += [split.keys[half:], split.keys[:half]]
        return outcome

    def _delete_group(
        self,
        group: Sequence[TargetKey],
        deadline: Deadline,
        stop: threading.Event,
        outcome: _ChunkOutcome,
        order: int = 0,
    ) -> None:
        """Send ``group`` until every key is confirmed or rejected, the time is up, or
        ``max_attempts`` requests failed other than by throttling. The pacer may grant part
        of the keys at a time (the first ones: stream order).

        Confirmed keys go into ``outcome`` as they are confirmed, so a later split loses none.
        """
        stats = outcome.stats
        pending = {(key.table, key.identity): key for key in group}
        failures = 0
        sent = backoff_due = False
        while pending and not stop.is_set():
            if backoff_due:
                delay = self.backoff(failures)
                if deadline.left() < delay + MIN_REQUEST_S:
                    outcome.out_of_time = True
                    break
                self._sleep(delay)
                backoff_due = False
            if deadline.left() < MIN_REQUEST_S:
                outcome.out_of_time = not stop.is_set()
                break
            grant = self.pacer.acquire(len(pending), MIN_REQUEST_S, self._sleep, stop, order)
            if grant is None or deadline.left() < MIN_REQUEST_S:
                if grant is not None:
                    self.pacer.release(grant)  # granted, but the time went while waiting
                outcome.out_of_time = not stop.is_set()
                # There was time for a request, and the rate the target accepts held it back.
                outcome.paced_out = outcome.out_of_time and not failures
                break
            stats.retries += int(sent)
            sent = True
            batch = dict(itertools.islice(pending.items(), grant.keys))
            try:
                answer = self._send(batch, stats)
            except NonRetryableError as err:
                if err.code != "ValidationException":
                    break
                if len(batch) > 1:
                    raise _Split(list(pending.values())) from err
                # Rejected on its own: the same bytes will be rejected on every replay.
                ((ref, key),) = batch.items()
                outcome.rejected.append((key, err.code))
                del pending[ref]
                continue
            finally:
                self.pacer.release(grant)  # answered, however it went
            if isinstance(answer, _Failure):
                self.pacer.report(grant, 0, throttled=answer is _Failure.THROTTLED)
                if answer is _Failure.FAILED:
                    failures += 1
                    backoff_due = True
                    if failures >= self._max_attempts:
                        break
                continue
            accepted = [ref for ref in batch if ref not in answer]
            for ref in accepted:
                outcome.deleted.append(pending.pop(ref))
            self.pacer.report(grant, len(accepted), throttled=len(accepted) < len(batch))
            stats.unprocessed += len(batch) - len(accepted)

    def _send(self, pending: Mapping[KeyRef, TargetKey], stats: DeleteStats) -> _Answer:
        """One request: the keys it left unprocessed, or how it failed retryably.

        Raises :class:`NonRetryableError` when retrying cannot help in this invocation.
        """
        stats.requests += 1
        request_items: dict[str, list[dict[str, Any]]] = {}
        for key in pending.values():
            request_items.setdefault(key.table, []).append({"DeleteRequest": {"Key": key.request}})
        try:
            response = self._client.batch_write_item(
                RequestItems=request_items, ReturnConsumedCapacity="TOTAL"
            )
        except Exception as err:  # noqa: BLE001 - classified below, never swallowed silently
            code = _error_code(err)
            stats.error(code)
            if code in THROTTLE_CODES:
                return _Failure.THROTTLED
            if _is_retryable(err, code):
                return _Failure.FAILED
            raise NonRetryableError(code) from err
        left = unprocessed_refs(response, pending)
        if left is None:
            stats.error(MALFORMED_RESPONSE)
            return _Failure.FAILED
        stats.consumed_wcu += _capacity_units(response)
        return left


class _Failure(Enum):
    """A request that confirmed nothing but may succeed later."""

    THROTTLED = "throttled"
    FAILED = "failed"


_Answer = set[KeyRef] | _Failure


@dataclass
class _ChunkOutcome:
    """What became of one chunk's keys."""

    deleted: list[TargetKey] = field(default_factory=list)
    rejected: list[tuple[TargetKey, str]] = field(default_factory=list)
    stats: DeleteStats = field(default_factory=DeleteStats)
    #: Stopped with keys left because the time ran out (not because they failed too often),
    #: and whether it was the pacer that held them back.
    out_of_time: bool = False
    paced_out: bool = False


def unprocessed_refs(response: Any, sent: Mapping[KeyRef, Any]) -> set[KeyRef] | None:
    """The keys a 2xx answer left unprocessed; None when it is no confirmation at all.

    Only a present ``UnprocessedItems`` map of delete requests for keys that were sent
    says which keys were deleted: an empty body, ``{}`` or a map naming anything else
    cannot tell a deleted key from one never processed.
    """
    left = response.get("UnprocessedItems") if isinstance(response, Mapping) else None
    if not isinstance(left, Mapping):
        return None
    refs: set[KeyRef] = set()
    for table, items in left.items():
        if not isinstance(items, list):
            return None
        for item in items:
            try:
                ref = (table, identity_of(item["DeleteRequest"]["Key"]))
                if ref not in sent:
                    return None
            except (AttributeError, KeyError, TypeError, ValueError, ArithmeticError):
                return None
            refs.add(ref)
    return refs


def _capacity_units(response: Mapping[str, Any]) -> float:
    """Write units an answer reports; a malformed ``ConsumedCapacity`` counts none."""
    total = 0.0
    capacities = response.get("ConsumedCapacity")
    for capacity in capacities if isinstance(capacities, list) else ():
        units = capacity.get("CapacityUnits") if isinstance(capacity, Mapping) else None
        if isinstance(units, int | float) and not isinstance(units, bool):
            total += float(units)
    return total


class _Split(Exception):
    """DynamoDB rejected a request of several keys as invalid: try the halves apart."""

    def __init__(self, keys: list[TargetKey]) -> None:
        super().__init__(len(keys))
        self.keys = keys


class ChecksumMismatch(Exception):
    """An answer whose body does not match its ``x-amz-crc32``: it confirms nothing."""


class NonRetryableError(Exception):
    """DynamoDB refused a request in a way retrying within this invocation cannot fix."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


def _error_code(err: Exception) -> str:
    response = getattr(err, "response", None)
    if isinstance(response, dict):
        code = response.get("Error", {}).get("Code")
        if code:
            return str(code)
    return type(err).__name__


def _is_retryable(err: Exception, code: str) -> bool:
    if code in RETRYABLE_CODES:
        return True
    response = getattr(err, "response", None)
    if isinstance(response, dict):
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return bool(status) and int(status) >= 500
    # No response at all: the connection failed, timed out or was dropped.
    return True
