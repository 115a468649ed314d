"""Campaign years (the campaign table) and what a new year carries over from the last."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import func
from sqlmodel import Session, col, select

from db.models import (
    ITEM_DONE,
    PROBLEM_CLOSED,
    Campaign,
    ItemEvent,
    Problem,
    ProblemProgress,
    Report,
    SupervisionItem,
    Task,
)
from db.queries._shared import CURRENT_YEAR
from db.queries.tasks import code_key


def current_year(s: Session) -> int | None:
    """The latest campaign year (None before any is recorded)."""
    return s.exec(select(func.max(Campaign.year))).one()


_BY_PREFIX = {"T": Task, "P": Problem, "D": SupervisionItem}


def past_year_of(s: Session, code: str) -> int | None:
    """The latest earlier campaign year that has this code (T3, P2, D1), when the current one has not."""
    model = _BY_PREFIX.get(code[:1])
    if model is None:
        return None
    return s.exec(select(func.max(model.year)).where(model.code == code, model.year != CURRENT_YEAR)).one()


def campaigns(s: Session) -> list[Campaign]:
    return list(s.exec(select(Campaign).order_by(Campaign.year)))


def get_campaign(s: Session, year: int) -> Campaign | None:
    return s.get(Campaign, year)


def add_campaign(s: Session, year: int, first_month: str, now: datetime | None) -> Campaign:
    row = Campaign(year=year, first_month=first_month, started_at=now)
    s.add(row)
    s.flush()
    return row


class Unfinished:
    """What a year leaves open at its end: tasks under 100 %, problems not 销号'd, 督办 items not 办结."""

    def __init__(self, tasks: list[Task], problems: list[Problem], items: list[SupervisionItem], latest: dict):
        self.tasks, self.problems, self.items, self.latest = tasks, problems, items, latest

    def __len__(self) -> int:
        return len(self.tasks) + len(self.problems) + len(self.items)


def unfinished(s: Session, year: int) -> Unfinished:
    tasks = list(s.exec(select(Task).where(Task.year == year)))
    newest = select(func.max(Report.id)).where(col(Report.task_id).in_([t.id for t in tasks])).group_by(Report.task_id)
    latest = {r.task_id: r for r in s.exec(select(Report).where(col(Report.id).in_(newest.scalar_subquery())))}
    tasks = sorted((t for t in tasks if t.id not in latest or latest[t.id].percent < 100), key=lambda t: code_key(t.code))
    problems = sorted(s.exec(select(Problem).where(Problem.year == year, Problem.status != PROBLEM_CLOSED)),
                      key=lambda p: code_key(p.code))
    items = sorted(s.exec(select(SupervisionItem).where(SupervisionItem.year == year,
                                                         SupervisionItem.status != ITEM_DONE)),
                   key=lambda i: code_key(i.code))
    return Unfinished(tasks, problems, items, latest)


def _copy(row, year: int, **changes):
    data = row.model_dump(exclude={"id", "year"})
    return type(row)(**data, year=year, **changes)


def carry(s: Session, open_: Unfinished, year: int) -> None:
    """Copy what was left open into `year` under the same codes: a task with its newest report (so it
    goes on from its percent), a problem with its progress, an item with its timeline. The rows of
    the year they came from stay as they were, so that year's scores and pages do not change."""
    for task in open_.tasks:
        new = _copy(task, year)
        s.add(new)
        s.flush()
        last = open_.latest.get(task.id)
        if last is not None:
            s.add(_copy_report(last, new.id))
    for problem in open_.problems:
        new = _copy(problem, year)
        s.add(new)
        s.flush()
        for p in s.exec(select(ProblemProgress).where(ProblemProgress.problem_id == problem.id)
                        .order_by(ProblemProgress.id)):
            s.add(ProblemProgress(**p.model_dump(exclude={"id", "problem_id"}), problem_id=new.id))
    for item in open_.items:
        new = _copy(item, year)
        s.add(new)
        s.flush()
        for e in s.exec(select(ItemEvent).where(ItemEvent.item_id == item.id).order_by(ItemEvent.id)):
            s.add(ItemEvent(**e.model_dump(exclude={"id", "item_id"}), item_id=new.id))
    s.flush()


def _copy_report(report: Report, task_id: int) -> Report:
    return Report(**report.model_dump(exclude={"id", "task_id", "version", "supersedes_id"}), task_id=task_id,
                  version=1)
