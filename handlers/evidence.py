"""附件, and pictures sent to the app: evidence for a task (T), problem (P), 督办 item (D) or 亮点 (L).

A picture belongs to the sender's 汇报 / 整改 / 反馈 / 亮点 of the last ATTACH_MINUTES, or to the code
they name with `附件 T3`: before the picture (where the next ones go) or after it (the pictures held
since). The message only records it; bot/evidence.py fetches and stores it afterwards."""
from datetime import timedelta

from bot.reply import Reply
from bot.router import Context, Router
from bot.text import split_args
from db import queries
from db.models import ATTACH_MINUTES, ATTACH_PENDING, ROLE_LEADER, Attachment
from handlers import lists, supervision
from handlers.common import fail, highlight_by_code, problem_by_code, task_by_code

router = Router("evidence")
WINDOW = timedelta(minutes=ATTACH_MINUTES)


def target(ctx: Context, command: str, token: str) -> tuple[str, int]:
    """The code `token` names (T3, P3, D3, L3) and the unit whose evidence it is, if the member
    may act on it."""
    s, member = ctx.session, ctx.member
    prefix = token.strip()[:1].upper()
    if prefix == "T":
        task = task_by_code(s, command, token, member)
        return task.code, task.unit_id
    if prefix == "P":
        problem = problem_by_code(s, command, token, member)
        return problem.code, problem.unit_id
    if prefix == "D":
        item = supervision._item(ctx, command, token)  # issued to the member's unit (牵头 or 配合)
        return item.code, ctx.unit.id if ctx.unit.id in (item.unit_id, *item.partners) else item.unit_id
    if prefix == "L":
        highlight = highlight_by_code(s, command, token, member)
        return highlight.code, highlight.unit_id
    raise fail(command, "bad_attach_code", code=token)


def receive(ctx: Context) -> Reply:
    """A picture message (ctx.media: kind, media_id): recorded for the fetcher, or held until 附件.
    A file from a unit's 负责人 is the unit's lists (handlers/lists.py)."""
    kind, media_id = ctx.media
    if kind == "file" and ctx.member.role == ROLE_LEADER:
        return lists.receive(ctx)
    act = queries.recent_act(ctx.session, ctx.member.userid, ctx.now - WINDOW)
    row = Attachment(userid=ctx.member.userid, kind=kind, msg_id=ctx.msg_id, media_id=media_id, created_at=ctx.now)
    if act is not None:
        row.code, row.unit_id = target(ctx, "附件", act.code)
        row.status = ATTACH_PENDING
    ctx.session.add(row)
    return Reply("attach_ok", {"act": act, "kind": kind, "minutes": ATTACH_MINUTES})


@router.command("附件", "attach")
def attach(ctx: Context) -> Reply:
    tokens, _ = split_args(ctx.args, 1)
    if not tokens:
        raise fail("附件", "missing_args")
    code, unit_id = target(ctx, "附件", tokens[0])
    since = ctx.now - WINDOW
    moved = queries.attach_held(ctx.session, ctx.member.userid, since, code, unit_id)
    queries.set_intent(ctx.session, ctx.member.userid, code, ctx.now)
    return Reply("attach_set", {"code": code, "moved": moved, "minutes": ATTACH_MINUTES})
