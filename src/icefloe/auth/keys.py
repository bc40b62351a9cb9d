"""API keys, access tokens and run tokens in the platform store.

An API key (``ifk_<prefix>_<secret>``) belongs to a user and carries a role. An access token
(``ift_<prefix>_<secret>``) is exchanged for an API key through the OAuth2 token route: it
acts exactly as its key for :data:`ACCESS_TOKEN_LIFE` and dies with it when the key is
revoked. A run token (``ifr_<prefix>_<secret>``) is made when a job run starts and deleted
when it ends: it acts as the user who triggered the run, inside the run's project only, and
is refused once the run is no longer active or its lifetime is over. Only salted hashes are
stored.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from icefloe.auth import digests
from icefloe.auth.principals import ROLES, Principal, run_role
from icefloe.errors import InvalidInputError, NotFoundError
from icefloe.jobs import states
from icefloe.names import valid_name
from icefloe.store.orm import AccessToken, ApiKey, Membership, Run, RunToken, User
from icefloe.store.repo import new_id, now
from icefloe.timefmt import stored_utc

ACCESS_TOKEN_LIFE = timedelta(hours=1)
RUN_TOKEN_GRACE = timedelta(minutes=10)
RUN_TOKEN_MAX_LIFE = timedelta(hours=24)


def create_api_key(s: Session, user_name: str, role: str) -> tuple[ApiKey, str]:
    """Create a key (and its user if new). Returns the row and the secret, shown only once."""
    if role not in ROLES:
        raise InvalidInputError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
    valid_name("user", user_name)
    user = s.scalar(select(User).where(User.name == user_name))
    if user is None:
        user = User(id=new_id(), name=user_name, role="admin" if role == "admin" else "user",
                    created_at=now())
        s.add(user)
        s.flush()
    elif role == "admin" and user.role != "admin":
        user.role = "admin"  # an admin key makes its holder a platform admin
    presented, prefix, salt, stored = digests.new_secret("ifk")
    key = ApiKey(id=new_id(), prefix=prefix, secret_hash=stored, salt=salt, user_id=user.id,
                 role=role, revoked=False, created_at=now())
    s.add(key)
    s.flush()
    return key, presented


def _verify_api_key(s: Session, prefix: str, secret: str) -> Principal | None:
    key = s.scalar(select(ApiKey).where(ApiKey.prefix == prefix))
    if not digests.matches(key.secret_hash if key else None, key.salt if key else None,
                           secret) or key is None or key.revoked:
        return None
    return key_principal(s, key)


def key_principal(s: Session, key: ApiKey, *, short_lived: bool = False) -> Principal:
    """The principal of a live key: its user, role and memberships."""
    user = s.get(User, key.user_id)
    memberships = tuple((p, r) for p, r in s.execute(select(
        Membership.project_id, Membership.role).where(Membership.user_id == key.user_id))
    ) if user else ()
    role = key.role
    if role == "admin" and (user is None or user.role != "admin"):
        role = "editor"  # an admin key of a user who is no longer admin
    return Principal(user.name if user else "?", role, key.id, short_lived=short_lived,
                     memberships=tuple(sorted(memberships)))



# -- access tokens (OAuth2 client credentials) ----------------------------------------------

def issue_access_token(s: Session, key_id: str, api_key: str) -> tuple[str, datetime] | None:
    """Exchange an API key for an access token.

    Args:
        s: A store session.
        key_id: The key's id as ``/api/v2/keys`` lists it (the OAuth2 client id).
        api_key: The key itself (the client secret).

    Returns:
        ``(token, expires_at)``, or None when the pair is not a live key (one answer for an
        unknown id, a wrong secret and a revoked key).
    """
    parts = digests.split(api_key, "ifk")
    if parts is None:
        digests.waste_time(api_key)
        return None
    principal = _verify_api_key(s, *parts)
    if principal is None or principal.key_id != key_id:
        return None
    s.execute(delete(AccessToken).where(AccessToken.expires_at < now()))
    presented, prefix, salt, stored = digests.new_secret("ift")
    expires_at = now() + ACCESS_TOKEN_LIFE
    s.add(AccessToken(prefix=prefix, secret_hash=stored, salt=salt, key_id=key_id,
                      expires_at=expires_at))
    s.flush()
    return presented, expires_at


def _verify_access_token(s: Session, prefix: str, secret: str) -> Principal | None:
    token = s.get(AccessToken, prefix)
    if not digests.matches(token.secret_hash if token else None,
                           token.salt if token else None, secret) or token is None:
        return None
    key = s.get(ApiKey, token.key_id)
    if key is None or key.revoked or stored_utc(token.expires_at) < datetime.now(UTC):
        return None
    return key_principal(s, key, short_lived=True)


def revoke_api_key(s: Session, key_id: str) -> None:
    """Revoke a key by id (or prefix)."""
    key = s.get(ApiKey, key_id) or s.scalar(select(ApiKey).where(ApiKey.prefix == key_id))
    if key is None:
        raise NotFoundError(f"API key {key_id!r} does not exist")
    key.revoked = True
    s.execute(delete(AccessToken).where(AccessToken.key_id == key.id))


def list_api_keys(s: Session) -> list[dict[str, Any]]:
    """Keys without their secrets."""
    rows = s.execute(select(ApiKey, User.name).join(User, User.id == ApiKey.user_id)
                     .order_by(ApiKey.created_at))
    return [{"id": k.id, "prefix": k.prefix, "user": name, "role": k.role,
             "revoked": k.revoked, "created_at": k.created_at} for k, name in rows]


def user_role(s: Session, user_name: str, project_id: str) -> str | None:
    """A user's role in a project: ``admin`` for platform admins, their membership's role,
    or None. Capped by the user's live keys: someone holding only viewer keys views."""
    user = s.scalar(select(User).where(User.name == user_name))
    if user is None:
        return None
    key_roles = set(s.scalars(select(ApiKey.role).where(ApiKey.user_id == user.id,
                                                        ApiKey.revoked.is_(False))))
    if user.role == "admin" and "admin" in key_roles:
        return "admin"
    role = s.scalar(select(Membership.role).where(Membership.user_id == user.id,
                                                  Membership.project_id == project_id))
    if role is None:
        return None
    return role if key_roles & {"admin", "editor"} else "viewer"


# -- run tokens ---------------------------------------------------------------------------

def issue_run_token(s: Session, run: Run, timeout_s: int) -> str:
    """Make the token of a starting run; returns the secret, which only the run sees.

    Its life is the job's timeout (24 h without one) plus a grace period, and it ends as
    soon as the run does (:func:`end_run_token`).
    """
    life = timedelta(seconds=timeout_s) if timeout_s else RUN_TOKEN_MAX_LIFE
    presented, prefix, salt, stored = digests.new_secret("ifr")
    s.execute(delete(RunToken).where(RunToken.run_id == run.id))
    s.add(RunToken(run_id=run.id, prefix=prefix, secret_hash=stored, salt=salt,
                   user=run.run_as or "system",
                   role=run_role(user_role(s, run.run_as, run.project_id)),
                   project_id=run.project_id,
                   expires_at=now() + min(life, RUN_TOKEN_MAX_LIFE) + RUN_TOKEN_GRACE))
    s.flush()
    return presented


def end_run_token(s: Session, run_id: str) -> None:
    """Forget a run's token: from now on it is refused."""
    s.execute(delete(RunToken).where(RunToken.run_id == run_id))


def _verify_run_token(s: Session, prefix: str, secret: str) -> Principal | None:
    token = s.scalar(select(RunToken).where(RunToken.prefix == prefix))
    if not digests.matches(token.secret_hash if token else None,
                           token.salt if token else None, secret) or token is None:
        return None
    expires = stored_utc(token.expires_at)
    status = s.scalar(select(Run.status).where(Run.id == token.run_id))
    if expires < datetime.now(UTC) or status not in states.ACTIVE:
        return None
    # The trigger's role now, not only when the run started: someone taken out of the
    # project (or down to viewer) mid-run leaves the run a viewer's rights.
    role = token.role
    if role != "viewer" and run_role(user_role(s, token.user, token.project_id)) == "viewer":
        role = "viewer"
    return Principal(token.user, role, f"run/{token.run_id}", token.project_id,
                     token.run_id, short_lived=True)


def verify(s: Session, presented: str) -> Principal | None:
    """The principal of a presented API key, access token or run token, or None (unknown,
    malformed, revoked, expired, or the run has ended)."""
    for kind, check in (("ifk", _verify_api_key), ("ifr", _verify_run_token),
                        ("ift", _verify_access_token)):
        parts = digests.split(presented, kind)
        if parts is not None:
            return check(s, *parts)
    digests.waste_time(presented)
    return None
