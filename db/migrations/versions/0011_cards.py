"""WeCom template cards that ask for a decision (decisioncard) and taps waiting for words (cardask)

Revision ID: 0011
Revises: 0010
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'decisioncard',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('task_id', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column('subject', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column('userid', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column('response_code', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column('sent_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column('outcome', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('task_id'),
    )
    op.create_index(op.f('ix_decisioncard_subject'), 'decisioncard', ['subject'], unique=False)
    op.create_table(
        'cardask',
        sa.Column('userid', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column('command', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column('task_id', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column('asked_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint('userid'),
    )


def downgrade() -> None:
    op.drop_table('cardask')
    op.drop_index(op.f('ix_decisioncard_subject'), table_name='decisioncard')
    op.drop_table('decisioncard')
