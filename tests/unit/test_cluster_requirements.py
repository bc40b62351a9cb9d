"""What multi-node mode refuses (pure, over a given mount table)."""

from pathlib import Path

from icefloe.cluster.requirements import filesystem_of, problems, shared
from icefloe.config import load_settings

MOUNTS = """\
/dev/sda1 / ext4 rw 0 0
nas:/export /mnt/lake nfs4 rw 0 0
s3fs /mnt/bucket fuse.s3fs rw 0 0
"""


def test_only_object_stores_and_network_filesystems_are_shared() -> None:
    assert filesystem_of(Path("/mnt/lake/warehouse"), MOUNTS) == "nfs4"
    assert filesystem_of(Path("/mnt/lakehouse"), MOUNTS) == "ext4"  # not under /mnt/lake
    assert shared("s3://bucket/warehouse", MOUNTS)
    assert shared("file:///mnt/lake/warehouse", MOUNTS)
    assert shared("file:///mnt/bucket/x", MOUNTS)
    assert not shared("file:///home/me/.icefloe/lake/warehouse", MOUNTS)


def test_multi_node_refuses_sqlite_and_a_local_warehouse_by_name(tmp_path: Path) -> None:
    local = problems(load_settings(env={"ICEFLOE_MULTI_NODE": "true"}, home=tmp_path), MOUNTS)
    assert len(local) == 3
    assert "PostgreSQL" in local[0] and "warehouse" in local[1] and "own disk" in local[1]
    ready = load_settings(env={"ICEFLOE_DATABASE_URL": "postgresql://db/lake",
                               "ICEFLOE_WAREHOUSE": "s3://lake/warehouse",
                               "ICEFLOE_MLFLOW_ARTIFACTS": "file:///mnt/lake/ml"},
                          home=tmp_path)
    assert problems(ready, MOUNTS) == []
