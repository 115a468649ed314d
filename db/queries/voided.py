"""What was 作废 (or withdrawn, 撤回): tasks, problems, 督办 items and 亮点 kept with who, when and why."""
from __future__ import annotations

from datetime import datetime
from typing import NamedTuple

from sqlmodel import Session, col, select

from db.models import Highlight, Problem, SupervisionItem, Task

# The kinds that may be voided, as the exports name them, with the column that says what each was.
VOIDABLE = ((Task, "任务", Task.content), (Problem, "问题", Problem.description),
            (SupervisionItem, "督办", SupervisionItem.content), (Highlight, "亮点", Highlight.title))


class Voided(NamedTuple):
    code: str
    kind: str
    unit_id: int
    what: str
    voided_by: str
    voided_at: datetime
    reason: str


def voided(s: Session) -> list[Voided]:
    """Every voided row, in the order they were voided."""
    rows = []
    for model, kind, what in VOIDABLE:
        q = select(model.code, model.unit_id, what, model.voided_by, model.voided_at, model.void_reason) \
            .where(col(model.voided_at).is_not(None))
        rows += [Voided(code, kind, unit_id, text, by, at, reason) for code, unit_id, text, by, at, reason in s.exec(q)]
    return sorted(rows, key=lambda v: v.voided_at)


def voided_codes(s: Session, codes: list[str]) -> dict[str, Voided]:
    """Those of `codes` that were voided (a re-import names them instead of bringing them back)."""
    wanted = set(codes)
    return {v.code: v for v in voided(s) if v.code in wanted}
