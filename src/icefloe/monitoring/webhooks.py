"""Alert webhooks: where they may go, how they are signed, how they are sent.

A webhook URL must be ``http`` or ``https`` with a host whose every address is globally
routable (IPv4 inside IPv6 unwrapped): a loopback, private, shared (100.64.0.0/10),
link-local (cloud metadata at 169.254.169.254 included), site-local, multicast, reserved or
unspecified address is refused with the address named, unless the host or a
network holding the address is on the ``webhook_allowlist`` setting. The check runs when a
rule is made (no request is sent to a refused target) and again before each delivery (a name
may resolve elsewhere later). Deliveries are JSON POSTs signed with HMAC-SHA256 under the
rule's secret (``X-Icefloe-Signature: sha256=<hex>`` over the exact body), never follow
redirects, time out, and are retried with backoff on connection errors, 429 and 5xx.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from icefloe.errors import InvalidInputError

SIGNATURE_HEADER = "X-Icefloe-Signature"
TIMEOUT_S = 5.0
ATTEMPTS = 3
BACKOFF_S = (0.5, 2.0)
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class Delivery:
    """How a notification went: delivered or not, after how many attempts, and why not."""

    delivered: bool
    attempts: int
    error: str = ""


def _allowed(host: str, address: Address, allowlist: str) -> bool:
    for entry in (e.strip() for e in allowlist.split(",")):
        if not entry:
            continue
        if entry.lower() == host.lower():
            return True
        try:
            if address in ipaddress.ip_network(entry, strict=False):
                return True
        except ValueError:
            continue
    return False


def _internal(address: Address) -> bool:
    """Anything but a globally routable address (IPv4 inside IPv6 unwrapped first):
    loopback, private, link-local (cloud metadata), shared (100.64.0.0/10), site-local,
    multicast, reserved, unspecified."""
    for wrapped in ("ipv4_mapped", "sixtofour"):
        inner = getattr(address, wrapped, None)
        if inner is not None:
            return _internal(inner)
    teredo = getattr(address, "teredo", None)
    if teredo is not None:
        return any(_internal(a) for a in teredo)
    return (not address.is_global or address.is_multicast
            or bool(getattr(address, "is_site_local", False)))


def check_url(url: str, allowlist: str = "") -> str:
    """Return ``url`` if a webhook may be sent to it.

    Raises:
        InvalidInputError: Naming the URL and why (scheme, credentials, an address that is
            not public, a host that does not resolve).
    """
    if len(url) > 2048:
        raise InvalidInputError("webhook URL is longer than 2,048 characters")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInputError(f"webhook {url!r} must be an http or https URL with a host")
    if parts.username or parts.password:
        raise InvalidInputError(f"webhook {url!r} must not carry credentials; sign with the "
                                "rule's secret instead")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise InvalidInputError(f"webhook {url!r} has an invalid port") from exc
    host = parts.hostname
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise InvalidInputError(f"webhook host {host!r} does not resolve") from exc
    for *_, sockaddr in found:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%")[0])
        if _internal(address) and not _allowed(host, address, allowlist):
            raise InvalidInputError(
                f"webhook {url!r} resolves to {address}, a loopback, private, link-local or "
                "reserved address; add the host or its network to the webhook_allowlist "
                "setting to allow it")
    return url


def signature(secret: str, body: bytes) -> str:
    """The signature header's value for ``body``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def retried(send_once: Callable[[], tuple[str, str]]) -> Delivery:
    """Run ``send_once`` up to :data:`ATTEMPTS` times with backoff (webhooks and e-mail
    alike). It answers ``("sent", "")``, ``("retry", why)``, ``("refused", why)`` (refused
    for good: not tried again) or ``("unsent", why)`` (refused before anything was sent)."""
    error = ""
    for attempt in range(1, ATTEMPTS + 1):
        outcome, error = send_once()
        if outcome == "sent":
            return Delivery(True, attempt)
        if outcome in ("refused", "unsent"):
            return Delivery(False, attempt - (outcome == "unsent"), error)
        if attempt < ATTEMPTS:
            time.sleep(BACKOFF_S[min(attempt - 1, len(BACKOFF_S) - 1)])
    return Delivery(False, ATTEMPTS, error)


def deliver(url: str, payload: dict[str, Any], secret: str, allowlist: str = "") -> Delivery:
    """POST ``payload`` to ``url``, signed, with retries (see the module); never raises."""
    import httpx

    body = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
    headers = {"Content-Type": "application/json", SIGNATURE_HEADER: signature(secret, body),
               "User-Agent": "icefloe-alerts"}

    def send_once() -> tuple[str, str]:
        try:
            check_url(url, allowlist)
        except InvalidInputError as exc:
            return "unsent", exc.message
        try:
            with httpx.Client(timeout=TIMEOUT_S, follow_redirects=False) as client:
                response = client.post(url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            return "retry", f"{type(exc).__name__}: {exc}"[:500]
        if 200 <= response.status_code < 300:
            return "sent", ""
        retry = response.status_code == 429 or response.status_code >= 500
        return ("retry" if retry else "refused"), f"HTTP {response.status_code}"

    return retried(send_once)
