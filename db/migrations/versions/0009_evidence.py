"""evidence: pictures and files people send the app (attachment), where their next ones go (附件 <编号>:
attachintent), and units' 亮点 (highlight)

Revision ID: 0009
Revises: 0008
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('attachintent',
    sa.Column('userid', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('code', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('userid')
    )
    op.create_table('attachment',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('userid', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('unit_id', sa.Integer(), nullable=True),
    sa.Column('code', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=8), nullable=False),
    sa.Column('msg_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('media_id', sa.Text(), nullable=False),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=8), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.Column('lease_until', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.Column('sha256', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('ext', sqlmodel.sql.sqltypes.AutoString(length=8), nullable=False),
    sa.Column('size', sa.Integer(), nullable=False),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
    sa.Column('error', sa.Text(), nullable=False),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('stored_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.ForeignKeyConstraint(['unit_id'], ['unit.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('attachment', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_attachment_code'), ['code'], unique=False)
        batch_op.create_index(batch_op.f('ix_attachment_status'), ['status'], unique=False)
        batch_op.create_index(batch_op.f('ix_attachment_unit_id'), ['unit_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_attachment_userid'), ['userid'], unique=False)
    op.create_table('highlight',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('code', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('unit_id', sa.Integer(), nullable=False),
    sa.Column('userid', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('title', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('content', sa.Text(), nullable=False),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('picked_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.Column('picked_by', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('shown_month', sqlmodel.sql.sqltypes.AutoString(length=7), nullable=False),
    sa.ForeignKeyConstraint(['unit_id'], ['unit.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('highlight', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_highlight_code'), ['code'], unique=True)
        batch_op.create_index(batch_op.f('ix_highlight_unit_id'), ['unit_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('highlight', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_highlight_unit_id'))
        batch_op.drop_index(batch_op.f('ix_highlight_code'))

    op.drop_table('highlight')
    with op.batch_alter_table('attachment', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_attachment_userid'))
        batch_op.drop_index(batch_op.f('ix_attachment_unit_id'))
        batch_op.drop_index(batch_op.f('ix_attachment_status'))
        batch_op.drop_index(batch_op.f('ix_attachment_code'))

    op.drop_table('attachment')
    op.drop_table('attachintent')
