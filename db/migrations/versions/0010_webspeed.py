"""Finished months' scores kept (monthfigures) and the running month's ranking so far
(rankingsofar), so the web pages do not count a year again

Revision ID: 0010
Revises: 0009
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'monthfigures',
        sa.Column('month', sqlmodel.sql.sqltypes.AutoString(length=7), nullable=False),
        sa.Column('settings', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column('inputs', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column('report_mark', sa.Integer(), nullable=False),
        sa.Column('checked_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column('units', sa.Text(), nullable=False),
        sa.Column('carry', sa.Text(), nullable=False),
        sa.Column('computed_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint('month'),
    )
    op.create_table(
        'rankingsofar',
        sa.Column('month', sqlmodel.sql.sqltypes.AutoString(length=7), nullable=False),
        sa.Column('settings', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column('data', sa.Text(), nullable=False),
        sa.Column('computed_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint('month'),
    )


def downgrade() -> None:
    op.drop_table('rankingsofar')
    op.drop_table('monthfigures')
