"""Who is calling, and what they may do: one place below both the REST API and serving.

- :mod:`~icefloe.auth.digests`: salted hashes, constant-time checks, access-key hashes (pure).
- :mod:`~icefloe.auth.principals`: the principal of a request and the role policy (pure).
- :mod:`~icefloe.auth.keys`: API keys and run tokens in the platform store.
- :mod:`~icefloe.auth.cache`: verified keys kept briefly, so a model call needs no DB read.
- :mod:`~icefloe.auth.refusals`: refused requests counted per source and minute, and slowed.
- :mod:`~icefloe.auth.middleware`: the ASGI layer that authenticates every non-public route.
"""

from icefloe.auth.cache import KeyCache
from icefloe.auth.digests import access_key_hash
from icefloe.auth.principals import ROLES, Principal

__all__ = ["ROLES", "KeyCache", "Principal", "access_key_hash"]
