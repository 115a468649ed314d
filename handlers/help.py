"""帮助: the commands this user may use, each with one example."""
from bot.reply import Reply
from bot.router import EVERYONE, Context, Router
from db.models import ROLE_ADMIN

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
    return Reply("help", {"names": [n for n in names if n not in brief], "brief": brief, "member": ctx.member})
