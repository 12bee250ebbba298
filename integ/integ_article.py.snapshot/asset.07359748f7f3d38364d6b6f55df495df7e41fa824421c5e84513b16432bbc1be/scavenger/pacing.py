"""Pacing: send deletes at the rate the target tables accept, not as fast as possible.

A throttled table hands keys back in ``UnprocessedItems`` (or refuses the whole request);
hammering it only turns the rest of the invocation into throttled requests. The pacer,
shared by every chunk in flight, starts unpaced and learns the rate on the first throttle:

- **decrease**, once per round (a round ends when the rate changes; answers to requests
  granted in an earlier round say nothing new, so 64 requests in flight when a table starts
  throttling cut the rate once, not 64 times): between two throttles the table's bucket went
  from empty to empty, so the keys it accepted in between, over the time between, is its
  refill rate; the pacer sends at :data:`DECREASE` of that (never below :data:`MIN_RATE`).
  Sooner than :data:`MIN_WINDOW_S` (the window then runs on), or with nothing accepted in
  between, it cuts the rate to :data:`BACKOFF` of itself. The first throttle of all, with
  nothing to go on, starts at :data:`PROBE_RATE` or the rate accepted so far if that is more.
- **increase**: each fully accepted request raises the rate by :data:`GROWTH_PER_KEY` per
  key it carried (a fixed share per full request, so a table of 5 write units and one of
  5,000 see a throttle equally rarely). Before the first measurement, and again after
  :data:`QUIET_REQUESTS` accepted requests or :data:`QUIET_S` seconds without a throttle
  (capacity was added: autoscaling, a quieter neighbour), it probes instead: the rate
  doubles about every 0.7 s until the next throttle measures it.

A wait never outlasts the invocation: when a whole request's keys cannot be had in time, the
pacer grants the part that can (at least one key), so a low learned rate slows a batch down
but never stops it. Waiters are served in stream order (the chunk earliest in the batch
first), so what the time runs out on is the tail, and Lambda's checkpoint moves as far as
the capacity allowed. The rate lasts for the container, so the next batch does not start with a
burst of throttles; after :data:`IDLE_RESET_S` without work it is forgotten (the table has
banked capacity again). Each invocation is a new generation: a request still in flight from
an earlier one changes nothing. Time inside an invocation is read off its deadline, so a
simulated clock in a test paces as the real one does; a clock that a sleep did not move is
taken to have moved by the sleep.
"""

from __future__ import annotations

import math
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

#: The shortest time between two throttles over which the accepted rate is measured.
MIN_WINDOW_S = 1.0
#: After a measurement the pacer sends at this share of the measured rate.
DECREASE = 0.95
#: A throttle that cannot be measured from cuts the rate to this share.
BACKOFF = 0.7
#: Once measured, the rate grows by this share of itself per key accepted (0.4 % a full
#: request: about 13 requests from one throttle to the next).
GROWTH_PER_KEY = 0.004 / 25
#: While probing, the rate doubles about every 0.7 s.
PROBE_GROWTH_PER_S = 1.0
#: Accepted requests in a row, or seconds of sending (over invocations), without a throttle
#: after which the pacer probes for added capacity.
QUIET_REQUESTS = 20
QUIET_S = 120.0
#: Keys per second after a first throttle that says nothing about the rate: one request a second.
PROBE_RATE = 25.0
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


class Pacer:
    """The send rate of one container's deletes, in keys per second (None: unpaced)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, largest: int = 25) -> None:
        self._clock = clock
        #: The largest request (BatchWriteItem's 25): the bucket always holds room for one.
        self._largest = largest
        self._lock = threading.Lock()
        self.rate: float | None = None
        #: Whether ``rate`` comes from a measurement (else the pacer is probing).
        self.measured = False
        #: Whether the current invocation has seen a throttle.
        self.throttled = False
        self._generation = self._round = self._quiet = 0
        self._quiet_s = 0.0
        self._last_used: float | None = None
        self._time_left: Callable[[], float] = lambda: 0.0
        self._at = self._window_start = self._floor = 0.0
        self._tokens = 0.0
        self._accepted = 0
        #: Waiters by order (chunk position in the batch): the lowest is served first.
        self._waiting: Counter[int] = Counter()

    def begin(self, time_left: Callable[[], float]) -> None:
        """Start an invocation that may send while ``time_left()`` (seconds) is positive."""
        with self._lock:
            idle_s = self._clock() - self._last_used if self._last_used is not None else 0.0
            if idle_s > IDLE_RESET_S:
                self.rate, self.measured = None, False
            self._generation += 1
            self.throttled = False
            self._time_left = time_left
            self._at = self._window_start = self._floor = -time_left()
            # What the tables refilled since the last invocation, as far as the pacer knows.
            self._tokens = min(self._ceiling(), self.rate * idle_s) if self.rate else 0.0
            self._accepted = 0

    def end(self) -> None:
        """The invocation is over: its requests still in flight no longer count."""
        with self._lock:
            self._last_used = self._clock()
            self._generation += 1

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
                    if self.rate is None:
                        return Grant(keys, generation, self._round)
                    started = self._time()
                    usable = -started - reserve_s
                    reachable = self._tokens + self.rate * max(0.0, usable)
                    want = min(keys, math.floor(reachable + _EPSILON))
                    if want < 1:
                        return None
                    first = order <= min(self._waiting)
                    if first and self._tokens >= want - _EPSILON:
                        self._tokens -= want
                        return Grant(want, generation, self._round)
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
            self._quiet, self._quiet_s = 0, 0.0
            if grant.round != self._round:
                return  # sent before the rate last changed: nothing new
            now = self._time()
            window = now - self._window_start
            measure = window >= MIN_WINDOW_S
            if self.rate is None:
                self.rate = max(PROBE_RATE, self._accepted / max(window, MIN_WINDOW_S))
                measure = True  # the window starts at this first throttle
            elif measure and self._accepted:
                self.rate, self.measured = DECREASE * self._accepted / window, True
            else:
                self.rate *= BACKOFF
            self.rate = max(MIN_RATE, self.rate)
            self._round += 1
            self._tokens = 0.0
            if measure:  # else the window runs on, so the next throttle can measure
                self._window_start, self._accepted = now, 0

    def _grow(self, accepted: int) -> None:
        if self.rate is None or not self.measured:
            return
        self._quiet += 1
        if self._quiet >= QUIET_REQUESTS or self._quiet_s >= QUIET_S:
            self.measured = False  # capacity was added, it seems: probe for it
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
        if not self.measured:
            self.rate += self.rate * PROBE_GROWTH_PER_S * elapsed
        self._tokens = min(self._ceiling(), self._tokens + self.rate * elapsed)
