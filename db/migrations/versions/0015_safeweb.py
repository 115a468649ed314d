"""server-side sessions of the web pages (websession), ended by logout or a role change

Revision ID: 0015
Revises: 0014
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'websession',
        sa.Column('token_hash', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column('userid', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column('role', sqlmodel.sql.sqltypes.AutoString(length=8), nullable=False),
        sa.Column('unit_id', sa.Integer(), nullable=False),
        sa.Column('csrf', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column('expires_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint('token_hash'),
    )
    op.create_index(op.f('ix_websession_userid'), 'websession', ['userid'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_websession_userid'), table_name='websession')
    op.drop_table('websession')
