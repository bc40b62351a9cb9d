"""run requests (idempotency keys, per-run arguments and environment), CDE run numbers,
short-lived access tokens

Revision ID: 0007
Revises: 0006
"""

from alembic import op
import sqlalchemy as sa


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('runs') as batch:
        batch.add_column(sa.Column('idempotency_key', sa.String(length=255), nullable=True))
        batch.add_column(sa.Column('arguments', sa.Text(), nullable=True))
        batch.add_column(sa.Column('environment', sa.JSON(), nullable=True))
        batch.create_unique_constraint('uq_runs_job_idempotency_key',
                                       ['job_id', 'idempotency_key'])
    op.create_table('run_numbers',
    sa.Column('number', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('run_id', sa.String(length=36), nullable=False),
    sa.ForeignKeyConstraint(['run_id'], ['runs.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('number'),
    sa.UniqueConstraint('run_id'),
    # Never reuse a number (SQLite would reuse the highest after a delete): an old poller
    # or kill must not reach a newer run.
    sqlite_autoincrement=True
    )
    op.create_table('access_tokens',
    sa.Column('prefix', sa.String(length=16), nullable=False),
    sa.Column('secret_hash', sa.String(length=128), nullable=False),
    sa.Column('salt', sa.String(length=64), nullable=False),
    sa.Column('key_id', sa.String(length=36), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['key_id'], ['api_keys.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('prefix')
    )
    op.create_index('ix_access_tokens_expires_at', 'access_tokens', ['expires_at'])


def downgrade() -> None:
    op.drop_index('ix_access_tokens_expires_at', 'access_tokens')
    op.drop_table('access_tokens')
    op.drop_table('run_numbers')
    with op.batch_alter_table('runs') as batch:
        batch.drop_constraint('uq_runs_job_idempotency_key', type_='unique')
        batch.drop_column('environment')
        batch.drop_column('arguments')
        batch.drop_column('idempotency_key')
