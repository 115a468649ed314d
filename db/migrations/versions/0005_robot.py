"""the smart robot: a unit's group (aibot_chatid); outbox targets may be response_urls

Revision ID: 0005
Revises: 0004
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('unit') as batch:
        batch.add_column(sa.Column('aibot_chatid', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False,
                                   server_default=''))
    with op.batch_alter_table('outbox') as batch:
        batch.alter_column('target', type_=sa.Text(), existing_type=sqlmodel.sql.sqltypes.AutoString(length=255),
                           existing_nullable=False)


def downgrade() -> None:
    with op.batch_alter_table('outbox') as batch:
        batch.alter_column('target', type_=sqlmodel.sql.sqltypes.AutoString(length=255), existing_type=sa.Text(),
                           existing_nullable=False)
    with op.batch_alter_table('unit') as batch:
        batch.drop_column('aibot_chatid')
