"""帮助: the commands this user may use, each with one example."""
from bot.reply import Reply
from bot.router import Context, Router

router = Router("help")


@router.command("帮助", "help", "菜单", "?")
def show_help(ctx: Context) -> Reply:
    from handlers import ROUTERS  # the full list, built after every module registered

    names = [c.names[0] for r in ROUTERS for c in r.commands if c.allowed(ctx.member)]
    return Reply("help", {"names": names, "member": ctx.member})
