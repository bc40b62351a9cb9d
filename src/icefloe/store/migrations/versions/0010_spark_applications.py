"""spark-submit jobs: the Spark settings of a job and of a run

A job of kind spark-submit runs as a Spark application; its driver and executor settings
live with the job, and a run (the runs API, CDE's overrides) may set its own over them.

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


def downgrade() -> None:
    with op.batch_alter_table('runs') as batch:
        batch.drop_column('spark')
    with op.batch_alter_table('jobs') as batch:
        batch.drop_column('spark')
