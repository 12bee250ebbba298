"""Pacing: send deletes at the rate the target tables accept, not as fast as possible.

A throttled table hands keys back in ``UnprocessedItems`` (or refuses the whole request);
hammering it only turns the rest of the invocation into throttled requests. The pacer,
shared by every chunk in flight, starts unpaced and learns the rate on the first throttle:

- **slow start**: a new container knows nothing of the table, so it sends one request and
  allows one more in flight per answer (TCP's slow start), until the first throttle; a table
  that never throttles soon has every chunk in flight, and keeps it for the container.
- **decrease**, once per round (a round ends when the rate changes; answers to requests
  granted in an earlier round say nothing new, so 64 requests in flight when a table starts
  throttling cut the rate once, not 64 times): between two throttles the table's bucket went
  from empty to empty, so the keys it accepted in between, over the time between, is its
  refill rate; the pacer sends at :data:`DECREASE` of that (never below :data:`MIN_RATE`).
  A window shorter than :data:`MIN_WINDOW_S` cuts the rate to :data:`BACKOFF` of itself;
  one of fewer than :data:`MIN_WINDOW_KEYS` keys gives an estimate and runs on, so the next
  throttle measures over a longer one. The window runs on over invocations. The first
  throttle of all, with nothing to go on, starts at :data:`PROBE_RATE` or the rate accepted so
  far if that is more.
- **increase**: each fully accepted request raises the rate by :data:`GROWTH_PER_KEY` per
  key it carried (a fixed share per full request, so a table of 5 write units and one of
  5,000 see a throttle equally rarely). After the first throttle, and again after
  :data:`QUIET_REQUESTS` accepted requests or :data:`QUIET_S` seconds without a throttle
  (capacity was added: autoscaling, a quieter neighbour), it probes instead: the rate
  doubles about every 0.7 s until the next throttle, which ends the probe.

A wait never outlasts the invocation: when a whole request's keys cannot be had in time, the
pacer grants the part that can (at least one key), so a low learned rate slows a batch down
but never stops it. Waiters are served in stream order (the chunk earliest in the batch
first; only it sleeps, the others wait for it), so what the time runs out on is the tail, and
Lambda's checkpoint moves as far as the capacity allowed. The rate lasts for the container,
so the next batch does not start with a burst of throttles; after :data:`IDLE_RESET_S`
without work it is forgotten (the table has banked capacity again). Each invocation is a new
generation: a request still in flight from an earlier one changes nothing. Time inside an
invocation is read off its deadline, so a simulated clock in a test paces as the real one
does; a clock that a sleep did not move is taken to have moved by the sleep.
"""

from __future__ import annotations

import math
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

#: The shortest time between two throttles over which the accepted rate is estimated...
MIN_WINDOW_S = 0.25
#: ... and the fewest keys accepted over it for a measurement (the bucket was empty at each
#: end to within a key, so a measurement counts one key less: 5 % at most).
MIN_WINDOW_KEYS = 20
#: After a measurement the pacer sends at this share of the measured rate.
DECREASE = 0.95
#: A throttle too soon after the last to estimate from cuts the rate to this share.
BACKOFF = 0.7
#: Between probes, the rate grows by this share of itself per key accepted (0.4 % a full
#: request: from 95 % to the measured rate in 13 requests).
GROWTH_PER_KEY = 0.004 / 25
#: While probing, the rate doubles about every 0.7 s.
PROBE_GROWTH_PER_S = 1.0
#: Accepted requests in a row, or seconds of sending (over invocations), without a throttle
#: after which the pacer probes for added capacity.
QUIET_REQUESTS = 30
QUIET_S = 120.0
#: Keys per second after a first throttle that says nothing about the rate: one request a second,
#: or what was accepted before it, over a second at least (a bank spent at once is no rate).
PROBE_RATE = 25.0
FIRST_WINDOW_S = 1.0
#: Keys per second the pacer never goes below (a table of one write unit still gets work).
MIN_RATE = 1.0
#: Seconds of the rate the pacer may send at once (it always has room for one full request).
BURST_S = 1.0
#: Seconds between invocations after which the learned rate is forgotten.
IDLE_RESET_S = 30.0
#: The longest single sleep while waiting, so a stop or the deadline is seen in time, and
#: the shortest (a wait of a rounding error's length would never move the clock).
MAX_WAIT_S = 0.5
MIN_WAIT_S = 0.001
_EPSILON = 1e-6


@dataclass(frozen=True)
class Grant:
    """Permission to send ``keys`` keys now; ``report`` the answer with it."""

    keys: int
    generation: int
    round: int
    #: When it was granted, in the invocation's time.
    at: float


class Pacer:
    """The send rate of one container's deletes, in keys per second (None: unpaced)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, largest: int = 25) -> None:
        self._clock = clock
        #: The largest request (BatchWriteItem's 25): the bucket always holds room for one.
        self._largest = largest
        self._lock = threading.Lock()
        self._answered = threading.Condition(self._lock)
        self.rate: float | None = None
        #: Whether the rate grows by the second (looking for capacity) rather than per request.
        self.probing = False
        #: Requests allowed in flight before the container's first throttle (None: any):
        #: one at first, one more per answer that is not a throttle, as TCP's slow start.
        self._start_window: int | None = 1
        self._in_flight = 0
        #: Whether the current invocation has seen a throttle.
        self.throttled = False
        self._generation = self._round = self._quiet = 0
        self._quiet_s = 0.0
        self._last_used: float | None = None
        self._time_left: Callable[[], float] = lambda: 0.0
        self._at = self._window_start = self._floor = self._window_age = 0.0
        self._tokens = 0.0
        self._accepted = 0
        #: Waiters by order (chunk position in the batch): the lowest is served first.
        self._waiting: Counter[int] = Counter()

    def begin(self, time_left: Callable[[], float]) -> None:
        """Start an invocation that may send while ``time_left()`` (seconds) is positive."""
        with self._lock:
            idle_s = self._clock() - self._last_used if self._last_used is not None else 0.0
            if idle_s > IDLE_RESET_S:
                self.rate, self.probing = None, False
            self._generation += 1
            self.throttled = False
            self._time_left = time_left
            now = self._at = self._floor = -time_left()
            if self.rate is None:
                self._window_start, self._accepted = now, 0
            else:
                # The window, from a throttle (the bucket empty), runs on over invocations.
                self._window_start = now - self._window_age - idle_s
            # What the tables refilled since the last invocation, as far as the pacer knows.
            self._tokens = min(self._ceiling(), self.rate * idle_s) if self.rate else 0.0
            self._in_flight = 0

    def end(self) -> None:
        """The invocation is over: its requests still in flight no longer count."""
        with self._lock:
            self._last_used = self._clock()
            self._window_age = self._time() - self._window_start
            self._generation += 1
            self._answered.notify_all()

    def acquire(
        self,
        keys: int,
        reserve_s: float,
        sleep: Callable[[float], None],
        stop: threading.Event | None = None,
        order: int = 0,
    ) -> Grant | None:
        """Wait until ``keys`` may be sent, or as many of them (at least one) as can be had
        while keeping ``reserve_s`` for the request; None when not one can, or on ``stop``.

        While paced, the waiter of the lowest ``order`` (the chunk earliest in the stream)
        is served first, so what the time runs out on is the tail of the batch.
        """
        with self._lock:
            generation = self._generation
            self._waiting[order] += 1
        try:
            while True:
                with self._lock:
                    if generation != self._generation or (stop is not None and stop.is_set()):
                        return None
                    self._refill()
                    started = self._time()
                    first = order <= min(self._waiting)
                    if self.rate is None:
                        # Slow start: before the first throttle, a window of requests in flight.
                        window = self._start_window
                        if window is None or (first and self._in_flight < window):
                            self._in_flight += 1
                            return Grant(keys, generation, self._round, started)
                        if -started <= reserve_s:
                            return None
                    if self.rate is None or not first:
                        # Only the first waiter sleeps on the caller's clock; the others wait
                        # (in real time) for an answer or for a waiter to leave.
                        self._answered.wait(MAX_WAIT_S)
                        continue
                    usable = -started - reserve_s
                    reachable = self._tokens + self.rate * max(0.0, usable)
                    want = min(keys, math.floor(reachable + _EPSILON))
                    if want < 1:
                        return None
                    if self._tokens >= want - _EPSILON:
                        self._tokens -= want
                        self._in_flight += 1
                        return Grant(want, generation, self._round, started)
                    wait = (want - min(self._tokens, want - _EPSILON)) / self.rate
                    step = min(max(wait, MIN_WAIT_S), MAX_WAIT_S)
                sleep(step)
                with self._lock:
                    self._floor = max(self._floor, started + step)
        finally:
            with self._lock:
                self._waiting[order] -= 1
                if not self._waiting[order]:
                    del self._waiting[order]
                self._answered.notify_all()

    def release(self, grant: Grant) -> None:
        """The request sent with ``grant`` is answered, however it went."""
        with self._lock:
            if grant.generation == self._generation:
                self._in_flight -= 1
                self._answered.notify_all()

    def report(self, grant: Grant, accepted: int, throttled: bool) -> None:
        """What the request sent with ``grant`` got: the keys accepted, whether it was
        throttled. Answers from an earlier invocation are ignored."""
        with self._lock:
            if grant.generation != self._generation:
                return
            self._accepted += accepted
            if not throttled:
                self._grow(accepted)
                return
            self.throttled = True
            self._start_window = None
            self._quiet, self._quiet_s = 0, 0.0
            if grant.round != self._round:
                return  # sent before the rate last changed: nothing new
            now = self._time()
            window = now - self._window_start
            if self.rate is None:
                # Nothing to go on yet: probe up from here until the next throttle measures.
                self.rate = max(PROBE_RATE, self._accepted / max(window, FIRST_WINDOW_S))
                self.probing, measured = True, True
            elif window >= MIN_WINDOW_S and self._accepted:
                # The bucket was empty at both ends, to within a key: a measurement of
                # enough keys counts one less; fewer keys are an estimate, refined later.
                measured = self._accepted >= MIN_WINDOW_KEYS
                self.rate = DECREASE * (self._accepted - measured) / window
                self.probing = False
            else:
                self.rate, self.probing, measured = self.rate * BACKOFF, False, False
            self.rate = max(MIN_RATE, self.rate)
            self._round += 1
            self._tokens = 0.0
            if measured:  # else the window runs on, so the next throttle measures better
                # From when the throttled request was sent, the latest the bucket was not yet
                # empty: a window too long by a request's latency errs towards a lower rate.
                self._window_start, self._accepted = grant.at, 0

    def _grow(self, accepted: int) -> None:
        if self.rate is None:
            if self._start_window is not None:
                self._start_window += 1  # slow start: one more in flight per answer
                self._answered.notify_all()
            return
        if self.probing:
            return
        self._quiet += 1
        if self._quiet >= QUIET_REQUESTS or self._quiet_s >= QUIET_S:
            self.probing = True  # capacity was added, it seems: probe for it
        else:
            self.rate *= 1 + GROWTH_PER_KEY * accepted

    def _ceiling(self) -> float:
        return max((self.rate or 0.0) * BURST_S, float(self._largest))

    def _time(self) -> float:
        """Seconds into the invocation, as minus the time left (moved at least by sleeps)."""
        return max(-self._time_left(), self._floor)

    def _refill(self) -> None:
        now = self._time()
        elapsed, self._at = max(0.0, now - self._at), now
        self._quiet_s += elapsed
        if self.rate is None:
            return
        if self.probing:
            self.rate += self.rate * PROBE_GROWTH_PER_S * elapsed
        self._tokens = min(self._ceiling(), self._tokens + self.rate * elapsed)
