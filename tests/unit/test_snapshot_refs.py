"""Snapshot references like git's: an id, a tag, or a unique prefix of 6+ digits; short ids.

The table here is a real PyIceberg table object whose metadata lists snapshots with chosen
ids (ids a catalog makes are random, so an ambiguous prefix cannot be arranged there).
"""

import pytest
from pyiceberg.io.pyarrow import PyArrowFileIO
from pyiceberg.partitioning import UNPARTITIONED_PARTITION_SPEC
from pyiceberg.schema import Schema
from pyiceberg.table import Table
from pyiceberg.table.metadata import new_table_metadata
from pyiceberg.table.refs import SnapshotRef, SnapshotRefType
from pyiceberg.table.snapshots import Operation, Snapshot, Summary
from pyiceberg.table.sorting import UNSORTED_SORT_ORDER
from pyiceberg.types import LongType, NestedField

from icefloe.errors import InvalidInputError, NoSuchSnapshotError
from icefloe.lakehouse.snapshots import find_snapshot, history, resolve_snapshot, short_ids

IDS = (1234567001, 1234567002, 9876543210, 2024)


def _table() -> Table:
    metadata = new_table_metadata(Schema(NestedField(1, "x", LongType(), required=False)),
                                  UNPARTITIONED_PARTITION_SPEC, UNSORTED_SORT_ORDER,
                                  "file:///nowhere/t")
    snapshots = [Snapshot(snapshot_id=i, parent_snapshot_id=None, sequence_number=n + 1,
                          timestamp_ms=1_700_000_000_000 + n, manifest_list="unused",
                          summary=Summary(Operation.APPEND), schema_id=0)
                 for n, i in enumerate(IDS)]
    refs = {"main": SnapshotRef(snapshot_id=9876543210, snapshot_ref_type=SnapshotRefType.BRANCH),
            "s1-base": SnapshotRef(snapshot_id=1234567001,
                                   snapshot_ref_type=SnapshotRefType.TAG),
            "777777": SnapshotRef(snapshot_id=1234567002, snapshot_ref_type=SnapshotRefType.TAG)}
    metadata = metadata.model_copy(update={"snapshots": snapshots, "refs": refs,
                                           "current_snapshot_id": 9876543210})
    return Table(("lending", "loans"), metadata, "file:///nowhere/t/m.json", PyArrowFileIO(),
                 None)


@pytest.mark.parametrize(("ref", "expected"), [
    ("s1-base", 1234567001),       # a tag
    ("main", 9876543210),          # the current branch
    ("1234567002", 1234567002),    # a whole id
    (1234567002, 1234567002),      # an id as a number (sql --at pins)
    ("987654", 9876543210),        # a unique prefix of 6 digits
    (98765432, 9876543210),        # a prefix as a number
    ("2024", 2024),                # a short whole id is an id, not a too-short prefix
    ("777777", 1234567002),        # a tag made of digits beats a prefix
])
def test_a_reference_names_one_snapshot(ref: str | int, expected: int) -> None:
    assert find_snapshot(_table(), ref).snapshot_id == expected


def test_every_way_of_naming_a_snapshot_goes_through_references() -> None:
    table = _table()
    for kwargs in ({"snapshot_id": 98765432}, {"tag": "987654"}, {"ref": "987654"}):
        found = resolve_snapshot(table, **kwargs)  # type: ignore[arg-type]
        assert found is not None and found.snapshot_id == 9876543210
    with pytest.raises(InvalidInputError, match="only one of"):
        resolve_snapshot(table, ref="main", tag="s1-base")


def test_an_ambiguous_prefix_lists_the_candidates() -> None:
    with pytest.raises(InvalidInputError) as caught:
        find_snapshot(_table(), "123456")
    assert caught.value.message == (
        "snapshot id prefix 123456 is ambiguous on lending.loans: snapshots 1234567001, "
        "1234567002 all start with it; give more digits")


@pytest.mark.parametrize(("ref", "message"), [
    ("98765", "snapshot 98765 is not in the history of lending.loans (1 id(s) start with "
              "98765, but a prefix needs at least 6 digits)"),
    ("55555555", "snapshot 55555555 is not in the history of lending.loans"),
    ("v7", "tag 'v7' does not exist on lending.loans (refs: 777777, main, s1-base)"),
])
def test_what_names_nothing_says_so(ref: str, message: str) -> None:
    with pytest.raises(NoSuchSnapshotError) as caught:
        find_snapshot(_table(), ref)
    assert caught.value.message == message


def test_short_ids_are_the_shortest_unique_prefixes_of_six_digits_or_more() -> None:
    assert short_ids(IDS) == {1234567001: "1234567001", 1234567002: "1234567002",
                              9876543210: "987654", 2024: "2024"}
    assert short_ids([1234567890, 1234599999]) == {1234567890: "123456",
                                                   1234599999: "123459"}
    assert [s.short_id for s in history(_table())] == ["1234567001", "1234567002", "987654",
                                                       "2024"]
    for short, snap_id in ((s.short_id, s.snapshot_id) for s in history(_table())):
        assert find_snapshot(_table(), short).snapshot_id == snap_id  # each one resolves


def test_short_ids_match_the_brute_force_answer_and_never_equal_a_tag_name() -> None:
    import random

    rng = random.Random(3)
    ids = [rng.randrange(10**17, 10**18) for _ in range(300)]
    ids += [int(str(ids[0])[:12] + "000000"), int(str(ids[1])[:16] + "00")]  # near twins
    fast = short_ids(ids)
    for i in ids:
        others = [str(o) for o in ids if o != i]
        text = str(i)
        length = 6
        while length < len(text) and any(o.startswith(text[:length]) for o in others):
            length += 1
        assert fast[i] == text[:length]
    # A tag that is all digits wins over an id prefix, so a short id never spells one.
    shown = short_ids([1234567890, 9876543210], names={"123456", "1234567"})
    assert shown[1234567890] == "12345678" and shown[9876543210] == "987654"
