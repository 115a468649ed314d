"""A unit's lists sent by its 负责人 and reviewed by an admin (listsubmission)

Revision ID: 0014
Revises: 0013
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'listsubmission',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('unit_id', sa.Integer(), nullable=False),
        sa.Column('userid', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column('via', sqlmodel.sql.sqltypes.AutoString(length=8), nullable=False),
        sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=8), nullable=False),
        sa.Column('changes', sa.Text(), nullable=False),
        sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column('reviewed_by', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column('reviewed_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column('opinion', sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(['unit_id'], ['unit.id']),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_listsubmission_unit_id', 'listsubmission', ['unit_id'])
    op.create_index('ix_listsubmission_status', 'listsubmission', ['status'])


def downgrade() -> None:
    op.drop_index('ix_listsubmission_status', 'listsubmission')
    op.drop_index('ix_listsubmission_unit_id', 'listsubmission')
    op.drop_table('listsubmission')
