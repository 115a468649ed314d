"""Campaign years: a campaign table (year, first_month) and a year on tasks, problems and 督办 items,
whose codes become unique within a year. Existing rows belong to one campaign: the year of the
earliest task start (else 督办 deadline, else problem), recorded in the campaign table.

Revision ID: 0012
Revises: 0011
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None

TABLES = ('task', 'problem', 'supervisionitem')


def _data_year(conn) -> int | None:
    for query in ("SELECT MIN(start_date) FROM task", "SELECT MIN(deadline) FROM supervisionitem",
                  "SELECT MIN(created_at) FROM problem"):
        first = conn.execute(sa.text(query)).scalar()
        if first is not None:
            return int(str(first)[:4])
    return None


def upgrade() -> None:
    op.create_table(
        'campaign',
        sa.Column('year', sa.Integer(), autoincrement=False, nullable=False),
        sa.Column('first_month', sqlmodel.sql.sqltypes.AutoString(length=7), nullable=False),
        sa.Column('started_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint('year'),
    )
    conn = op.get_bind()
    year = _data_year(conn)
    if year is not None:
        conn.execute(sa.text("INSERT INTO campaign (year, first_month) VALUES (:y, :m)"),
                     {"y": year, "m": f"{year}-03"})
    # Plain DDL, no table rebuilt (SQLite rebuilds a table for most ALTERs, which its foreign keys forbid here):
    # the column comes with a server default to fill existing rows; every insert gives the year.
    for table in TABLES:
        op.add_column(table, sa.Column('year', sa.Integer(), nullable=False, server_default='0'))
        conn.execute(sa.text(f"UPDATE {table} SET year = :y"), {"y": year or 0})
        op.drop_index(f'ix_{table}_code', table_name=table)
        op.create_index(f'ix_{table}_code', table, ['code'], unique=False)
        op.create_index(f'uq_{table}_year_code', table, ['year', 'code'], unique=True)
    # A unit's tasks of a year (the count still to report, on every 汇报): without this index SQLite
    # would walk the whole year's tasks by the year alone.
    op.create_index('ix_task_unit_year', 'task', ['unit_id', 'year'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_task_unit_year', table_name='task')
    for table in TABLES:
        op.drop_index(f'uq_{table}_year_code', table_name=table)
        op.drop_index(f'ix_{table}_code', table_name=table)
        op.create_index(f'ix_{table}_code', table, ['code'], unique=True)
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column('year')
    op.drop_table('campaign')
