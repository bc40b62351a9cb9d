"""What several nodes need to be one platform: a database and storage they all reach.

A node's own disk is not shared: tables written there by one node would be missing on the
others. So in multi-node mode the platform DB must be a server database, and the warehouse
and the model artifacts must be in an object store (``s3://``) or on a network filesystem.
"""

from __future__ import annotations

import os
from pathlib import Path

from icefloe.config import Settings

NETWORK_FILESYSTEMS = ("nfs", "nfs4", "cifs", "smb3", "smbfs", "ceph", "glusterfs", "lustre",
                       "gpfs", "beegfs", "9p", "afs", "ocfs2", "gfs2", "efs")
MOUNTS = Path("/proc/self/mounts")


def filesystem_of(path: Path, mounts: str | None = None) -> str:
    """The type of the filesystem a path is on (the longest mount point above it)."""
    text = mounts if mounts is not None else MOUNTS.read_text()
    target = os.path.realpath(path)
    best, kind = "", "unknown"
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 3:
            continue
        point = parts[1].replace("\\040", " ")
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and len(point) > len(best):
            best, kind = point, parts[2]
    return kind


def shared(location: str, mounts: str | None = None) -> bool:
    """Whether every node reaches a location: an object store, or a network filesystem."""
    if location.startswith(("s3://", "s3a://", "gs://", "abfs://", "abfss://")):
        return True
    if not location.startswith("file://"):
        return False
    kind = filesystem_of(Path(location.removeprefix("file://")), mounts)
    return kind in NETWORK_FILESYSTEMS or kind.startswith("fuse.")


def problems(settings: Settings, mounts: str | None = None) -> list[str]:
    """Why these settings cannot run as one of several nodes (empty: they can)."""
    found = []
    if settings.resolved_platform_db_url.startswith("sqlite"):
        found.append("multi_node needs a database every node reaches: set database_url "
                     "(or platform_db_url) to a PostgreSQL URL, not a SQLite file")
    for name, location in (("warehouse", settings.warehouse_path),
                           ("mlflow_artifacts", settings.mlflow_artifacts_uri)):
        if not shared(location, mounts):
            found.append(f"multi_node needs shared storage: {name} {location} is on this "
                         "machine's own disk, where the other nodes cannot read it; use an "
                         "s3:// location (with the s3_* settings) or a network filesystem")
    return found
