"""督办 items have a life: state, 配合单位, 延期, and a timeline of events (which takes over feedback);
problem notes have a kind (整改, 申请销号, 确认销号, 退回)

Revision ID: 0006
Revises: 0005
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('problemprogress') as batch:
        batch.add_column(sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=8), nullable=False,
                                   server_default='整改'))
    with op.batch_alter_table('supervisionitem') as batch:
        batch.add_column(sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=8), nullable=False,
                                   server_default='下发'))
        batch.add_column(sa.Column('partner_ids', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False,
                                   server_default=''))
        batch.add_column(sa.Column('ask_deadline', sa.Date(), nullable=True))
        batch.add_column(sa.Column('answered_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
        batch.add_column(sa.Column('closed_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
    op.create_table(
        'itemevent',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('item_id', sa.Integer(), nullable=False),
        sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=8), nullable=False),
        sa.Column('userid', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column('text', sa.Text(), nullable=False),
        sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(['item_id'], ['supervisionitem.id'], ),
        sa.PrimaryKeyConstraint('id'),
    )
    with op.batch_alter_table('itemevent') as batch:
        batch.create_index(batch.f('ix_itemevent_item_id'), ['item_id'], unique=False)
    # The timeline so far: each item's 下发, and its answers. Until now an item was done with its
    # first answer: it is 办结 as of then, so the months already ranked keep their scores.
    op.execute("INSERT INTO itemevent (item_id, kind, userid, text, created_at) "
               "SELECT id, '下发', created_by, content, created_at FROM supervisionitem")
    op.execute("INSERT INTO itemevent (item_id, kind, userid, text, created_at) "
               "SELECT item_id, '反馈', userid, text, created_at FROM feedback ORDER BY id")
    op.execute("UPDATE supervisionitem SET status = '办结', "
               "answered_at = (SELECT min(created_at) FROM feedback WHERE feedback.item_id = supervisionitem.id), "
               "closed_at = (SELECT min(created_at) FROM feedback WHERE feedback.item_id = supervisionitem.id) "
               "WHERE id IN (SELECT item_id FROM feedback)")
    with op.batch_alter_table('feedback') as batch:
        batch.drop_index(batch.f('ix_feedback_item_id'))
    op.drop_table('feedback')


def downgrade() -> None:
    op.create_table(
        'feedback',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('item_id', sa.Integer(), nullable=False),
        sa.Column('userid', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column('text', sa.Text(), nullable=False),
        sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(['item_id'], ['supervisionitem.id'], ),
        sa.PrimaryKeyConstraint('id'),
    )
    with op.batch_alter_table('feedback') as batch:
        batch.create_index(batch.f('ix_feedback_item_id'), ['item_id'], unique=False)
    op.execute("INSERT INTO feedback (item_id, userid, text, created_at) "
               "SELECT item_id, userid, text, created_at FROM itemevent WHERE kind = '反馈' ORDER BY id")
    with op.batch_alter_table('itemevent') as batch:
        batch.drop_index(batch.f('ix_itemevent_item_id'))
    op.drop_table('itemevent')
    with op.batch_alter_table('supervisionitem') as batch:
        batch.drop_column('closed_at')
        batch.drop_column('answered_at')
        batch.drop_column('ask_deadline')
        batch.drop_column('partner_ids')
        batch.drop_column('status')
    with op.batch_alter_table('problemprogress') as batch:
        batch.drop_column('kind')
