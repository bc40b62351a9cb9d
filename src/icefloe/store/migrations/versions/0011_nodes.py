"""several nodes: each control plane's lease, renewed by heartbeat

Control planes sharing one database register as nodes; a node whose heartbeat stops loses
its lease, and the others take over its runs and replicas. A run's owner is its node.

Revision ID: 0011
Revises: 0010
"""

from alembic import op
import sqlalchemy as sa


revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('nodes',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('url', sa.Text(), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('heartbeat_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_nodes_heartbeat_at', 'nodes', ['heartbeat_at'])


def downgrade() -> None:
    op.drop_index('ix_nodes_heartbeat_at', table_name='nodes')
    op.drop_table('nodes')
