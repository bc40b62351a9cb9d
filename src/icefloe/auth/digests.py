"""Hashes of secrets (pure): API keys and run tokens are stored salted, access keys by SHA-256.

Comparisons are constant-time, and a malformed or unknown secret costs the same work as a
known one, so timing tells an attacker nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

_DUMMY_SALT = "0" * 32
_PREFIX = re.compile(r"[0-9a-f]{12}")


def salted_hash(secret: str, salt: str) -> str:
    """The stored form of a secret: SHA-256 over salt and secret, hex."""
    return hashlib.sha256(f"{salt}:{secret}".encode("utf-8", "replace")).hexdigest()


def new_secret(kind: str) -> tuple[str, str, str, str]:
    """A new secret of ``kind`` (``ifk`` API key, ``ifr`` run token).

    Returns:
        ``(presented, prefix, salt, stored_hash)``: the text shown once to its holder, the
        public prefix it is found by, and what the store keeps.
    """
    prefix = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    salt = secrets.token_hex(16)
    return f"{kind}_{prefix}_{secret}", prefix, salt, salted_hash(secret, salt)


def split(presented: str, kind: str) -> tuple[str, str] | None:
    """``(prefix, secret)`` of a presented secret of ``kind``, or None if malformed."""
    parts = presented.split("_", 2)
    if len(parts) != 3 or parts[0] != kind or not _PREFIX.fullmatch(parts[1]):
        return None
    return parts[1], parts[2]


def matches(stored_hash: str | None, salt: str | None, secret: str) -> bool:
    """Constant-time check of a secret against its stored hash (None: unknown prefix)."""
    expected = stored_hash if stored_hash is not None else salted_hash("", _DUMMY_SALT)
    given = salted_hash(secret, salt if salt is not None else _DUMMY_SALT)
    return hmac.compare_digest(expected, given) and stored_hash is not None


def waste_time(presented: str) -> None:
    """The work of one check, for secrets refused before any lookup."""
    salted_hash(presented, _DUMMY_SALT)


def access_key_hash(access_key: str) -> str:
    """How a deployment's access key is stored and found: its SHA-256, hex.

    Access keys are random 128-bit values, so an unsalted hash is enough to find them by.
    """
    return hashlib.sha256(access_key.encode("utf-8", "replace")).hexdigest()


def cache_digest(presented: str) -> bytes:
    """What a cache keys a presented secret by (never the secret itself)."""
    return hashlib.sha256(presented.encode("utf-8", "replace")).digest()
