"""Secret job variables: sealed with the home's key, opened only to start a run.

The API never returns them (only their names); the database holds ciphertext (Fernet:
AES-128-CBC with HMAC-SHA256), and the key is a 0600 file in the home that job runs cannot
read. A stolen database copy without the home's key reveals nothing.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from icefloe.config import Settings
from icefloe.errors import ConfigError

KEY_FILE = "secrets.key"
MASK = "***"


def _key(settings: Settings) -> bytes:
    from cryptography.fernet import Fernet

    path = Path(settings.home) / KEY_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process made it first
            pass
        else:
            with os.fdopen(fd, "wb") as out:
                out.write(Fernet.generate_key())
    try:
        return path.read_bytes().strip()
    except OSError as exc:
        raise ConfigError(f"cannot read the secrets key {path}: {exc}") from exc


def seal(settings: Settings, variables: dict[str, str]) -> str:
    """Encrypt a job's secret variables for the store ("" when there are none).

    The names stay readable (the API lists them); the values are sealed.
    """
    if not variables:
        return ""
    from cryptography.fernet import Fernet

    token = Fernet(_key(settings)).encrypt(json.dumps(variables).encode()).decode()
    return json.dumps({"names": sorted(variables), "sealed": token})


def unseal(settings: Settings, sealed: str) -> dict[str, str]:
    """The secret variables of a job (at run start only).

    Raises:
        ConfigError: The home's key does not open them (the key file was replaced).
    """
    if not sealed:
        return {}
    from cryptography.fernet import Fernet, InvalidToken

    try:
        token = json.loads(sealed)["sealed"]
        return dict(json.loads(Fernet(_key(settings)).decrypt(token.encode())))
    except (InvalidToken, ValueError, KeyError) as exc:
        raise ConfigError("the secret variables of this job cannot be decrypted with this "
                          "home's secrets.key; set them again") from exc


def masked(sealed: str) -> dict[str, str]:
    """What the API shows of a job's secret variables: their names, never their values."""
    return {name: MASK for name in json.loads(sealed)["names"]} if sealed else {}
