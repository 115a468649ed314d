"""Small helpers shared by the bench scripts (kept apart from tests/ so benches import no pytest)."""
from datetime import datetime
from zoneinfo import ZoneInfo

TZ = ZoneInfo("Asia/Shanghai")


def at(*args) -> datetime:
    return datetime(*args, tzinfo=TZ)
