"""Appeals that decide and mistakes that can be undone: an appeal's decision (采纳 / 驳回), a report
entered afterwards (补录) with who entered it and for which appeal, a ranking's versions (重算, 更正),
and 作废 / 撤回 of tasks, problems, 督办 items and 亮点

Revision ID: 0013
Revises: 0012
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None

_VOIDABLE = ('task', 'problem', 'supervisionitem', 'highlight')


def _text(name: str) -> sa.Column:
    return sa.Column(name, sa.Text(), nullable=False, server_default='')


def upgrade() -> None:
    for table in _VOIDABLE:
        with op.batch_alter_table(table) as batch_op:
            batch_op.add_column(sa.Column('voided_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
            batch_op.add_column(sa.Column('voided_by', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False,
                                          server_default=''))
            batch_op.add_column(_text('void_reason'))
    with op.batch_alter_table('report') as batch_op:
        batch_op.add_column(sa.Column('entered_by', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False,
                                      server_default=''))
        batch_op.add_column(sa.Column('entered_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column('appeal_id', sa.Integer(), nullable=True))
    with op.batch_alter_table('appeal') as batch_op:
        batch_op.add_column(sa.Column('decision', sqlmodel.sql.sqltypes.AutoString(length=8), nullable=False,
                                      server_default=''))
        batch_op.add_column(_text('remark'))
        batch_op.add_column(sa.Column('decided_by', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False,
                                      server_default=''))
        batch_op.add_column(sa.Column('decided_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
    with op.batch_alter_table('rankingrelease') as batch_op:
        batch_op.add_column(sa.Column('version', sa.Integer(), nullable=False, server_default='1'))
        batch_op.add_column(_text('note'))
        batch_op.add_column(_text('changes'))
        batch_op.add_column(sa.Column('corrected_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
    op.create_table(
        'rankingversion',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('month', sqlmodel.sql.sqltypes.AutoString(length=7), nullable=False),
        sa.Column('version', sa.Integer(), nullable=False),
        sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column('data', sa.Text(), nullable=False),
        sa.Column('computed_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column('published_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column('note', sa.Text(), nullable=False),
        sa.Column('replaced_by', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column('replaced_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('month', 'version'),
    )
    with op.batch_alter_table('rankingversion') as batch_op:
        batch_op.create_index(batch_op.f('ix_rankingversion_month'), ['month'], unique=False)


def downgrade() -> None:
    op.drop_table('rankingversion')
    with op.batch_alter_table('rankingrelease') as batch_op:
        for c in ('corrected_at', 'changes', 'note', 'version'):
            batch_op.drop_column(c)
    with op.batch_alter_table('appeal') as batch_op:
        for c in ('decided_at', 'decided_by', 'remark', 'decision'):
            batch_op.drop_column(c)
    with op.batch_alter_table('report') as batch_op:
        for c in ('appeal_id', 'entered_at', 'entered_by'):
            batch_op.drop_column(c)
    for table in _VOIDABLE:
        with op.batch_alter_table(table) as batch_op:
            for c in ('void_reason', 'voided_by', 'voided_at'):
                batch_op.drop_column(c)
