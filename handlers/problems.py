"""问题 / 整改 / 销号: the unit's problem list (问题清单)."""
from bot.reply import Reply
from bot.router import LEADERS, Context, Router
from bot.text import blank
from db import queries
from db.models import PROBLEM_CLOSED, PROBLEM_RECTIFYING, Problem
from handlers.common import fail, need_args, problem_by_code

router = Router("problems")


@router.command("问题", "problem")
def add_problem(ctx: Context) -> Reply:
    text = ctx.args.strip()
    if blank(text):
        raise fail("问题", "missing_args")
    s = ctx.session
    problem = Problem(
        code=queries.next_code(s, Problem, "P"),
        unit_id=ctx.unit.id,
        description=text,
        owner_userid=ctx.member.userid,
        created_at=ctx.now,
    )
    s.add(problem)
    s.flush()
    return Reply("problem_ok", {"problem": problem, "unit": ctx.unit})


@router.command("整改", "rectify")
def rectify(ctx: Context) -> Reply:
    (code,), text = need_args("整改", ctx.args, 1)
    problem = problem_by_code(ctx.session, "整改", code, ctx.member)
    if problem.status == PROBLEM_CLOSED:
        raise fail("整改", "problem_closed", code=problem.code)
    queries.add_problem_progress(ctx.session, problem, ctx.member.userid, text, ctx.now)
    problem.status = PROBLEM_RECTIFYING
    ctx.session.add(problem)
    return Reply("rectify_ok", {"problem": problem, "text": text})


@router.command("销号", "close")
def close(ctx: Context) -> Reply:
    (code,), _ = need_args("销号", ctx.args, 1, content=False)
    if ctx.member.role not in LEADERS:
        raise fail("销号", "leader_only")
    problem = problem_by_code(ctx.session, "销号", code, ctx.member)
    if problem.status == PROBLEM_CLOSED:
        raise fail("销号", "problem_closed", code=problem.code)
    problem.status = PROBLEM_CLOSED
    problem.closed_at = ctx.now
    ctx.session.add(problem)
    return Reply("close_ok", {"problem": problem})
