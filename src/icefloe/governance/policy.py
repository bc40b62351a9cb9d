"""Who may see and change what, checked by the routes (project scoping).

Everything a project holds (jobs, runs, logs, builds, deployments, models, alert rules)
answers 404 to a caller who is not a member, exactly as if it did not exist, so names do not
leak; a member whose role there only reads gets 403 on a change. The checks take the
request's principal (None only on public routes, which reach none of these).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from icefloe.auth.principals import Principal
from icefloe.config import Settings
from icefloe.errors import ForbiddenError, InvalidInputError, NotFoundError
from icefloe.store.orm import Build, Deployment, ModelCard


def check_project(principal: Principal | None, project_id: str | None, what: str, *,
                  change: bool = False) -> None:
    """Refuse a caller who may not see (404 naming ``what``) or change (403) a project's
    resource."""
    if principal is None:
        return
    if not principal.reaches(project_id):
        raise NotFoundError(f"{what} does not exist")
    if change and not principal.may_change(project_id):
        raise ForbiddenError(f"your role in this {what}'s project only reads; it may not be "
                             "changed")


def build_project(s: Session, build_id: str) -> str | None:
    """The project of a build (None for a build unknown here)."""
    return s.scalar(select(Build.project_id).where(Build.id == build_id))


def deployment_project(s: Session, deployment_id: str) -> str | None:
    """The project of a deployment."""
    return s.scalar(select(Deployment.project_id).where(Deployment.id == deployment_id))


def check_deployment(s: Session, principal: Principal | None, deployment_id: str, *,
                     change: bool = False) -> None:
    """404 for a deployment the caller may not see, 403 for one it may not change."""
    check_project(principal, deployment_project(s, deployment_id),
                  f"deployment {deployment_id[:64]!r}", change=change)


def check_build(s: Session, principal: Principal | None, build_id: str, *,
                change: bool = False) -> None:
    """404 for a build the caller may not see, 403 for one it may not change."""
    check_project(principal, build_project(s, build_id), f"build {build_id[:64]!r}",
                  change=change)


def model_project(s: Session, settings: Settings, name: str) -> str:
    """The project of a registered model: its catalog card's, else the default project's
    ("" while there is no default project: admins only)."""
    from icefloe.governance.membership import default_project_id

    found = s.scalar(select(ModelCard.project_id).where(ModelCard.name == name))
    return found or default_project_id(s)


def check_model(s: Session, settings: Settings, principal: Principal | None, name: str, *,
                change: bool = False) -> str:
    """The model's project, after refusing a caller who may not see (404) or change it."""
    project_id = model_project(s, settings, name)
    check_project(principal, project_id, f"model {name[:255]!r}", change=change)
    return project_id


def visible_models(s: Session, settings: Settings, principal: Principal | None,
                   names: list[str]) -> list[str]:
    """The models (by name) a caller may see."""
    if principal is None or principal.is_admin:
        return names
    projects = principal.visible_projects() or frozenset()
    cards = {n: p for n, p in s.execute(select(ModelCard.name, ModelCard.project_id).where(
        ModelCard.name.in_(names)))}
    from icefloe.governance.membership import default_project_id

    default = default_project_id(s)
    return [n for n in names if (cards.get(n) or default) in projects]


def project_for_new_build(s: Session, settings: Settings, principal: Principal | None,
                          model: str, asked: str | None) -> str:
    """The project a new build of ``model`` goes to, refused unless the caller may change it.

    A model belongs to one project (its catalog card's): its builds go there, and asking
    for another is refused. A model no project has claimed yet (trained outside a job run,
    or before projects) is the default project's: only someone who may change the default
    project may build it, there or (moving the model) in another project of theirs.

    Raises:
        InvalidInputError: The model belongs to another project than the one asked for.
        NotFoundError: The caller may not see the model's project.
        ForbiddenError: It may see but not change it.
    """
    from icefloe.governance.membership import default_project

    what = f"model {model[:255]!r}"
    card = s.scalar(select(ModelCard.project_id).where(ModelCard.name == model)) or None
    if card is not None:
        check_project(principal, card, what)
        if asked and asked != card:
            raise InvalidInputError(f"project_id: model {model!r} belongs to another project "
                                    f"({card})")
        project_id = card
    else:
        default = default_project(s, settings).id
        check_project(principal, default, what, change=True)
        project_id = asked or default
    check_project(principal, project_id, what, change=True)
    return project_id


def check_access_report(s: Session, settings: Settings, principal: Principal | None,
                        resource: str) -> None:
    """Who read or called what is for admins and the owners of the project holding it (a
    table: of a project granted its namespace); others get 404 where they cannot see the
    thing at all, 403 where they can but do not own it.

    Args:
        s: A store session.
        settings: For the default project of models never built through the API.
        principal: The caller.
        resource: ``table:<ns.table>``, ``deployment:<id>`` or ``model:<name>``.
    """
    if principal is None or principal.is_admin:
        return
    kind, _, name = resource.partition(":")
    refused = ForbiddenError(f"only admins and the owners of its project may see who reached "
                             f"{kind} {name[:255]!r}")
    if kind == "table":
        from icefloe.governance.grants import EVERY_NAMESPACE, check_table
        from icefloe.store.orm import NamespaceGrant

        check_table(s, principal, name)  # 404 when no grant lets the caller read it
        namespace = name.split(".", 1)[0]
        owners = s.scalars(select(NamespaceGrant.project_id).where(
            NamespaceGrant.namespace.in_((namespace, EVERY_NAMESPACE))))
        if not any(principal.owns(p) for p in owners):
            raise refused
        return
    if kind == "deployment":
        project_id = deployment_project(s, name)
        check_project(principal, project_id, f"deployment {name[:64]!r}")
    else:
        project_id = check_model(s, settings, principal, name)
    if not principal.owns(project_id):
        raise refused


# Lineage nodes that belong to a project (their description says which).
PROJECT_KINDS = frozenset({"run", "build", "deployment", "prediction", "window", "alert",
                           "training"})


def visible_lineage(graph: dict[str, Any], sees_project: Callable[[str | None], bool],
                    sees_table: Callable[[str], bool],
                    sees_model: Callable[[str], bool]) -> dict[str, Any] | None:
    """The part of a lineage graph (``{"root", "nodes", "edges"}``) a caller may see (pure).

    A node is hidden when it names a project the caller does not reach (runs, builds,
    deployments, predictions, trainings, windows and alerts carry ``project_id``; one of
    these without it is hidden too), a table in a namespace no project of theirs is
    granted, or a model of another project; edges touching a hidden node go, and so does
    what is then no longer connected to the root. None when the root itself is hidden,
    which the route answers 404.
    """
    def shown(node: dict[str, Any]) -> bool:
        kind, _, key = str(node["id"]).partition(":")
        if "project_id" in node:
            return sees_project(node["project_id"])
        if kind in PROJECT_KINDS:
            return False  # not described (deleted, or unknown): not shown to non-admins
        if kind in ("snapshot", "table"):
            return sees_table(key.rsplit("@", 1)[0] if kind == "snapshot" else key)
        if kind == "model":
            return sees_model(key.rsplit("/", 1)[0])
        return True

    visible = {n["id"] for n in graph["nodes"] if shown(n)}
    root = graph["root"]
    if root not in visible:
        return None
    edges = [e for e in graph["edges"] if e["src"] in visible and e["dst"] in visible]
    linked: dict[str, set[str]] = {}
    for e in edges:
        linked.setdefault(e["src"], set()).add(e["dst"])
        linked.setdefault(e["dst"], set()).add(e["src"])
    reached, todo = {root}, [root]
    while todo:
        for other in linked.get(todo.pop(), ()):
            if other not in reached:
                reached.add(other)
                todo.append(other)
    return {**graph, "nodes": [n for n in graph["nodes"] if n["id"] in reached],
            "edges": [e for e in edges if e["src"] in reached]}
