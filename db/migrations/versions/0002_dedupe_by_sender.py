"""dedupe inbound messages by sender and MsgId; index answers by time for pruning

Revision ID: 0002
Revises: 0001
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def _table(name: str, key: tuple[str, ...]) -> None:
    op.create_table(name,
    sa.Column('msg_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('userid', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('reply', sa.Text(), nullable=False),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint(*key, name=f'pk_{name}')
    )


def _move(key: tuple[str, ...]) -> None:
    """Rebuild processedmessage with another primary key, keeping its rows (SQLite cannot alter one)."""
    _table('processedmessage_new', key)
    op.execute('INSERT INTO processedmessage_new (msg_id, userid, reply, created_at) '
               'SELECT msg_id, userid, reply, created_at FROM processedmessage')
    op.drop_table('processedmessage')
    op.rename_table('processedmessage_new', 'processedmessage')


def upgrade() -> None:
    _move(('userid', 'msg_id'))
    op.create_index('ix_processedmessage_created_at', 'processedmessage', ['created_at'])


def downgrade() -> None:
    op.drop_index('ix_processedmessage_created_at', 'processedmessage')
    _move(('msg_id',))
