"""Options shared by the commands that talk to a running ``icefloe up``, and their client.

``--url`` (or ``$ICEFLOE_URL``) says where; the API key comes from ``$ICEFLOE_API_KEY``,
``--api-key-file PATH`` or ``--api-key -`` (stdin), see :mod:`icefloe.cli.secrets`.
"""

from __future__ import annotations

from pathlib import Path

import typer

from icefloe.cli.secrets import API_KEY, resolve_secret
from icefloe.client import Client

JSON = typer.Option(False, "--json", help="Print JSON for scripts.")
URL = typer.Option(None, "--url", envvar="ICEFLOE_URL", help="Control plane URL.")
KEY = typer.Option(
    None, "--api-key", metavar="-|VALUE",
    help="API key: '-' reads it from stdin. Default $ICEFLOE_API_KEY. A literal value is "
         "visible to other users (ps) and is accepted with a warning.")
KEY_FILE = typer.Option(None, "--api-key-file", metavar="PATH",
                        help="Read the API key from this file.")


def connect(url: str | None, api_key: str | None, api_key_file: Path | None, *,
            timeout: float = 30.0) -> Client:
    """A client of the control plane with the key resolved the safe way.

    Args:
        timeout: Seconds per request (a build or a deployment waiting for its replicas takes
            longer than the default).
    """
    return Client(url, resolve_secret(API_KEY, api_key, api_key_file), timeout=timeout)
