"""governance: project memberships, namespace grants, projects of builds and deployments,
model cards, lineage edges, access events

Existing installs keep working: users with an admin key become platform admins; every other
user becomes a member of every existing project (editor or viewer, after their keys); a
project named ``default`` holds the builds and deployments made before projects owned them
and may write every namespace (``*``).

Revision ID: 0008
Revises: 0007
"""

import uuid
from datetime import UTC, datetime

from alembic import op
import sqlalchemy as sa


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

DEFAULT_PROJECT = 'default'


def _id_column() -> sa.Column:
    return sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'),
                     autoincrement=True, nullable=False)


def upgrade() -> None:
    op.create_table('memberships',
    sa.Column('project_id', sa.String(length=36), nullable=False),
    sa.Column('user_id', sa.String(length=36), nullable=False),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('created_by', sa.String(length=255), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['project_id'], ['projects.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('project_id', 'user_id')
    )
    op.create_index('ix_memberships_user_id', 'memberships', ['user_id'])
    op.create_table('namespace_grants',
    sa.Column('namespace', sa.String(length=255), nullable=False),
    sa.Column('project_id', sa.String(length=36), nullable=False),
    sa.Column('access', sa.String(length=8), nullable=False),
    sa.Column('created_by', sa.String(length=255), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['project_id'], ['projects.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('namespace', 'project_id')
    )
    op.create_index('ix_namespace_grants_project_id', 'namespace_grants', ['project_id'])
    for table in ('builds', 'deployments'):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column('project_id', sa.String(length=36), nullable=True))
            batch.create_index(f'ix_{table}_project_id', ['project_id'])
    op.create_table('model_cards',
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('project_id', sa.String(length=36), nullable=False),
    sa.Column('owner', sa.String(length=255), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('tags', sa.JSON(), nullable=False),
    sa.Column('use_case', sa.Text(), nullable=False),
    sa.Column('risk_level', sa.String(length=16), nullable=False),
    sa.Column('extra', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('name')
    )
    op.create_index('ix_model_cards_project_id', 'model_cards', ['project_id'])
    op.create_table('lineage_edges',
    _id_column(),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('src', sa.String(length=512), nullable=False),
    sa.Column('dst', sa.String(length=512), nullable=False),
    sa.Column('relation', sa.String(length=64), nullable=False),
    sa.Column('actor', sa.String(length=255), nullable=False),
    sa.Column('detail', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_lineage_edges_src', 'lineage_edges', ['src'])
    op.create_index('ix_lineage_edges_dst', 'lineage_edges', ['dst'])
    op.create_table('access_events',
    _id_column(),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('user', sa.String(length=255), nullable=False),
    sa.Column('key_id', sa.String(length=64), nullable=False),
    sa.Column('run_id', sa.String(length=36), nullable=False),
    sa.Column('source', sa.String(length=255), nullable=False),
    sa.Column('action', sa.String(length=16), nullable=False),
    sa.Column('resource', sa.String(length=512), nullable=False),
    sa.Column('snapshot_id', sa.BigInteger(), nullable=True),
    sa.Column('via', sa.String(length=32), nullable=False),
    sa.Column('detail', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_access_events_at', 'access_events', ['at'])
    op.create_index('ix_access_events_resource', 'access_events', ['resource'])
    _adopt_existing()


def _adopt_existing() -> None:
    """Put what existed before into projects its holders reach."""
    bind = op.get_bind()
    now = datetime.now(UTC)
    if not any(bind.execute(sa.text(f"SELECT 1 FROM {table} LIMIT 1")).first()
               for table in ("users", "builds", "deployments")):
        return  # a new install: the default project is made when first needed
    default = bind.execute(sa.text("SELECT id FROM projects WHERE name = :n"),
                           {"n": DEFAULT_PROJECT}).scalar()
    if default is None:
        default = str(uuid.uuid4())
        # A relative path: resolved under the projects root, made when the server starts.
        bind.execute(sa.text("INSERT INTO projects (id, name, description, path, created_at, "
                             "updated_at) VALUES (:id, :n, :d, :p, :t, :t)"),
                     {"id": default, "n": DEFAULT_PROJECT, "p": DEFAULT_PROJECT, "t": now,
                      "d": "Models, deployments and tables from before projects owned them"})
    bind.execute(sa.text("UPDATE builds SET project_id = :p"), {"p": default})
    bind.execute(sa.text("UPDATE deployments SET project_id = :p"), {"p": default})
    bind.execute(sa.text("INSERT INTO namespace_grants (namespace, project_id, access, "
                         "created_by, created_at) VALUES ('*', :p, 'write', 'migration', :t)"),
                 {"p": default, "t": now})
    users = bind.execute(sa.text("SELECT id FROM users")).scalars().all()
    projects = bind.execute(sa.text("SELECT id FROM projects")).scalars().all()
    for user_id in users:
        roles = set(bind.execute(sa.text("SELECT role FROM api_keys WHERE user_id = :u AND "
                                         "revoked = :f"), {"u": user_id, "f": False}).scalars())
        if "admin" in roles:
            bind.execute(sa.text("UPDATE users SET role = 'admin' WHERE id = :u"),
                         {"u": user_id})
            continue
        bind.execute(sa.text("UPDATE users SET role = 'user' WHERE id = :u"), {"u": user_id})
        role = "editor" if "editor" in roles else "viewer"
        for project_id in projects:
            bind.execute(sa.text("INSERT INTO memberships (project_id, user_id, role, "
                                 "created_by, created_at) VALUES (:p, :u, :r, 'migration', "
                                 ":t)"), {"p": project_id, "u": user_id, "r": role, "t": now})


def downgrade() -> None:
    op.drop_index('ix_access_events_resource', 'access_events')
    op.drop_index('ix_access_events_at', 'access_events')
    op.drop_table('access_events')
    op.drop_index('ix_lineage_edges_dst', 'lineage_edges')
    op.drop_index('ix_lineage_edges_src', 'lineage_edges')
    op.drop_table('lineage_edges')
    op.drop_index('ix_model_cards_project_id', 'model_cards')
    op.drop_table('model_cards')
    for table in ('deployments', 'builds'):
        with op.batch_alter_table(table) as batch:
            batch.drop_index(f'ix_{table}_project_id')
            batch.drop_column('project_id')
    op.drop_index('ix_namespace_grants_project_id', 'namespace_grants')
    op.drop_table('namespace_grants')
    op.drop_index('ix_memberships_user_id', 'memberships')
    op.drop_table('memberships')
