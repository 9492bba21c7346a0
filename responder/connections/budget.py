"""A request budget and Retry-After, shared by the Halo and Graph clients.

Both services throttle per rolling window (Halo about 300 requests per 5 minutes per
tenant, Outlook 10,000 per 10 minutes per mailbox), so each client keeps its own
sliding-window budget and waits for a free slot rather than cause a 429.
"""

from __future__ import annotations

import asyncio
import bisect
import email.utils
import logging
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Protocol

log = logging.getLogger("responder.halo")  # the name these lines have always carried

Sleep = Callable[[float], Awaitable[None]]
Clock = Callable[[], float]

RETRY_AFTER_CAP = 120.0  # a longer Retry-After is cut to this; the caller retries later anyway


class BudgetStore(Protocol):
    """Where the requests of every process on one ledger are counted (see ``Ledger``)."""

    def budget_take(self, key: str, limit: int, window: float, now: float) -> float: ...

    def budget_settle(self, key: str, stamp: float, now: float) -> None: ...


class RequestBudget:
    """At most ``limit`` requests in any ``window`` seconds; ``acquire`` waits for a slot.

    Waiters queue on a lock, so slots go out first come, first served, except that an
    ``urgent`` request (a decision) goes before the reads waiting, and the last
    ``reserve`` slots of a window are for urgent requests only: a read is only worth its
    slot once its decision is posted. With a ``store`` (the ledger), the slots are
    counted there, shared by every process on that ledger (``once``, ``run``, ``check``,
    ``replay``, ``explain --online``), by wall-clock time.
    """

    def __init__(
        self,
        limit: int,
        window: float,
        *,
        sleep: Sleep,
        clock: Clock,
        store: BudgetStore | None = None,
        key: str = "",
        reserve: int = 0,
    ) -> None:
        self.limit = limit
        self.window = window
        self.reserve = min(max(reserve, 0), limit - 1)  # slots only urgent requests take
        self._sleep = sleep
        self._clock = time.time if store is not None else clock
        self._store = store
        self._key = key
        self._sent: deque[float] = deque()
        self._lock = asyncio.Lock()
        self._urgent = 0
        self._waiting = 0  # requests waiting for a slot right now
        self._waited = -float("inf")  # clock time a request last had to wait

    async def acquire(self, urgent: bool = False) -> float:
        """Wait for a slot; returns its time stamp, to hand to ``settle`` when the call ends."""
        if not urgent:
            async with self._lock:
                return await self._take(urgent)
        self._urgent += 1
        try:
            return await self._take(urgent)
        finally:
            self._urgent -= 1

    async def _take(self, urgent: bool) -> float:
        logged = False
        while True:
            now = self._clock()
            wait = await self._try(now, self.limit if urgent else self.limit - self.reserve)
            if wait <= 0 and (urgent or not self._urgent):
                return now
            if wait <= 0:  # taken for nothing: an urgent request goes first
                self._release(now)
                wait = 0.01
            elif not logged:
                log.info("Halo request budget spent (%d per %g s): waiting %.1f s",
                         self.limit, self.window, wait)
                logged = True
            self._waiting += 1
            try:
                await self._sleep(wait)
            finally:
                self._waiting -= 1
                self._waited = self._clock()

    async def _try(self, now: float, cap: int) -> float:
        """Take a slot at ``now`` if fewer than ``cap`` are taken (0), else the seconds
        until that is so."""
        if self._store is not None:
            return await asyncio.to_thread(
                self._store.budget_take, self._key, cap, self.window, now)
        while self._sent and self._sent[0] <= now - self.window:
            self._sent.popleft()
        if len(self._sent) < cap:
            self._sent.append(now)
            return 0.0
        return max(self._sent[len(self._sent) - cap] + self.window - now, 0.001)

    @property
    def pressed(self) -> bool:
        """Whether requests wait for slots (now, or a moment ago): a request now costs
        another one its slot."""
        recent = max(1.0, 2 * self.window / self.limit)
        return self._waiting > 0 or self._clock() - self._waited < recent

    def _release(self, stamp: float) -> None:
        if self._store is not None:
            self._store.budget_settle(self._key, stamp, -1.0)  # rare: a contended slot
        elif stamp in self._sent:
            self._sent.remove(stamp)

    async def settle_soon(self, stamp: float) -> None:
        """``settle``, with the shared store's write in a worker thread."""
        if self._store is not None:
            await asyncio.to_thread(self.settle, stamp)
        else:
            self.settle(stamp)

    def settle(self, stamp: float) -> None:
        """Count a finished call from when its answer came, not from when it was sent.

        Halo counts a request when it gets there, somewhere between our send and our
        receipt of the answer; counted from the send, network jitter let a request through
        that Halo still saw inside the window (429s under a budget equal to Halo's limit).
        """
        if self._store is not None:
            self._store.budget_settle(self._key, stamp, self._clock())
            return
        if stamp in self._sent:  # else it left the window in flight: count it anew anyway
            self._sent.remove(stamp)
        bisect.insort(self._sent, self._clock())



def retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Retry-After as seconds to wait (delta-seconds or an HTTP-date), capped; None if absent."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if not math.isfinite(seconds):
        return None
    return min(max(seconds, 0.0), RETRY_AFTER_CAP)
