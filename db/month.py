"""Month: a calendar month as a value ("2026-03"), the unit every report, item and ranking is kept by."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

@dataclass(frozen=True, order=True)
class Month:
    """A calendar month, e.g. Month(2026, 3) for "2026-03"."""

    year: int
    month: int

    @classmethod
    def parse(cls, text: str) -> "Month":
        y, m = text.strip().split("-")
        month = cls(int(y), int(m))
        if not 1 <= month.month <= 12 or not 2000 <= month.year <= 2100:
            raise ValueError(text)
        return month

    @classmethod
    def of(cls, d: date | datetime) -> "Month":
        return cls(d.year, d.month)

    def __str__(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"

    @property
    def first_day(self) -> date:
        return date(self.year, self.month, 1)

    @property
    def last_day(self) -> date:
        return self.next().first_day - timedelta(days=1)

    def next(self) -> "Month":
        return Month(self.year + self.month // 12, self.month % 12 + 1)

    def prev(self) -> "Month":
        return Month(self.year - (self.month == 1), (self.month - 2) % 12 + 1)

    def start_utc(self, tz: ZoneInfo) -> datetime:
        return local_midnight_utc(self.first_day, tz)

    def end_utc(self, tz: ZoneInfo) -> datetime:
        return self.next().start_utc(tz)

def local_midnight_utc(d: date, tz: ZoneInfo) -> datetime:
    """The start of local day `d`, as an aware UTC datetime."""

    return datetime.combine(d, time(0), tzinfo=tz).astimezone(UTC)
