"""Web UI sign-in sessions and one-time sign-in codes in the platform store.

A session is opened with a live API key (or a one-time code made for one) and acts exactly
as that key: same user, role and memberships, re-read at least once a second, so a revoked
key or a changed membership reaches open sessions at once. The browser holds the session's
secret (``ifs_<prefix>_<secret>``) in an HttpOnly cookie; the store keeps only a salted
hash. Forms carry a CSRF token derived from the secret (HMAC), so a page of another site,
which cannot read the cookie, cannot make one; a token of an ended session is refused.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from sqlalchemy import delete
from sqlalchemy.orm import Session

from icefloe.auth import digests
from icefloe.auth.keys import key_principal
from icefloe.auth.principals import Principal
from icefloe.store.orm import ApiKey, SignInCode, UiSession
from icefloe.store.repo import now
from icefloe.timefmt import stored_utc

SESSION_LIFE = timedelta(hours=8)
Secrets = TypeVar("Secrets", UiSession, SignInCode)
CODE_LIFE = timedelta(minutes=30)


def open_session(s: Session, key_id: str, life: timedelta = SESSION_LIFE
                 ) -> tuple[str, datetime]:
    """Open a session acting as a key.

    Returns:
        ``(secret, expires_at)``: the cookie's value, given only to the browser.
    """
    s.execute(delete(UiSession).where(UiSession.expires_at < now()))
    presented, prefix, salt, stored = digests.new_secret("ifs")
    expires_at = now() + life
    s.add(UiSession(prefix=prefix, secret_hash=stored, salt=salt, key_id=key_id,
                    created_at=now(), expires_at=expires_at))
    s.flush()
    return presented, expires_at


def verify_session(s: Session, presented: str) -> Principal | None:
    """The principal of a session cookie, or None (unknown, expired, signed out, or its key
    revoked)."""
    row = _found(s, UiSession, presented, "ifs")
    if row is None:
        return None
    key = s.get(ApiKey, row.key_id)
    if key is None or key.revoked or stored_utc(row.expires_at) < datetime.now(UTC):
        return None
    return key_principal(s, key, short_lived=True)


def close_session(s: Session, presented: str) -> bool:
    """Sign out: the session stops working. Returns whether it was open."""
    row = _found(s, UiSession, presented, "ifs")
    if row is None:
        return False
    s.delete(row)
    return True


def _found(s: Session, table: type[Secrets], presented: str, kind: str) -> Secrets | None:
    """The row a presented secret of ``kind`` belongs to, or None; malformed and unknown
    secrets cost the same hashing as a known one."""
    parts = digests.split(presented, kind)
    if parts is None:
        digests.waste_time(presented)
        return None
    row = s.get(table, parts[0])
    if not digests.matches(row.secret_hash if row else None, row.salt if row else None,
                           parts[1]):
        return None
    return row


def csrf_token(presented: str) -> str:
    """The CSRF token of a session: an HMAC of its secret, so only a page served to the
    session's own browser can carry it."""
    return hmac.new(presented.encode("utf-8", "replace"), b"icefloe-ui-form",
                    hashlib.sha256).hexdigest()


def csrf_matches(presented: str, token: str) -> bool:
    """Constant-time check of a form's CSRF token against the session's."""
    return hmac.compare_digest(csrf_token(presented).encode(),
                               token.encode("utf-8", "replace"))


def issue_sign_in_code(s: Session, key_id: str, life: timedelta = CODE_LIFE) -> str:
    """A code that opens one session as ``key_id``, once, within ``life``."""
    s.execute(delete(SignInCode).where(SignInCode.expires_at < now()))
    presented, prefix, salt, stored = digests.new_secret("ifc")
    s.add(SignInCode(prefix=prefix, secret_hash=stored, salt=salt, key_id=key_id,
                     expires_at=now() + life))
    s.flush()
    return presented


def redeem_sign_in_code(s: Session, presented: str) -> str | None:
    """The key id a code was made for, or None; a code works once (it is deleted)."""
    row = _found(s, SignInCode, presented, "ifc")
    if row is None:
        return None
    s.delete(row)
    key = s.get(ApiKey, row.key_id)
    if key is None or key.revoked or stored_utc(row.expires_at) < datetime.now(UTC):
        return None
    return key.id
