"""spark-submit jobs: the Spark settings of a job and of a run; audit key ids of run tokens

A job of kind spark-submit runs as a Spark application; its driver and executor settings
live with the job, and a run (the runs API, CDE's overrides) may set its own over them.
An audit event's acting key may be a run token (``run/<run id>``, 40 characters), which
PostgreSQL refused in the 36 characters 0009 gave it.

Revision ID: 0010
Revises: 0009
"""

from alembic import op
import sqlalchemy as sa


revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('jobs') as batch:
        batch.add_column(sa.Column('spark', sa.JSON(), nullable=False, server_default='{}'))
    with op.batch_alter_table('runs') as batch:
        batch.add_column(sa.Column('spark', sa.JSON(), nullable=True))
    with op.batch_alter_table('audit_events') as batch:
        batch.alter_column('key_id', type_=sa.String(length=64),
                           existing_type=sa.String(length=36), existing_nullable=True)


def downgrade() -> None:
    with op.batch_alter_table('audit_events') as batch:
        batch.alter_column('key_id', type_=sa.String(length=36),
                           existing_type=sa.String(length=64), existing_nullable=True)
    with op.batch_alter_table('runs') as batch:
        batch.drop_column('spark')
    with op.batch_alter_table('jobs') as batch:
        batch.drop_column('spark')
