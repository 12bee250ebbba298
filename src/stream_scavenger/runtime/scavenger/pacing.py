"""Pacing: send deletes at the rate the target tables accept, not as fast as possible.

A throttled table hands keys back in ``UnprocessedItems`` (or refuses the whole request);
hammering it only turns the rest of the invocation into throttled requests. The pacer,
shared by every chunk in flight, starts unpaced and learns the rate on the first throttle:

- **decrease**, at most once per :data:`MIN_WINDOW_S` (a throttle sooner than that after
  the last answers a request sent before the rate changed, so it says nothing new): between
  two throttles the table's bucket went from empty to empty, so the keys it accepted in
  between, over the time between, is its refill rate; the pacer sends at :data:`DECREASE`
  of that. With nothing accepted in between, or sooner while it is still probing, a
  throttle cuts the rate to :data:`BACKOFF` of itself.
  The first throttle of all, with nothing to go on, starts at :data:`PROBE_RATE` or what was
  accepted in the first second if that is more.
- **increase**: each accepted request raises the rate by :data:`GROWTH_PER_KEY` per key it
  carried (a fixed share per request, so a table of 5 write units and one of 5,000 see a
  throttle equally rarely), so the pacer finds capacity that is added (autoscaling, a
  quieter neighbour) and the bank of unused capacity a table keeps. Until the first
  measurement it probes instead, the rate growing by :data:`PROBE_GROWTH_PER_S` a second.

The learned rate lasts for the container, so the next batch does not start with a burst of
throttles; after :data:`IDLE_RESET_S` without work it is forgotten (the table has banked
capacity again). Time inside an invocation is read off its deadline, so a simulated clock in
a test paces as the real one does; a clock that a sleep did not move is taken to have moved
by the sleep.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

#: The shortest time between two throttles over which the accepted rate is measured.
MIN_WINDOW_S = 1.0
#: After a measurement the pacer sends at this share of the measured rate.
DECREASE = 0.95
#: A window in which nothing was accepted cuts the rate to this share.
BACKOFF = 0.7
#: Once measured, the rate grows by this share of itself per key accepted (0.4 % a full
#: request: about 13 requests from one throttle to the next).
GROWTH_PER_KEY = 0.004 / 25
#: Before any measurement, the rate doubles about every 0.7 s.
PROBE_GROWTH_PER_S = 1.0
#: Keys per second after a first throttle that says nothing about the rate: one request a second.
PROBE_RATE = 25.0
#: Keys per second the pacer never goes below (a table of one write unit still gets work).
MIN_RATE = 1.0
#: Seconds of the rate the pacer may send at once (it never holds back a single request).
BURST_S = 1.0
#: Seconds between invocations after which the learned rate is forgotten.
IDLE_RESET_S = 30.0
#: The longest single sleep while waiting, so a stop or the deadline is seen in time, and
#: the shortest (a wait of a rounding error's length would never move the clock).
MAX_WAIT_S = 0.5
MIN_WAIT_S = 0.001
_EPSILON = 1e-6


class Pacer:
    """The send rate of one container's deletes, in keys per second (None: unpaced)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, largest: int = 25) -> None:
        self._clock = clock
        #: The largest request (BatchWriteItem's 25): the bucket always holds room for one.
        self._largest = largest
        self._lock = threading.Lock()
        self.rate: float | None = None
        #: Whether ``rate`` comes from a measurement (else it is still a probe).
        self.measured = False
        self._last_used: float | None = None
        self._time_left: Callable[[], float] = lambda: 0.0
        self._at = self._window_start = self._floor = 0.0
        self._tokens = 0.0
        self._accepted = 0

    def begin(self, time_left: Callable[[], float]) -> None:
        """Start an invocation that may send while ``time_left()`` (seconds) is positive."""
        with self._lock:
            idle_s = self._clock() - self._last_used if self._last_used is not None else 0.0
            if idle_s > IDLE_RESET_S:
                self.rate, self.measured = None, False
            self._time_left = time_left
            self._at = self._window_start = self._floor = -time_left()
            # What the tables refilled since the last invocation, as far as the pacer knows.
            self._tokens = min(self.rate * BURST_S, self.rate * idle_s) if self.rate else 0.0
            self._accepted = 0

    def end(self) -> None:
        """The invocation is over (its threads may still answer; they no longer count)."""
        with self._lock:
            self._last_used = self._clock()

    def acquire(self, keys: int, reserve_s: float, sleep: Callable[[float], None]) -> bool:
        """Wait until ``keys`` may be sent; False when there is no time to wait for it and
        still keep ``reserve_s`` for the request."""
        while True:
            with self._lock:
                self._refill()
                if self.rate is None or self._tokens >= keys - _EPSILON:
                    self._tokens -= keys if self.rate is not None else 0
                    return True
                wait = (keys - self._tokens) / self.rate
                started = self._time()
            if -started - reserve_s < wait:
                return False
            step = min(max(wait, MIN_WAIT_S), MAX_WAIT_S)
            sleep(step)
            with self._lock:
                self._floor = max(self._floor, started + step)

    def report(self, accepted: int, throttled: bool) -> None:
        """What a request got: the keys accepted, and whether it was throttled."""
        with self._lock:
            self._accepted += accepted
            if not throttled:
                if self.rate is not None and self.measured:
                    self.rate *= 1 + GROWTH_PER_KEY * accepted
                return
            now = self._time()
            window = now - self._window_start
            if self.rate is None:
                self.rate = max(PROBE_RATE, self._accepted / MIN_WINDOW_S)
            elif window < MIN_WINDOW_S:
                if not self.measured:  # still probing: stop hammering, keep measuring
                    self.rate, self._tokens = max(MIN_RATE, self.rate * BACKOFF), 0.0
                return
            elif self._accepted:
                # The bucket holds back, on average, half an item's units at each throttle.
                self.rate = DECREASE * (self._accepted + 0.5) / window
                self.measured = True
            else:
                self.rate = max(MIN_RATE, self.rate * BACKOFF)
            self._window_start, self._accepted, self._tokens = now, 0, 0.0

    def _time(self) -> float:
        """Seconds into the invocation, as minus the time left (moved at least by sleeps)."""
        return max(-self._time_left(), self._floor)

    def _refill(self) -> None:
        now = self._time()
        elapsed, self._at = max(0.0, now - self._at), now
        if self.rate is None:
            return
        if not self.measured:
            self.rate += self.rate * PROBE_GROWTH_PER_S * elapsed
        ceiling = max(self.rate * BURST_S, float(self._largest))
        self._tokens = min(ceiling, self._tokens + self.rate * elapsed)
