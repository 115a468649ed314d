"""Small query functions, one module a subject. Handlers and jobs read and write only through
these, as `from db import queries` then `queries.get_task(s, "T1")`; this package gathers them."""
from db.queries.cards import *  # noqa: F401,F403
from db.queries.evidence import *  # noqa: F401,F403
from db.queries.inbound import *  # noqa: F401,F403
from db.queries.jobruns import *  # noqa: F401,F403
from db.queries.kept import *  # noqa: F401,F403
from db.queries.lists import *  # noqa: F401,F403
from db.queries.outbox import *  # noqa: F401,F403
from db.queries.pages import *  # noqa: F401,F403
from db.queries.people import *  # noqa: F401,F403
from db.queries.problems import *  # noqa: F401,F403
from db.queries.reviews import *  # noqa: F401,F403
from db.queries.supervision import *  # noqa: F401,F403
from db.queries.tasks import *  # noqa: F401,F403
from db.queries.years import *  # noqa: F401,F403
from db.queries.voided import *  # noqa: F401,F403
