"""The principal of a request and the role policy (pure).

People act through API keys with a platform-wide role. A job run acts through a run token:
the user who triggered it, never above ``editor``, and only inside the run's project.
"""

from __future__ import annotations

from dataclasses import dataclass

ROLES = ("admin", "editor", "viewer")
WRITE_ROLES = frozenset({"admin", "editor"})
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
    """

    user: str
    role: str
    key_id: str
    project_id: str | None = None
    run_id: str | None = None
    short_lived: bool = False

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

    def reaches(self, project_id: str) -> bool:
        """Whether this principal may see a project (a run token sees only its own)."""
        return self.project_id is None or self.project_id == project_id


def run_role(trigger_role: str) -> str:
    """The role of a run token: the trigger's, but never admin."""
    return "viewer" if trigger_role == "viewer" else "editor"
