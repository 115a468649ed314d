"""排名 / 申诉 / 发布 / 暂缓: the month's ranking, its review window and its release (公开亮晒)."""
from bot import targets
from bot.campaign import digest, release, years
from bot.reply import Button, Card, Push, Reply, Target
from bot.router import ADMINS, IN_GROUP_PRIVATE, IN_GROUP_REFUSE, LEADERS, OVERSIGHT, Context, Router
from bot.text import blank, parse_month_text, split_args
from db import queries
from db.models import RELEASE_PUBLISHED, ROLE_LEADER
from db.month import Month
from handlers.common import fail, parse_month, units_in_view

router = Router("ranking")


def _this_month(ctx: Context) -> Month:
    return Month.of(ctx.now.astimezone(ctx.tz))


@router.command("排名", "rank", "ranking", in_group=IN_GROUP_PRIVATE)
def ranking(ctx: Context) -> Reply:
    """A published month is public: anyone sees what was published. A month in review (or held): the
    admins see it labelled 预览中, a 分管领导 their units' lines of it, a unit's 负责人 their unit's
    preview line. The running month, as of now: admins whole, a 分管领导 their units' places in it,
    a 负责人 their unit's. A 成员 sees published months only (排名 alone: the latest)."""
    s, member = ctx.session, ctx.member
    default = _this_month(ctx)
    in_review = release.latest_in_review(s)
    published = release.published_months(s)
    if not ctx.args.strip() and member.role not in OVERSIGHT:
        if in_review is not None and member.role == ROLE_LEADER:
            default = Month.parse(in_review.month)
        elif member.role != ROLE_LEADER and published:
            default = Month.parse(published[-1])
    month = parse_month("排名", ctx.args, default)
    frozen = release.get(s, month)
    if frozen is not None and frozen.status == RELEASE_PUBLISHED:
        return Reply("ranking", {"scores": release.thaw(frozen.data), "month": month, "partial": False,
                                 "published_at": frozen.published_at, "scoped": False, "preview": False,
                                 "correction": release.correction(frozen)})
    if not years.scored(ctx.session, ctx.config, month):
        raise fail("排名", "not_scored", month=month, first=years.first_month(ctx.session, ctx.config, month.year))
    if member.role not in OVERSIGHT and member.role != ROLE_LEADER:
        raise fail("排名", "not_published", month=month, published=published[-3:])
    if frozen is not None and member.role == ROLE_LEADER:
        scores = release.thaw(frozen.data)
        mine = next((sc for sc in scores if sc.unit.id == ctx.unit.id), None)
        if mine is not None:
            return Reply("ranking_unit_review", {"sc": mine, "month": month, "until": frozen.review_until,
                                                 "count": sum(1 for x in scores if x.rank),
                                                 "can_appeal": bool(mine.rank) and ctx.now < frozen.review_until,
                                                 "partnered": queries.partnered_due(s, month, month.end_utc(ctx.tz)).get(ctx.unit.id, [])})
    scope = units_in_view(s, "排名", member, ctx.unit)
    scores = release.thaw(frozen.data) if frozen is not None else digest.rank(s, ctx.config, month, ctx.now)
    rated = sum(1 for x in scores if x.rank)
    if scope is not None:
        ids = {u.id for u in scope}
        scores = [x for x in scores if x.unit.id in ids]
    return Reply("ranking", {"scores": scores, "month": month, "partial": frozen is None and month == default,
                             "published_at": None, "scoped": scope is not None, "rated": rated,
                             "preview": frozen is not None, "correction": None})


@router.command("申诉", "appeal", roles=LEADERS)
def appeal(ctx: Context) -> Reply:
    text = ctx.args.strip()
    if blank(text):
        raise fail("申诉", "missing_args")
    frozen = release.latest_in_review(ctx.session)
    if frozen is None:
        raise fail("申诉", "no_review")
    if ctx.now >= frozen.review_until:
        raise fail("申诉", "review_closed", month=frozen.month, until=frozen.review_until)
    mine = next((sc for sc in release.thaw(frozen.data) if sc.unit.id == ctx.unit.id), None)
    if mine is None or not mine.rank:
        raise fail("申诉", "not_ranked_unit", month=frozen.month)
    release.add_appeal(ctx.session, frozen, ctx.unit.id, ctx.member.userid, text, ctx.now)
    data = {"unit": ctx.unit, "month": frozen.month, "member": ctx.member, "text": text, "sc": mine}
    # 采纳 / 驳回 decide the appeal (handlers/appeals.py)
    card = Card("card_appeal", f"appeal:{frozen.month}:{ctx.unit.id}", [
        Button("采纳", f"采纳 {ctx.unit.name}"), Button("驳回", f"驳回 {ctx.unit.name}", "驳回意见")])
    pushes = [Push(Target("app", a.userid), "appeal_push", data, key=f"appeal:{a.userid}", card=card)
              for a in queries.admins(ctx.session)]
    return Reply("appeal_ok", {"unit": ctx.unit, "month": frozen.month,
                               "notified": targets.places(ctx.session, ctx.config, pushes)}, pushes)


def _release_arg(ctx: Context, command: str, rest_required: bool):
    """[YYYY-MM] then the rest; the month defaults to the latest ranking in review."""
    tokens, rest = split_args(ctx.args, 1)
    month = None
    if tokens:
        month = parse_month_text(tokens[0], _this_month(ctx).year)
        if month is None:
            rest = ctx.args.strip()
    if month is None:
        latest = release.latest_in_review(ctx.session)
        month = Month.parse(latest.month) if latest else _this_month(ctx).prev()
    if rest_required and blank(rest):
        raise fail(command, "missing_args")
    frozen = release.get(ctx.session, month)
    if frozen is None:
        raise fail(command, "no_release", month=month)
    return month, frozen, rest


@router.command("发布", "publish", roles=ADMINS, in_group=IN_GROUP_REFUSE)
def publish(ctx: Context) -> Reply:
    month, frozen, _ = _release_arg(ctx, "发布", rest_required=False)
    done = release.publish(ctx.session, month, ctx.now)
    scores = release.thaw(frozen.data)
    pushes = targets.ranking_broadcast(ctx.session, ctx.config, month, scores, ctx.now) \
        + targets.appeal_outcomes(ctx.session, month, scores, published=True) if done else []
    ctx.session.refresh(frozen)
    outcome = {"kind": "发布"} if done else {"kind": "发布", "by": None, "when": frozen.published_at}
    return Reply("publish_ok", {"month": month, "done": done, "release": frozen,
                                "sent": targets.places(ctx.session, ctx.config, pushes)}, pushes,
                 settles=[(f"ranking:{month}", outcome)])


@router.command("暂缓", "hold", roles=ADMINS, in_group=IN_GROUP_REFUSE)
def hold(ctx: Context) -> Reply:
    month, frozen, reason = _release_arg(ctx, "暂缓", rest_required=True)
    if frozen.status == RELEASE_PUBLISHED:
        raise fail("暂缓", "already_published", month=month)
    release.hold(ctx.session, frozen, reason)
    pushes = targets.appeal_outcomes(ctx.session, month, release.thaw(frozen.data), published=False, reason=reason)
    return Reply("hold_ok", {"month": month, "reason": reason}, pushes, settles=[(f"ranking:{month}", {"kind": "暂缓"})])
