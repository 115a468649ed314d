"""绑定: link the group this is said in (the smart robot's chatid) to a unit."""
from bot.reply import Reply
from bot.router import ADMINS, IN_GROUP_ONLY, Context, Router
from db import queries
from handlers.common import fail

router = Router("groups")


@router.command("绑定", "bind", roles=ADMINS, in_group=IN_GROUP_ONLY)
def bind(ctx: Context) -> Reply:
    name = ctx.args.strip()
    if not name:
        raise fail("绑定", "missing_args")
    unit = queries.find_unit(ctx.session, name)
    if unit is None:
        raise fail("绑定", "unit_not_found", name=name)
    previous = queries.bind_group(ctx.session, unit, ctx.chat)
    return Reply("group_bound", {"unit": unit, "previous": previous})
