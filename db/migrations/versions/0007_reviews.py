"""the reviews' comments: 点评 by an admin and 自评 by a unit, per unit and review period

Revision ID: 0007
Revises: 0006
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'reviewcomment',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('unit_id', sa.Integer(), nullable=False),
        sa.Column('period', sqlmodel.sql.sqltypes.AutoString(length=8), nullable=False),
        sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=4), nullable=False),
        sa.Column('userid', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column('text', sa.Text(), nullable=False),
        sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(['unit_id'], ['unit.id'], ),
        sa.PrimaryKeyConstraint('id'),
    )
    with op.batch_alter_table('reviewcomment') as batch:
        batch.create_index(batch.f('ix_reviewcomment_unit_id'), ['unit_id'], unique=False)
        batch.create_index(batch.f('ix_reviewcomment_period'), ['period'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('reviewcomment') as batch:
        batch.drop_index(batch.f('ix_reviewcomment_period'))
        batch.drop_index(batch.f('ix_reviewcomment_unit_id'))
    op.drop_table('reviewcomment')
