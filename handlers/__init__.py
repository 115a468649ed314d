"""Chat commands, one module per family. To add a command: pick (or add) a module, register a
function on its router with @router.command(...), add its usage to bot/templates/commands.j2
and a reply template. Nothing in the wire code changes."""
from handlers import (
    admin, appeals, evidence, groups, help, highlights, lists, problems, ranking, reviews, supervision, tasks, undo,
)

ROUTERS = [help.router, tasks.router, problems.router, supervision.router, evidence.router, highlights.router,
           ranking.router, appeals.router, reviews.router, admin.router, lists.router, undo.router, groups.router]
on_media = evidence.receive  # a picture message, which has no command word
