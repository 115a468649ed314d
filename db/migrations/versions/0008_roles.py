"""the 分管领导's units from the roster's 分管单位 (leaderunit)

Revision ID: 0008
Revises: 0007
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'leaderunit',
        sa.Column('userid', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column('unit_id', sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(['unit_id'], ['unit.id'], ),
        sa.ForeignKeyConstraint(['userid'], ['member.userid'], ),
        sa.PrimaryKeyConstraint('userid', 'unit_id'),
    )


def downgrade() -> None:
    op.drop_table('leaderunit')
