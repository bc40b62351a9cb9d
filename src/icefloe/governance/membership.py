"""Users, project members and the default project (platform DB).

Users are named and made by an admin; they sign in with API keys only (no passwords are
stored). A project's members have a role there: ``owner`` (manages members), ``editor``
(changes jobs, runs, builds, deployments) or ``viewer`` (reads). Platform admins reach every
project without being members.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from icefloe.auth.principals import PROJECT_ROLES
from icefloe.config import Settings
from icefloe.errors import ConflictError, InvalidInputError, NotFoundError
from icefloe.names import valid_name
from icefloe.store import repo
from icefloe.store.orm import ApiKey, Membership, Project, User
from icefloe.timefmt import iso_utc

DEFAULT_PROJECT = "default"
PLATFORM_ROLES = ("admin", "user")


def create_user(s: Session, name: str, *, admin: bool = False) -> User:
    """Make a user (no keys yet: ``POST /api/v2/keys`` gives them one).

    Raises:
        ConflictError: The name is taken.
    """
    valid_name("user", name)
    if s.scalar(select(User).where(User.name == name)) is not None:
        raise ConflictError(f"user {name!r} already exists")
    user = User(id=repo.new_id(), name=name, role="admin" if admin else "user",
                created_at=repo.now())
    s.add(user)
    s.flush()
    return user


def get_user(s: Session, name: str) -> User:
    """A user by name (404 naming it)."""
    user = s.scalar(select(User).where(User.name == name))
    if user is None:
        raise NotFoundError(f"user {name[:255]!r} does not exist")
    return user


def user_json(s: Session, user: User) -> dict[str, Any]:
    """A user with their projects and how many live keys they hold."""
    projects = s.execute(select(Project.id, Project.name, Membership.role)
                         .join(Membership, Membership.project_id == Project.id)
                         .where(Membership.user_id == user.id).order_by(Project.name))
    keys = s.scalar(select(func.count()).select_from(ApiKey).where(
        ApiKey.user_id == user.id, ApiKey.revoked.is_(False)))
    return {"id": user.id, "name": user.name, "admin": user.role == "admin",
            "projects": [{"id": pid, "name": pname, "role": role}
                         for pid, pname, role in projects],
            "keys": keys, "created_at": iso_utc(user.created_at)}


def list_users(s: Session) -> list[User]:
    """Every user, by name."""
    return list(s.scalars(select(User).order_by(User.name)))


def set_member(s: Session, project_id: str, user_name: str, role: str, *,
               by: str = "") -> Membership:
    """Give a user a role in a project (adding or changing their membership).

    Raises:
        InvalidInputError: An unknown role.
        NotFoundError: No such user.
        ConflictError: The change would leave the project without an owner.
    """
    if role not in PROJECT_ROLES:
        raise InvalidInputError(f"role must be one of {', '.join(PROJECT_ROLES)}, "
                                f"got {role[:50]!r}")
    user = get_user(s, user_name)
    member = s.get(Membership, (project_id, user.id))
    if member is None:
        member = Membership(project_id=project_id, user_id=user.id, role=role, created_by=by,
                            created_at=repo.now())
        s.add(member)
    else:
        if member.role == "owner" and role != "owner":
            _keep_an_owner(s, project_id, user_name)
        member.role = role
    s.flush()
    return member


def remove_member(s: Session, project_id: str, user_name: str) -> None:
    """Take a user out of a project.

    Raises:
        NotFoundError: The user is not a member.
        ConflictError: They are its last owner.
    """
    user = get_user(s, user_name)
    member = s.get(Membership, (project_id, user.id))
    if member is None:
        raise NotFoundError(f"user {user_name!r} is not a member of this project")
    if member.role == "owner":
        _keep_an_owner(s, project_id, user_name)
    s.delete(member)


def _keep_an_owner(s: Session, project_id: str, user_name: str) -> None:
    owners = s.scalar(select(func.count()).select_from(Membership).where(
        Membership.project_id == project_id, Membership.role == "owner"))
    if (owners or 0) <= 1:
        raise ConflictError(f"user {user_name!r} is the project's last owner; make someone "
                            "else owner first")


def list_members(s: Session, project_id: str) -> list[dict[str, Any]]:
    """A project's members with their roles."""
    rows = s.execute(select(User.name, Membership.role, Membership.created_by,
                            Membership.created_at)
                     .join(User, User.id == Membership.user_id)
                     .where(Membership.project_id == project_id).order_by(User.name))
    return [{"user": name, "role": role, "added_by": by, "added_at": iso_utc(at)}
            for name, role, by, at in rows]


def members_by_project(s: Session, project_ids: list[str]) -> dict[str, list[tuple[str, str]]]:
    """``project id -> [(user, role)]`` for some projects."""
    out: dict[str, list[tuple[str, str]]] = {p: [] for p in project_ids}
    rows = s.execute(select(Membership.project_id, User.name, Membership.role)
                     .join(User, User.id == Membership.user_id)
                     .where(Membership.project_id.in_(project_ids)))
    for pid, name, role in rows:
        out[pid].append((name, role))
    return out


def default_project(s: Session, settings: Settings) -> Project:
    """The project named ``default``, made (with its folder) the first time it is needed:
    it holds builds, deployments and models nobody put in a project."""
    from icefloe.jobs import folders

    project = s.scalar(select(Project).where(Project.name == DEFAULT_PROJECT))
    if project is not None:
        return project
    path, _ = folders.project_folder(settings, DEFAULT_PROJECT, None)
    try:
        with s.begin_nested():  # two first uses at once: one makes it, the other reads it
            return repo.create_project(s, DEFAULT_PROJECT, str(path),
                                       "Models, deployments and tables not put in a project")
    except (IntegrityError, ConflictError):
        found = s.scalar(select(Project).where(Project.name == DEFAULT_PROJECT))
        if found is None:
            raise
        return found


def default_project_id(s: Session) -> str:
    """The default project's id, "" while there is none (then only admins reach what no
    project claimed); never makes it (see :func:`default_project`)."""
    return s.scalar(select(Project.id).where(Project.name == DEFAULT_PROJECT)) or ""


def ensure_default_folder(s: Session, settings: Settings) -> None:
    """Make the default project's folder if a migration made the project without it."""
    project = s.scalar(select(Project).where(Project.name == DEFAULT_PROJECT))
    if project is None:
        return
    from icefloe.jobs import folders

    try:
        folder = folders.resolve_inside(settings.resolved_projects_root, project.path)
    except InvalidInputError:
        return
    folder.mkdir(parents=True, exist_ok=True)


def hand_over_models(s: Session, settings: Settings, project: Project) -> str:
    """Before a project is deleted: its models, builds and stopped deployments go to the
    default project (admins reach them there); returns what moved, e.g. "2 models".

    Raises:
        ConflictError: It still serves deployments (stop them first), or it is the default
            project and holds models.
    """
    from sqlalchemy import update

    from icefloe.store.orm import Build, Deployment, ModelCard

    serving = s.scalar(select(func.count()).select_from(Deployment).where(
        Deployment.project_id == project.id, Deployment.status != "STOPPED"))
    if serving:
        raise ConflictError(f"project {project.name!r} still has {serving} deployment(s) that "
                            "are not stopped; stop them first")
    models = s.scalar(select(func.count()).select_from(ModelCard).where(
        ModelCard.project_id == project.id)) or 0
    builds = s.scalar(select(func.count()).select_from(Build).where(
        Build.project_id == project.id)) or 0
    if not models and not builds:
        return ""
    if project.name == DEFAULT_PROJECT:
        raise ConflictError("the default project holds models and builds; it cannot be "
                            "deleted")
    default = default_project(s, settings).id
    for table in (ModelCard, Build, Deployment):
        s.execute(update(table).where(table.project_id == project.id)
                  .values(project_id=default))
    return f"{models} model(s) and {builds} build(s)"
