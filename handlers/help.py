"""帮助: the commands this user may use, each with one example (worded for their role)."""
from bot.reply import Reply
from bot.router import EVERYONE, Context, Router
from db import queries
from db.models import ROLE_ADMIN, ROLE_OVERSEER, Unit

router = Router("help")


@router.command("帮助", "help", "菜单", "?")
def show_help(ctx: Context) -> Reply:
    from handlers import ROUTERS  # the full list, built after every module registered

    names = [c.names[0] for r in ROUTERS for c in r.commands if c.allowed(ctx.member)]
    if ctx.member.role != ROLE_ADMIN:  # everyone may look at 督办 items; only admins issue them
        names = ["督办查看" if n == "督办" else n for n in names]
    # An admin has too many commands for one message: theirs in full, everyone's by name.
    brief = [c.names[0] for r in ROUTERS for c in r.commands if c.roles == EVERYONE and c.names[0] != "督办"] \
        if ctx.member.role == ROLE_ADMIN else []
    units = None  # a 分管领导 is told which units are theirs
    if ctx.member.role == ROLE_OVERSEER:
        ids = queries.overseen_units(ctx.session, ctx.member)
        units = sorted(u.name for u in (ctx.session.get(Unit, i) for i in ids) if u is not None)
    return Reply("help", {"names": [n for n in names if n not in brief], "brief": brief, "member": ctx.member,
                          "units": units})
