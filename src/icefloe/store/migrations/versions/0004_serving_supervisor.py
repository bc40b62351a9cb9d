"""why a deployment is not as asked, and aggregate metrics

Revision ID: 0004
Revises: 0003
"""

from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('deployments') as batch:
        batch.add_column(sa.Column('reason', sa.Text(), nullable=False, server_default=''))
    op.create_table('aggregate_metrics',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True,
              nullable=False),
    sa.Column('deployment_id', sa.String(length=36), nullable=False),
    sa.Column('start_timestamp_ms', sa.BigInteger(), nullable=False),
    sa.Column('end_timestamp_ms', sa.BigInteger(), nullable=False),
    sa.Column('metrics', sa.JSON(), nullable=False),
    sa.Column('created_by', sa.String(length=255), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_aggregate_metrics_deployment_time', 'aggregate_metrics',
                    ['deployment_id', 'start_timestamp_ms'])


def downgrade() -> None:
    op.drop_index('ix_aggregate_metrics_deployment_time', 'aggregate_metrics')
    op.drop_table('aggregate_metrics')
    with op.batch_alter_table('deployments') as batch:
        batch.drop_column('reason')
