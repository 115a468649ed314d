"""The peer for bench/callback.py: the least a durable WeCom bot does, written the usual way. On
the same HTTP stack as the baseline (uvicorn + Starlette): verify the signature, decrypt with
wechatpy, then in Starlette's thread pool one SQLAlchemy INSERT of the message and one commit,
then a fixed encrypted reply.

    python bench/peer_server.py DATABASE_URL PORT
"""
from __future__ import annotations

import sys
from datetime import UTC, datetime

from sqlalchemy import Column, DateTime, Integer, MetaData, String, Table, Text, create_engine, event, insert
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from baseline_server import answer, open_message, serve

THREADS = 40  # anyio's default thread limit, which run_in_threadpool uses: one connection a thread

metadata = MetaData()
messages = Table("peer_message", metadata,
                 Column("id", Integer, primary_key=True),
                 Column("userid", String(64), nullable=False),
                 Column("msg_id", String(64), nullable=False),
                 Column("content", Text, nullable=False),
                 Column("created_at", DateTime(timezone=True), nullable=False))

url = sys.argv[1]
engine = create_engine(url, pool_size=THREADS, max_overflow=0)
if url.startswith("sqlite"):
    # The durability duban uses (db/session.py), so both pay the same for a commit: WAL with
    # synchronous=NORMAL. And the same 30 s busy timeout, so a writer waits rather than fails.
    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn, _record):  # noqa: ANN001
        dbapi_conn.execute("PRAGMA journal_mode=WAL")
        dbapi_conn.execute("PRAGMA synchronous=NORMAL")
        dbapi_conn.execute("PRAGMA busy_timeout=30000")
metadata.create_all(engine)


def store(msg) -> None:
    with engine.begin() as conn:
        conn.execute(insert(messages).values(userid=msg.source, msg_id=str(msg.id), content=msg.content,
                                             created_at=datetime.now(UTC)))


async def callback(request: Request) -> Response:
    msg, timestamp = await open_message(request)
    await run_in_threadpool(store, msg)
    return answer(msg, timestamp)


if __name__ == "__main__":
    serve(callback, int(sys.argv[2]))
