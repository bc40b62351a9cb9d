"""run tokens, who a run acts as, secret job variables, job creators

Revision ID: 0005
Revises: 0004
"""

from alembic import op
import sqlalchemy as sa


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('jobs') as batch:
        batch.add_column(sa.Column('secret_environment', sa.Text(), nullable=False,
                                   server_default=''))
        batch.add_column(sa.Column('created_by', sa.String(length=255), nullable=False,
                                   server_default=''))
    with op.batch_alter_table('runs') as batch:
        batch.add_column(sa.Column('run_as', sa.String(length=255), nullable=False,
                                   server_default=''))
    op.create_table('run_tokens',
    sa.Column('run_id', sa.String(length=36), nullable=False),
    sa.Column('prefix', sa.String(length=16), nullable=False),
    sa.Column('secret_hash', sa.String(length=128), nullable=False),
    sa.Column('salt', sa.String(length=64), nullable=False),
    sa.Column('user', sa.String(length=255), nullable=False),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('project_id', sa.String(length=36), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['run_id'], ['runs.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('run_id'),
    sa.UniqueConstraint('prefix')
    )


def downgrade() -> None:
    op.drop_table('run_tokens')
    with op.batch_alter_table('runs') as batch:
        batch.drop_column('run_as')
    with op.batch_alter_table('jobs') as batch:
        batch.drop_column('created_by')
        batch.drop_column('secret_environment')
