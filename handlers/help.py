"""帮助: the commands this user may use (worded for their role), each with one example while the
list fits in one message (help.j2 measures it); `帮助 <命令>` shows one command with its example."""
from bot.reply import Reply
from bot.router import EVERYONE, Context, Router
from db import queries
from db.models import ROLE_ADMIN, ROLE_LEADER, ROLE_MEMBER, ROLE_OVERSEER, Unit

router = Router("help")
UNIT_ACTS = ("销号", "申诉", "自评", "撤回")  # a unit's people do these; an admin may, but is shown them by name
# An admin's less used commands, by name on one line a family (`帮助 补录` shows one), so that the
# whole list fits one message.
GROUPS = (("处理申诉", ("采纳", "驳回", "补录", "重算", "更正")), ("延期审批", ("同意延期", "不同意延期")),
          ("清单审核", ("清单", "通过")), ("亮点与点评", ("亮点", "选用", "点评")))
# Each role's most used commands first (the rest follow in the routers' order).
FIRST = {
    ROLE_MEMBER: ("汇报", "任务", "修改", "督办查看", "反馈", "问题", "整改", "排名"),
    ROLE_LEADER: ("汇报", "状态", "任务", "督办查看", "签收", "反馈", "问题", "整改", "销号", "修改", "排名", "申诉"),
    ROLE_OVERSEER: ("状态", "未报", "排名", "督办查看", "任务", "汇报"),
    ROLE_ADMIN: ("状态", "未报", "排名", "提醒", "任务", "督办", "办结", "退回", "发布", "暂缓", "确认销号", "导出", "新增任务"),
}


@router.command("帮助", "help", "菜单", "?")
def show_help(ctx: Context) -> Reply:
    from handlers import ROUTERS  # the full list, built after every module registered

    role = ctx.member.role
    names = [c.names[0] for r in ROUTERS for c in r.commands if c.allowed(ctx.member)]
    if role != ROLE_ADMIN:  # everyone may look at 督办 items; only admins issue them
        names = ["督办查看" if n == "督办" else n for n in names]
    # An admin has too many commands for one message: theirs in full, everyone's and a unit's by name.
    brief = [c.names[0] for r in ROUTERS for c in r.commands
             if (c.roles == EVERYONE and c.names[0] not in FIRST[ROLE_ADMIN]) or c.names[0] in UNIT_ACTS] \
        if role == ROLE_ADMIN else []
    groups = [(label, [n for n in family if n in names]) for label, family in GROUPS] if role == ROLE_ADMIN else []
    groups = [(label, family) for label, family in groups if family]
    grouped = [n for _, family in groups for n in family]
    first = FIRST.get(role, ())
    names = sorted((n for n in names if n not in brief and n not in grouped),
                   key=lambda n: first.index(n) if n in first else len(first))
    own = queries.example_codes(ctx.session, ctx.member.userid, ctx.member.unit_id)
    asked = ctx.args.strip().lstrip("/#")
    if asked:  # 帮助 汇报: that command alone, with its example
        shown = "督办查看" if asked == "督办" and "督办查看" in names else asked
        return Reply("help_one", {"name": shown if shown in names + brief + grouped else None, "asked": asked,
                                  "member": ctx.member, "own": own})
    units = None  # a 分管领导 is told which units are theirs
    if ctx.member.role == ROLE_OVERSEER:
        ids = queries.overseen_units(ctx.session, ctx.member)
        units = sorted(u.name for u in (ctx.session.get(Unit, i) for i in ids) if u is not None)
    return Reply("help", {"names": names, "brief": brief, "groups": groups, "member": ctx.member, "units": units,
                          "own": own})
