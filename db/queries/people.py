"""Units, people, roles and the groups units are bound to."""
from __future__ import annotations

import re

from sqlalchemy import (
    delete,
)
from sqlmodel import Session, col, select

from db.models import (
    ROLE_ADMIN,
    ROLE_OVERSEER,
    LeaderUnit,
    Member,
    Task,
    Unit,
)
from db.queries._shared import _plain, in_year
from db.queries.inbound import forget_senders

# ---------------------------------------------------------------- units, members


def get_member(s: Session, userid: str) -> Member | None:
    return s.get(Member, userid)


def members_with_name(s: Session, name: str) -> list[Member]:
    """The people on the roster with this name (several people may share one)."""
    return list(s.exec(select(Member).where(Member.name == name.strip()).order_by(Member.userid)))


def all_units(s: Session) -> list[Unit]:
    return list(s.exec(select(Unit).order_by(Unit.name)))


def find_unit(s: Session, name: str) -> Unit | None:
    """Exact name, else the single unit whose name contains `name`."""
    name = name.strip()
    if not name:
        return None
    unit = s.exec(select(Unit).where(Unit.name == name)).first()
    if unit:
        return unit
    hits = list(s.exec(select(Unit).where(col(Unit.name).contains(name)).limit(2)))
    return hits[0] if len(hits) == 1 else None


def members_by_id(s: Session) -> dict[str, Member]:
    return {m.userid: m for m in s.exec(select(Member))}


def admins(s: Session) -> list[Member]:
    return list(s.exec(select(Member).where(Member.role == ROLE_ADMIN).order_by(Member.userid)))


# A 责任领导 cell may name several people: 李明、王强 / 李明,王强.
LEADER_SEPARATORS = re.compile(r"[、,，;；/\s]+")


def leader_names(cell: str) -> list[str]:
    return [x for x in LEADER_SEPARATORS.split(cell) if x]


def oversight(s: Session, leaders: list[Member]) -> dict[str, set[int]]:
    """userid -> the ids of the units each of these 分管领导 is over: the roster's 分管单位 (LeaderUnit),
    and the unit of every task whose 责任领导 names their userid or their name. Computed when asked,
    so a task added or changed (新增任务 … 责任领导=…, a new import) counts at once."""
    out: dict[str, set[int]] = {m.userid: set() for m in leaders}
    if not out:
        return out
    for userid, unit_id in _plain(s, select(LeaderUnit.userid, LeaderUnit.unit_id)
                                  .where(col(LeaderUnit.userid).in_(list(out)))):
        out[userid].add(unit_id)
    by_word: dict[str, list[str]] = {}
    for m in leaders:
        by_word.setdefault(m.userid, []).append(m.userid)
        by_word.setdefault(m.name, []).append(m.userid)
    for cell, unit_id in _plain(s, select(Task.leader_in_charge, Task.unit_id).distinct()
                                .where(Task.leader_in_charge != "", in_year(Task))):
        for word in leader_names(cell):
            for userid in by_word.get(word, ()):
                out[userid].add(unit_id)
    return out


def overseen_units(s: Session, member: Member) -> set[int]:
    """The units a 分管领导 is over (none for anyone else)."""
    return oversight(s, [member])[member.userid] if member.role == ROLE_OVERSEER else set()


def overseers(s: Session) -> dict[int, list[Member]]:
    """unit id -> the 分管领导 over it."""
    leaders = list(s.exec(select(Member).where(Member.role == ROLE_OVERSEER).order_by(Member.userid)))
    by_id = {m.userid: m for m in leaders}
    out: dict[int, list[Member]] = {}
    for userid, units in oversight(s, leaders).items():
        for unit_id in units:
            out.setdefault(unit_id, []).append(by_id[userid])
    return out


def leader_units(s: Session) -> dict[str, set[int]]:
    """userid -> unit ids of the roster's 分管单位 (LeaderUnit rows only)."""
    out: dict[str, set[int]] = {}
    for userid, unit_id in _plain(s, select(LeaderUnit.userid, LeaderUnit.unit_id)):
        out.setdefault(userid, set()).add(unit_id)
    return out


def set_leader_units(s: Session, userid: str, unit_ids: set[int]) -> None:
    """Replace the person's 分管单位 with these."""
    s.exec(delete(LeaderUnit).where(LeaderUnit.userid == userid))  # type: ignore[call-overload]
    s.add_all(LeaderUnit(userid=userid, unit_id=u) for u in sorted(unit_ids))


# ---------------------------------------------------------------- smart robot groups


def bind_group(s: Session, unit: Unit, chatid: str) -> list[Unit]:
    """Make `chatid` the unit's smart-robot group: a group belongs to one unit, so any other unit
    it was bound to loses it. Returns those units."""
    others = list(s.exec(select(Unit).where(Unit.aibot_chatid == chatid, Unit.id != unit.id)))
    for other in others:
        other.aibot_chatid = ""
        s.add(other)
    unit.aibot_chatid = chatid
    s.add(unit)
    s.flush()
    forget_senders(s)
    return others


def unit_of_group(s: Session, chatid: str) -> Unit | None:
    return s.exec(select(Unit).where(Unit.aibot_chatid == chatid)).first() if chatid else None
