"""Time is injected: everything that needs "now" takes a Clock, so tests stand on any date."""
from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current moment, an aware datetime in UTC."""


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class FixedClock:
    """A clock that reads what it is told; set() moves it."""

    def __init__(self, moment: datetime):
        self._lock = threading.Lock()
        self._now = moment.astimezone(UTC)

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def set(self, moment: datetime) -> None:
        with self._lock:
            self._now = moment.astimezone(UTC)
