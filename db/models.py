"""All tables in one place. Times are aware UTC datetimes; `month` columns hold the local YYYY-MM."""
from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Column, Index, Integer, Text, UniqueConstraint, func, select
from sqlmodel import Field, SQLModel

ROLE_MEMBER = "成员"
ROLE_LEADER = "负责人"
ROLE_OVERSEER = "分管领导"  # a school leader over some units (LeaderUnit, and tasks' 责任领导)
ROLE_ADMIN = "管理员"
ROLES = (ROLE_MEMBER, ROLE_LEADER, ROLE_OVERSEER, ROLE_ADMIN)

MAX_ID = 2 ** 31 - 1  # the largest id an integer column holds (PostgreSQL's integer)

LINES = ("深学争优", "敢为争先", "实干争效")
UNIT_CATEGORIES = ("党总支", "直属党支部", "系（部、院）", "处室", "中心", "馆")

PROBLEM_OPEN = "open"
PROBLEM_RECTIFYING = "整改中"
PROBLEM_ASKED = "待销号"  # the 负责人 asked to close it (销号); an admin confirms or sends it back
PROBLEM_CLOSED = "已销号"

# ProblemProgress.kind: a 整改 note, or a step of closing it.
PROGRESS_NOTE = "整改"
PROGRESS_ASK = "申请销号"
PROGRESS_CONFIRM = "确认销号"
PROGRESS_RETURN = "退回"


class Unit(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(unique=True, index=True, max_length=100)
    category: str = Field(default="", max_length=40)
    leader_userid: str = Field(default="", max_length=64)
    chat_id: str = Field(default="", max_length=64)
    webhook_key: str = Field(default="", max_length=128)
    aibot_chatid: str = Field(default="", max_length=64)  # the group where people @ the smart robot


class Member(SQLModel, table=True):
    userid: str = Field(primary_key=True, max_length=64)
    name: str = Field(max_length=64)
    unit_id: int = Field(foreign_key="unit.id", index=True)
    role: str = Field(default=ROLE_MEMBER, max_length=8)


class LeaderUnit(SQLModel, table=True):
    """A unit a 分管领导 is over, from the roster's 分管单位. (A task whose 责任领导 is the person's
    userid or name puts its unit under them too: db/queries/people.py oversight, computed when asked.)"""

    userid: str = Field(foreign_key="member.userid", primary_key=True, max_length=64)
    unit_id: int = Field(foreign_key="unit.id", primary_key=True)


class Campaign(SQLModel, table=True):
    """A campaign year (`duban campaign new`): the latest is the current one, which chat messages,
    scores, prompts and jobs mean. `first_month` is its first scored month ("2026-11"), recorded so
    that a past year stays as it was when [campaign] first_month moves on to the next year."""

    year: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    first_month: str = Field(max_length=7)
    started_at: datetime | None = None  # None: the campaign that was running before years were kept


def _year_column() -> Column:
    """A task's, problem's or 督办 item's campaign year: codes are unique within a year (T1 of 2027
    is not T1 of 2026). Left out on insert, it is the current campaign's (the latest year)."""
    return Column(Integer, nullable=False,  # indexed with the code (unique), and a task's with its unit
                  default=select(func.max(Campaign.year)).scalar_subquery())


class Task(SQLModel, table=True):
    __table_args__ = (Index("uq_task_year_code", "year", "code", unique=True),
                      Index("ix_task_unit_year", "unit_id", "year"))
    id: int | None = Field(default=None, primary_key=True)
    year: int | None = Field(default=None, sa_column=_year_column())
    code: str = Field(index=True, max_length=32)
    unit_id: int = Field(foreign_key="unit.id", index=True)
    line: str = Field(max_length=16)
    content: str = Field(sa_column=Column(Text, nullable=False))
    milestone: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    leader_in_charge: str = Field(default="", max_length=64)
    owner_userid: str = Field(default="", max_length=64, index=True)
    start_date: date
    due_date: date
    voided_at: datetime | None = None  # 作废 (or withdrawn, 撤回) then: kept, gone from lists and scores
    voided_by: str = Field(default="", max_length=64)
    void_reason: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))


class Report(SQLModel, table=True):
    """One version of a person's progress on a task; never updated, only superseded."""

    __table_args__ = (UniqueConstraint("task_id", "month", "version"),)
    id: int | None = Field(default=None, primary_key=True)
    task_id: int = Field(foreign_key="task.id", index=True)
    unit_id: int = Field(foreign_key="unit.id", index=True)
    userid: str = Field(max_length=64)
    percent: int
    text: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime = Field(index=True)
    month: str = Field(max_length=7, index=True)
    local_day: int
    version: int = 1
    supersedes_id: int | None = Field(default=None, foreign_key="report.id")
    # 补录: a report an admin entered afterwards with its real time (created_at), for an accepted 申诉
    entered_by: str = Field(default="", max_length=64)
    entered_at: datetime | None = None
    appeal_id: int | None = None  # the Appeal it was entered for


class Problem(SQLModel, table=True):
    __table_args__ = (Index("uq_problem_year_code", "year", "code", unique=True),)
    id: int | None = Field(default=None, primary_key=True)
    year: int | None = Field(default=None, sa_column=_year_column())
    code: str = Field(index=True, max_length=32)
    unit_id: int = Field(foreign_key="unit.id", index=True)
    description: str = Field(sa_column=Column(Text, nullable=False))
    measure: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    owner_userid: str = Field(default="", max_length=64)
    deadline: date | None = None
    status: str = Field(default=PROBLEM_OPEN, max_length=8)
    created_at: datetime
    closed_at: datetime | None = None
    voided_at: datetime | None = None  # 作废 (or withdrawn, 撤回) then: kept, gone from lists and scores
    voided_by: str = Field(default="", max_length=64)
    void_reason: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))

    def overdue(self, today: date) -> bool:
        """超期: past its 整改时限 and not yet 销号."""
        return self.deadline is not None and self.deadline < today and self.status != PROBLEM_CLOSED


class ProblemProgress(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    problem_id: int = Field(foreign_key="problem.id", index=True)
    kind: str = Field(default=PROGRESS_NOTE, max_length=8)
    userid: str = Field(max_length=64)
    text: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime


# A 督办 item's states: 下发 -> 签收 -> 已反馈 -> 办结, or 已反馈 -> 退回 -> (反馈 again) 已反馈.
ITEM_ISSUED = "下发"
ITEM_SIGNED = "签收"
ITEM_ANSWERED = "已反馈"
ITEM_RETURNED = "退回"
ITEM_DONE = "办结"

# The steps of its timeline (ItemEvent.kind).
EVENT_ISSUE = "下发"
EVENT_SIGN = "签收"
EVENT_FEEDBACK = "反馈"
EVENT_RETURN = "退回"
EVENT_EXTEND_ASK = "延期申请"
EVENT_EXTEND_YES = "同意延期"
EVENT_EXTEND_NO = "不同意延期"
EVENT_DONE = "办结"
EVENT_LATE_ENTRY = "补录"  # an answer given off the bot (on paper), entered by an admin with its real time


class SupervisionItem(SQLModel, table=True):
    """A 督办单. `unit_id` is the 牵头单位 (scored on it); `partner_ids` the 配合单位 ("3,7").
    `deadline` is the current one (an agreed 延期 moves it); `ask_deadline` a 延期 asked for and
    not yet answered. `answered_at`: when the 反馈 that was accepted (办结) came."""

    __table_args__ = (Index("uq_supervisionitem_year_code", "year", "code", unique=True),)
    id: int | None = Field(default=None, primary_key=True)
    year: int | None = Field(default=None, sa_column=_year_column())
    code: str = Field(index=True, max_length=32)
    unit_id: int = Field(foreign_key="unit.id", index=True)
    content: str = Field(sa_column=Column(Text, nullable=False))
    deadline: date
    month: str = Field(max_length=7, index=True)
    created_by: str = Field(max_length=64)
    created_at: datetime
    status: str = Field(default=ITEM_ISSUED, max_length=8)
    partner_ids: str = Field(default="", max_length=255)
    ask_deadline: date | None = None
    answered_at: datetime | None = None
    closed_at: datetime | None = None
    voided_at: datetime | None = None  # 作废 (or withdrawn, 撤回) then: kept, gone from lists and scores
    voided_by: str = Field(default="", max_length=64)
    void_reason: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))

    @property
    def partners(self) -> list[int]:
        return [int(x) for x in self.partner_ids.split(",") if x]


class ItemEvent(SQLModel, table=True):
    """One step in a 督办 item's life (下发, 签收, 反馈, 退回, 延期申请, 同意延期, 不同意延期, 办结):
    who, when, and their words. Never updated."""

    id: int | None = Field(default=None, primary_key=True)
    item_id: int = Field(foreign_key="supervisionitem.id", index=True)
    kind: str = Field(max_length=8)
    userid: str = Field(max_length=64)
    text: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime


class ProcessedMessage(SQLModel, table=True):
    """A handled inbound message (by sender and MsgId) and the reply it got, so a retry is answered
    identically. Pruned once older than the replay window (server.max_clock_skew) and a margin."""

    userid: str = Field(primary_key=True, max_length=64)
    msg_id: str = Field(primary_key=True, max_length=64)
    reply: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime = Field(index=True)


class Outbox(SQLModel, table=True):
    """Every outbound message, written before it is sent. `key` makes enqueueing idempotent."""

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(unique=True, max_length=255)
    channel: str = Field(max_length=16)  # app | appchat | webhook | response_url
    target: str = Field(sa_column=Column(Text, nullable=False))  # a response_url can be long
    msgtype: str = Field(max_length=16)  # text | markdown | file | image | template_card | card_update
    payload: str = Field(sa_column=Column(Text, nullable=False))  # JSON; for a file, how to generate it
    filename: str = Field(default="", max_length=255)
    status: str = Field(default="pending", max_length=8, index=True)  # pending|sending|sent|failed
    attempts: int = 0
    next_attempt_at: datetime | None = Field(default=None, index=True)  # None: due at once
    lease_until: datetime | None = None
    last_error: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    created_at: datetime
    sent_at: datetime | None = None


class JobRun(SQLModel, table=True):
    """A claimed run of a scheduled job for one period: claimed before anything is sent."""

    __table_args__ = (UniqueConstraint("job", "period"),)
    id: int | None = Field(default=None, primary_key=True)
    job: str = Field(max_length=32)
    period: str = Field(max_length=16)
    scheduled_for: datetime
    claimed_at: datetime
    claimed_by: str = Field(max_length=64)
    finished_at: datetime | None = None
    messages: int = 0


RELEASE_REVIEW = "review"  # computed, shown to admins and each unit's 负责人, open to 申诉
RELEASE_HELD = "held"  # 暂缓 by an admin: not published until an admin says 发布
RELEASE_PUBLISHED = "published"  # broadcast; frozen from then on


class RankingRelease(SQLModel, table=True):
    """A month's ranking as computed at the ranking's time, frozen: later reports or imports do not
    change what is reviewed and published. `data` is the ranking as JSON (bot/campaign/release.py)."""

    id: int | None = Field(default=None, primary_key=True)
    month: str = Field(max_length=7, unique=True)
    status: str = Field(default=RELEASE_REVIEW, max_length=16)
    data: str = Field(sa_column=Column(Text, nullable=False))
    computed_at: datetime
    review_until: datetime
    published_at: datetime | None = None
    hold_reason: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    version: int = 1  # 重算 (in review) and 更正 (after publication) freeze it again; earlier ones: RankingVersion
    note: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))  # 更正's 说明
    changes: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))  # JSON: lines changed
    corrected_at: datetime | None = None


class RankingVersion(SQLModel, table=True):
    """An earlier version of a month's frozen ranking, kept when 重算 or 更正 replaced it."""

    __table_args__ = (UniqueConstraint("month", "version"),)
    id: int | None = Field(default=None, primary_key=True)
    month: str = Field(max_length=7, index=True)
    version: int
    status: str = Field(max_length=16)
    data: str = Field(sa_column=Column(Text, nullable=False))
    computed_at: datetime
    published_at: datetime | None = None
    note: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    replaced_by: str = Field(max_length=64)  # the admin whose 重算 / 更正 replaced it
    replaced_at: datetime


APPEAL_ACCEPTED = "采纳"
APPEAL_REJECTED = "驳回"


class Appeal(SQLModel, table=True):
    """A unit's 申诉 against its place in a month's ranking under review."""

    id: int | None = Field(default=None, primary_key=True)
    month: str = Field(max_length=7, index=True)
    unit_id: int = Field(foreign_key="unit.id", index=True)
    userid: str = Field(max_length=64)
    text: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime
    decision: str = Field(default="", max_length=8)  # "" (waiting), 采纳 or 驳回
    remark: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    decided_by: str = Field(default="", max_length=64)
    decided_at: datetime | None = None


COMMENT_ADMIN = "点评"  # an admin's comment on a unit for a review
COMMENT_SELF = "自评"  # the unit's own, from its 负责人


class ReviewComment(SQLModel, table=True):
    """A 点评 of a unit or its 自评 for one review: `period` is the review's, "2026-H1" (the mid-year
    review, June) or "2026" (the annual one, December). Never updated: the latest of a kind is the
    one the review shows, the earlier ones stay as history."""

    id: int | None = Field(default=None, primary_key=True)
    unit_id: int = Field(foreign_key="unit.id", index=True)
    period: str = Field(max_length=8, index=True)
    kind: str = Field(max_length=4)
    userid: str = Field(max_length=64)
    text: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime


class WebLink(SQLModel, table=True):
    """A one-time sign-in link (`duban link`): kept by the SHA-256 of its token, used at most once."""

    token_hash: str = Field(primary_key=True, max_length=64)
    userid: str = Field(max_length=64)
    expires_at: datetime
    used_at: datetime | None = None


class WebSession(SQLModel, table=True):
    """A signed-in browser of the pages: its cookie holds a random token, kept here by its SHA-256.
    It counts while it has not expired and the person still has the role and unit they signed in
    with; logout deletes it, and so does an import that changes their role or unit."""

    token_hash: str = Field(primary_key=True, max_length=64)
    userid: str = Field(index=True, max_length=64)
    role: str = Field(max_length=8)
    unit_id: int
    csrf: str = Field(max_length=64)  # the token every form of this session must carry
    expires_at: datetime


# Attachment.status: a picture or file someone sent the app, from its arrival to the file on disk.
ATTACH_HELD = "held"  # nothing to attach it to yet: waits ATTACH_MINUTES for 附件 <编号>
ATTACH_PENDING = "pending"  # to fetch from WeCom (media/get)
ATTACH_FETCHING = "fetching"  # claimed by a fetcher until lease_until
ATTACH_STORED = "stored"
ATTACH_REJECTED = "rejected"  # too large, or not an allowed type: the sender was told
ATTACH_FAILED = "failed"  # WeCom would not give it (expired media, retries used up): the sender was told
LISTS_CODE = "清单"  # Attachment.code of a file that is a unit's lists (bot/excel/lists.py), not evidence
ATTACH_MINUTES = 10  # a picture belongs to its sender's 汇报 / 整改 / 反馈 / 亮点 / 附件 made this recently


class Attachment(SQLModel, table=True):
    """Evidence for a task (T3), problem (P3), 督办 item (D3) or 亮点 (L3): `code`, "" while held.
    The bytes live under [storage] dir, named by their SHA-256 and the type their content shows,
    never by a name that came from the sender; `name` (WeCom's file name) is only shown."""

    id: int | None = Field(default=None, primary_key=True)
    userid: str = Field(max_length=64, index=True)
    unit_id: int | None = Field(default=None, foreign_key="unit.id", index=True)
    code: str = Field(default="", max_length=32, index=True)
    kind: str = Field(max_length=8)  # image | file: the message it came in
    msg_id: str = Field(default="", max_length=64)
    media_id: str = Field(sa_column=Column(Text, nullable=False))
    status: str = Field(default=ATTACH_HELD, max_length=8, index=True)
    attempts: int = 0
    next_attempt_at: datetime | None = None
    lease_until: datetime | None = None
    sha256: str = Field(default="", max_length=64)
    ext: str = Field(default="", max_length=8)
    size: int = 0
    name: str = Field(default="", max_length=255)
    error: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    created_at: datetime
    stored_at: datetime | None = None


class AttachIntent(SQLModel, table=True):
    """附件 <编号>: where the person's pictures go for the next ATTACH_MINUTES."""

    userid: str = Field(primary_key=True, max_length=64)
    code: str = Field(max_length=32)
    created_at: datetime


class Highlight(SQLModel, table=True):
    """A unit's 亮点 (典型经验): sent by its 负责人, picked by an admin (选用) for the next monthly
    broadcast (公开亮晒), which records its month in `shown_month`."""

    id: int | None = Field(default=None, primary_key=True)
    code: str = Field(unique=True, index=True, max_length=32)
    unit_id: int = Field(foreign_key="unit.id", index=True)
    userid: str = Field(max_length=64)
    title: str = Field(max_length=200)
    content: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime
    picked_at: datetime | None = None
    picked_by: str = Field(default="", max_length=64)
    shown_month: str = Field(default="", max_length=7)
    voided_at: datetime | None = None  # 作废 (or withdrawn, 撤回) then: kept, gone from lists and scores
    voided_by: str = Field(default="", max_length=64)
    void_reason: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))


class MonthFigures(SQLModel, table=True):
    """A finished month's scores, kept so that pages need not count them again
    (bot/campaign/months.py): the rated units in ranking order and, to start the next month from,
    the newest report of every task made before the month's end. `settings` digests the ranking
    settings, `inputs` the rest they were computed from besides the reports (tasks, units, 督办 items
    due in the month): another digest means they are stale. `report_mark` is the newest report id
    when they were last checked (`checked_at`): a report added later but timed before the month's
    end makes them stale too."""

    month: str = Field(primary_key=True, max_length=7)
    settings: str = Field(max_length=40)
    inputs: str = Field(max_length=40)
    report_mark: int
    checked_at: datetime
    units: str = Field(sa_column=Column(Text, nullable=False))  # JSON, rated units in ranking order
    carry: str = Field(sa_column=Column(Text, nullable=False))  # JSON, newest report per task at the end
    computed_at: datetime


class RankingSoFar(SQLModel, table=True):
    """The running month's ranking so far (截至目前) as a page last counted it, for every process
    to show while it is fresh (bot/campaign/months.py): `data` as release.freeze writes a ranking."""

    month: str = Field(primary_key=True, max_length=7)
    settings: str = Field(max_length=40)  # as MonthFigures.settings
    data: str = Field(sa_column=Column(Text, nullable=False))
    computed_at: datetime


CARD_ASK_MINUTES = 10  # a tap that asks for words (退回, 不同意延期, 暂缓) waits this long for the next message


class DecisionCard(SQLModel, table=True):
    """A WeCom template card (button_interaction) that asks one person for a decision (bot/cards.py).
    `subject` names the decision ("D3:extend", "P3:close", "ranking:2026-03"); every card of a
    subject is settled at once, by a tap or the typed command, and then shows `outcome`."""

    id: int | None = Field(default=None, primary_key=True)
    task_id: str = Field(unique=True, max_length=128)
    subject: str = Field(index=True, max_length=64)
    userid: str = Field(max_length=64)
    response_code: str = Field(default="", max_length=255)  # from message/send: updates this card once, 72 h
    sent_at: datetime | None = None
    outcome: str = Field(default="", max_length=255)  # "" while the decision is open
    created_at: datetime


class CardAsk(SQLModel, table=True):
    """A tapped button whose command needs words: the person's next message (within CARD_ASK_MINUTES)
    is appended to `command` ("return D3") and handled as typed."""

    userid: str = Field(primary_key=True, max_length=64)
    command: str = Field(max_length=255)
    task_id: str = Field(max_length=128)
    asked_at: datetime


# A unit's lists as its 负责人 sent them (清单), waiting for an admin: the unit's state is its newest
# submission's (none: 未提交).
LISTS_NONE = "未提交"
LISTS_WAITING = "待审核"
LISTS_RETURNED = "已退回"
LISTS_APPROVED = "已通过"
LISTS_REPLACED = "已替换"  # a later submission came while this one was waiting
LIST_STATES = (LISTS_NONE, LISTS_WAITING, LISTS_RETURNED, LISTS_APPROVED)


class ListSubmission(SQLModel, table=True):
    """One workbook a unit sent of its own 任务清单 and 问题清单 (bot/campaign/lists.py): checked as
    `duban import` checks, kept with its difference from what was stored then (`changes`, JSON: each
    row 新增, 修改 or 删除 with its values before and after), applied only when an admin says 通过."""

    id: int | None = Field(default=None, primary_key=True)
    unit_id: int = Field(foreign_key="unit.id", index=True)
    userid: str = Field(max_length=64)  # who sent it
    via: str = Field(default="chat", max_length=8)  # chat | web
    name: str = Field(default="", max_length=255)  # the file's name as sent: for showing only
    status: str = Field(default=LISTS_WAITING, max_length=8, index=True)
    changes: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime
    reviewed_by: str = Field(default="", max_length=64)
    reviewed_at: datetime | None = None
    opinion: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
