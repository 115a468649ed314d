"""亮点 / 选用: a unit's achievements (典型经验, 亮晒比学). A 负责人 sends one, with pictures as evidence
(handlers/evidence.py); an admin picks it (选用) and it goes into the next monthly broadcast under
本月亮点 (bot/targets.py) and into the year's workbook."""
from bot import targets
from bot.reply import Push, Reply, Target
from bot.router import ADMINS, IN_GROUP_REFUSE, LEADERS, Context, Router
from bot.text import blank
from db import queries
from db.models import ATTACH_MINUTES, ATTACH_STORED, ROLE_ADMIN, Highlight, Unit
from handlers.common import fail, highlight_by_code, need_args

router = Router("highlights")
TITLE_LIMIT = 60
LIST_LIMIT = 20


@router.command("亮点", "highlight", roles=LEADERS)
def highlight(ctx: Context) -> Reply:
    if blank(ctx.args):
        return _list(ctx)
    (title,), content = need_args("亮点", ctx.args, 1)
    if len(title) > TITLE_LIMIT:
        raise fail("亮点", "title_too_long", limit=TITLE_LIMIT)
    s = ctx.session
    row = Highlight(code=queries.next_code(s, Highlight, "L"), unit_id=ctx.unit.id, userid=ctx.member.userid,
                    title=title, content=content, created_at=ctx.now)
    s.add(row)
    s.flush()
    return Reply("highlight_ok", {"h": row, "unit": ctx.unit, "minutes": ATTACH_MINUTES})


def _list(ctx: Context) -> Reply:
    """The newest: every unit's for admins (to pick from), the unit's own for a 负责人."""
    admin = ctx.member.role == ROLE_ADMIN
    rows = queries.highlights(ctx.session, None if admin else ctx.unit.id)[:LIST_LIMIT]
    pictures: dict[str, int] = {}
    for att in queries.attachments(ctx.session, [h.code for h in rows]):
        if att.status == ATTACH_STORED:
            pictures[att.code] = pictures.get(att.code, 0) + 1
    units = {u.id: u for u in queries.all_units(ctx.session)}
    return Reply("highlights_list", {"rows": rows, "units": units, "pictures": pictures, "admin": admin,
                                     "unit": ctx.unit})


@router.command("选用", "pick", roles=ADMINS, in_group=IN_GROUP_REFUSE)
def pick(ctx: Context) -> Reply:
    (token,), _ = need_args("选用", ctx.args, 1, content=False)
    row = highlight_by_code(ctx.session, "选用", token, ctx.member)
    if row.picked_at is not None:
        raise fail("选用", "highlight_picked", h=row)
    row.picked_at, row.picked_by = ctx.now, ctx.member.userid
    ctx.session.add(row)
    unit = ctx.session.get(Unit, row.unit_id)
    pushes = []
    if row.userid != ctx.member.userid and queries.get_member(ctx.session, row.userid) is not None:
        pushes.append(Push(Target("app", row.userid), "highlight_push", {"h": row, "unit": unit}, markdown=False,
                           key=f"picked:{row.code}"))
    return Reply("pick_ok", {"h": row, "unit": unit, "notified": targets.places(ctx.session, ctx.config, pushes)},
                 pushes)
