"""the 分管领导's units from the roster's 分管单位 (leaderunit)

Revision ID: 0007_roles
Revises: 0006
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = '0007_roles'
down_revision = '0006'
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
