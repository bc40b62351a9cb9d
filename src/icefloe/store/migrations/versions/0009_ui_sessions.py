"""web UI: sign-in sessions, one-time sign-in codes, the key of each audit event,
monitoring points

A session is found by a public prefix and checked against a salted hash of its secret, like
an API key; it dies with its key. The audit log records which key acted, so the UI can
filter by key as well as by person. Each monitoring sweep keeps its figures as points, so
charts over time read a few hundred rows, never the prediction log.

Revision ID: 0009
Revises: 0008
"""

from alembic import op
import sqlalchemy as sa


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('ui_sessions',
    sa.Column('prefix', sa.String(length=16), nullable=False),
    sa.Column('secret_hash', sa.String(length=128), nullable=False),
    sa.Column('salt', sa.String(length=64), nullable=False),
    sa.Column('key_id', sa.String(length=36), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['key_id'], ['api_keys.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('prefix')
    )
    op.create_index('ix_ui_sessions_expires_at', 'ui_sessions', ['expires_at'])
    op.create_table('sign_in_codes',
    sa.Column('prefix', sa.String(length=16), nullable=False),
    sa.Column('secret_hash', sa.String(length=128), nullable=False),
    sa.Column('salt', sa.String(length=64), nullable=False),
    sa.Column('key_id', sa.String(length=36), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['key_id'], ['api_keys.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('prefix')
    )
    op.create_table('monitoring_points',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True,
              nullable=False),
    sa.Column('deployment_id', sa.String(length=36), nullable=False),
    sa.Column('at_ms', sa.BigInteger(), nullable=False),
    sa.Column('window_spec', sa.String(length=16), nullable=False),
    sa.Column('metric', sa.String(length=64), nullable=False),
    sa.Column('feature', sa.String(length=255), nullable=False),
    sa.Column('value', sa.Float(), nullable=True),
    sa.Column('samples', sa.Integer(), nullable=False),
    sa.Column('model_version', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_monitoring_points_deployment_id_at_ms', 'monitoring_points',
                    ['deployment_id', 'at_ms'])
    with op.batch_alter_table('audit_events') as batch:
        batch.add_column(sa.Column('key_id', sa.String(length=36), nullable=True))
        batch.create_index('ix_audit_events_actor', ['actor'])


def downgrade() -> None:
    with op.batch_alter_table('audit_events') as batch:
        batch.drop_index('ix_audit_events_actor')
        batch.drop_column('key_id')
    op.drop_index('ix_monitoring_points_deployment_id_at_ms', 'monitoring_points')
    op.drop_table('monitoring_points')
    op.drop_table('sign_in_codes')
    op.drop_index('ix_ui_sessions_expires_at', 'ui_sessions')
    op.drop_table('ui_sessions')
