"""The principal of a request and the role policy (pure).

People act through API keys. A platform admin's admin key reaches everything; anyone else
reaches only the projects where they are a member, with their role there (``owner``,
``editor`` or ``viewer``), capped by the key's role (a ``viewer`` key only reads). A job run
acts through a run token: the user who triggered it, never above ``editor``, and only inside
the run's project.
"""

from __future__ import annotations

from dataclasses import dataclass

ROLES = ("admin", "editor", "viewer")
WRITE_ROLES = frozenset({"admin", "editor"})
PROJECT_ROLES = ("owner", "editor", "viewer")
CHANGE_ROLES = frozenset({"owner", "editor"})
READ_METHODS = frozenset({"GET", "HEAD"})


@dataclass(frozen=True)
class Principal:
    """Who a request acts as.

    Attributes:
        user: The user's name (for a run token: the user who triggered the run).
        role: ``admin``, ``editor`` or ``viewer``.
        key_id: The API key's id, or ``run/<run id>`` for a run token.
        project_id: For a run token, the only project it may reach; None for API keys.
        run_id: For a run token, the run it belongs to.
        short_lived: An access token or run token: a cache may keep it only briefly and
            never use it stale (it must stop working when it expires or its run ends).
        memberships: ``(project id, role)`` of every project the user is a member of (API
            keys and access tokens; a run token has its one project in ``project_id``).
    """

    user: str
    role: str
    key_id: str
    project_id: str | None = None
    run_id: str | None = None
    short_lived: bool = False
    memberships: tuple[tuple[str, str], ...] = ()

    @property
    def actor(self) -> str:
        """How audit events and run triggers name this principal."""
        return f"{self.user} (run/{self.run_id})" if self.run_id else self.user

    @property
    def is_admin(self) -> bool:
        """Platform admin (never a run token)."""
        return self.role == "admin" and self.run_id is None

    def may(self, method: str) -> bool:
        """Whether this principal may call an HTTP method (viewers only read)."""
        return method in READ_METHODS or self.role in WRITE_ROLES

    def project_role(self, project_id: str | None) -> str | None:
        """This principal's role in a project (``owner``, ``editor``, ``viewer``), or None
        when it may not see it. Admins own every project; a viewer key only views."""
        if self.is_admin:
            return "owner"  # of everything, even what no project holds
        if project_id is None:
            return None
        if self.run_id is not None or self.project_id is not None:
            if project_id != self.project_id:
                return None
            return "editor" if self.role in WRITE_ROLES else "viewer"
        role = dict(self.memberships).get(project_id)
        if role is None:
            return None
        return role if self.role in WRITE_ROLES else "viewer"

    def reaches(self, project_id: str | None) -> bool:
        """Whether this principal may see a project (a run token sees only its own)."""
        return self.project_role(project_id) is not None

    def may_change(self, project_id: str | None) -> bool:
        """Whether this principal may change what a project holds (owner or editor)."""
        return self.project_role(project_id) in CHANGE_ROLES

    def owns(self, project_id: str | None) -> bool:
        """Whether this principal may manage a project's members (its owners, admins)."""
        return self.project_role(project_id) == "owner" and self.run_id is None

    def visible_projects(self) -> frozenset[str] | None:
        """The projects this principal sees, or None for all (platform admins)."""
        if self.is_admin:
            return None
        if self.project_id is not None:
            return frozenset({self.project_id})
        return frozenset(p for p, _ in self.memberships)


def run_role(trigger_role: str | None) -> str:
    """The role of a run token: the trigger's in the run's project (or platform role), but
    never above editor; viewer when the trigger has no role there any more."""
    return "editor" if trigger_role in ("admin", "owner", "editor") else "viewer"
