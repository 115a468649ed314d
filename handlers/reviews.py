"""点评 / 自评: the comments the mid-year review (June) and the annual appraisal (December) carry.

An admin comments on a unit (点评 <单位> <内容>), a unit's 负责人 assesses it (自评 <内容>), during
June and December only, for that month's review. A later one replaces the earlier one in the review;
the earlier stay in the table. 点评 / 自评 alone show what is stored for the latest review."""
from bot.campaign import reviews
from bot.reply import Reply
from bot.router import ADMINS, IN_GROUP_PRIVATE, IN_GROUP_REFUSE, LEADERS, Context, Router
from bot.text import blank, split_args
from db import queries
from db.models import COMMENT_ADMIN, COMMENT_SELF, ROLE_ADMIN, Unit
from handlers.common import fail

router = Router("reviews")


def _today(ctx: Context):
    return ctx.now.astimezone(ctx.tz).date()


@router.command("点评", "comment", roles=ADMINS, in_group=IN_GROUP_REFUSE)
def comment(ctx: Context) -> Reply:
    if blank(ctx.args):
        return _show(ctx, None)
    period = _open_period(ctx, "点评")
    (name,), text = split_args(ctx.args, 1)
    unit = queries.find_unit(ctx.session, name)
    if unit is None:
        raise fail("点评", "unit_not_found", name=name)
    if not text:
        raise fail("点评", "missing_args")
    return _store(ctx, period, COMMENT_ADMIN, unit, text)


@router.command("自评", "selfreview", roles=LEADERS, in_group=IN_GROUP_PRIVATE)
def self_review(ctx: Context) -> Reply:
    if blank(ctx.args):
        return _show(ctx, ctx.unit)
    period = _open_period(ctx, "自评")
    _, text = split_args(ctx.args, 0)  # as typed, without a leading "：" or "，"
    return _store(ctx, period, COMMENT_SELF, ctx.unit, text)


def _open_period(ctx: Context, command: str) -> str:
    period = reviews.open_period(_today(ctx))
    if period is None:
        raise fail(command, "comments_closed", month=_today(ctx).month)
    return period


def _store(ctx: Context, period: str, kind: str, unit: Unit, text: str) -> Reply:
    s = ctx.session
    before = reviews.latest(s, period, unit_id=unit.id).get(unit.id, {}).get(kind)
    row = queries.add_review_comment(s, unit.id, period, kind, ctx.member.userid, text, ctx.now)
    sent = queries.get_job_run(s, reviews.job_of(period), period)  # the review already went out
    return Reply("comment_ok", {"row": row, "unit": unit, "title": reviews.title(period), "before": before,
                                "midyear": reviews.is_midyear(period), "sent": sent,
                                "people": queries.members_by_id(s)})


def _show(ctx: Context, unit: Unit | None) -> Reply:
    """The latest review's 点评 and 自评: of every unit that has one (admins), or of the unit."""
    s, today = ctx.session, _today(ctx)
    period = reviews.latest_period(today)
    rows = reviews.latest(s, period, unit_id=unit.id if unit else None)
    # A unit sees its 点评 once the review it belongs to has gone out (admins: as soon as written).
    hidden = set()
    if ctx.member.role != ROLE_ADMIN and queries.get_job_run(s, reviews.job_of(period), period) is None:
        hidden = {u for u, kinds in rows.items() if COMMENT_ADMIN in kinds}
        rows = {u: {k: c for k, c in kinds.items() if k != COMMENT_ADMIN} for u, kinds in rows.items()}
    units = [unit] if unit else [u for u in queries.all_units(s) if u.id in rows]
    counts = {kind: sum(kind in c for c in rows.values()) for kind in (COMMENT_ADMIN, COMMENT_SELF)}
    return Reply("comments", {"title": reviews.title(period), "rows": rows, "units": units, "unit": unit,
                              "counts": counts, "total": len(queries.all_units(s)),
                              "open": reviews.open_period(today) == period, "people": queries.members_by_id(s),
                              "hidden": hidden})
