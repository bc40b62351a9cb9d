"""Snapshot history, references (tags), time travel resolution and rollback (the snapshot
and the schema it was written with, in one commit).

The functions that only look at table metadata are pure; the ones that commit (tags,
rollback) retry lost races and check whether an earlier attempt already landed.

Wherever a snapshot is named, a reference is accepted, like git's: a snapshot id, a tag (or
branch) name, or a unique prefix of an id of at least :data:`MIN_PREFIX` digits; listings
show each snapshot's shortest unique prefix as ``short_id``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.table import Table, Transaction
from pyiceberg.table.refs import SnapshotRefType
from pyiceberg.table.snapshots import Snapshot
from pyiceberg.table.update import (
    AssertCurrentSchemaId,
    SetCurrentSchemaUpdate,
    UpdatesAndRequirements,
    UpdateTableMetadata,
)
from pyiceberg.table.update.snapshot import ManageSnapshots

from icefloe.errors import ConflictError, InvalidInputError, NoSuchSnapshotError
from icefloe.lakehouse.catalog import load_table, retry_lost_races
from icefloe.lakehouse.names import TableName, parse_table_name, validate_tag
from icefloe.timefmt import iso_utc

MIN_PREFIX = 6  # digits of a snapshot id prefix, and of a short id


@dataclass(frozen=True)
class SnapshotInfo:
    """One entry of a table's history, as users see it."""

    snapshot_id: int
    parent_id: int | None
    timestamp_ms: int
    operation: str
    added_rows: int | None
    total_rows: int | None
    schema_id: int | None
    current: bool
    in_current_lineage: bool
    tags: list[str] = field(default_factory=list)
    short_id: str = ""

    @property
    def time(self) -> str:
        """ISO-8601 UTC time of the commit."""
        return format_ms(self.timestamp_ms)

    def to_dict(self) -> dict[str, object]:
        """JSON-able form, with the time as ISO text."""
        return {**asdict(self), "time": self.time}


def format_ms(ms: int) -> str:
    """Milliseconds since the epoch as ISO-8601 UTC text (:func:`icefloe.timefmt.iso_utc`)."""
    text = iso_utc(ms)
    assert text is not None
    return text


def short_ids(ids: Iterable[int], names: Iterable[str] = ()) -> dict[int, str]:
    """Each id's shortest prefix of at least :data:`MIN_PREFIX` digits that no other id
    starts with and that is not the name of a tag or branch (``names``), since a name wins
    over a prefix; the whole id when no shorter prefix is unique.

    Sorted, the ids sharing the longest prefix with an id are its neighbours, so this is
    O(n log n) in the number of snapshots.
    """
    texts = sorted({str(i) for i in ids})
    taken = set(names)

    def common(a: str, b: str) -> int:
        n = 0
        for x, y in zip(a, b, strict=False):
            if x != y:
                break
            n += 1
        return n

    out: dict[int, str] = {}
    for i, text in enumerate(texts):
        shared = max(common(text, texts[i - 1]) if i > 0 else 0,
                     common(text, texts[i + 1]) if i + 1 < len(texts) else 0)
        length = min(len(text), max(MIN_PREFIX, shared + 1))
        while length < len(text) and text[:length] in taken:
            length += 1
        out[int(text)] = text[:length]
    return out


def _int_or_none(value: str | None) -> int | None:
    return int(value) if value is not None else None


def _ancestor_ids(table: Table) -> set[int]:
    # Parents by id in one pass: snapshot_by_id scans the list, which made this quadratic
    # in the number of snapshots (a long history is listed page by page through the API).
    parents = {s.snapshot_id: s.parent_snapshot_id for s in table.metadata.snapshots}
    ids: set[int] = set()
    current = table.current_snapshot()
    at = current.snapshot_id if current is not None else None
    while at is not None and at in parents and at not in ids:
        ids.add(at)
        at = parents[at]
    return ids


def tags_by_snapshot(table: Table) -> dict[int, list[str]]:
    """Tag names grouped by the snapshot they point at."""
    out: dict[int, list[str]] = {}
    for name, ref in table.metadata.refs.items():
        if ref.snapshot_ref_type == SnapshotRefType.TAG:
            out.setdefault(ref.snapshot_id, []).append(name)
    return {k: sorted(v) for k, v in out.items()}


@dataclass(frozen=True)
class _TableFacts:
    """What describing a snapshot needs from the whole table, computed once per listing."""

    current_id: int | None
    ancestors: set[int]
    tags: dict[int, list[str]]
    short: dict[int, str]

    @classmethod
    def of(cls, table: Table) -> _TableFacts:
        current = table.current_snapshot()
        return cls(current_id=current.snapshot_id if current is not None else None,
                   ancestors=_ancestor_ids(table), tags=tags_by_snapshot(table),
                   short=short_ids((s.snapshot_id for s in table.metadata.snapshots),
                                   table.metadata.refs))


def table_facts(table: Table) -> _TableFacts:
    """What describing many snapshots of one table needs from the whole table (current id,
    ancestors, tags, short ids): compute it once and pass it to :func:`snapshot_info`."""
    return _TableFacts.of(table)


def snapshot_info(table: Table, snap: Snapshot, facts: _TableFacts | None = None
                  ) -> SnapshotInfo:
    """Describe one snapshot of ``table``."""
    facts = facts or _TableFacts.of(table)
    summary = snap.summary
    props = summary.additional_properties if summary is not None else {}
    return SnapshotInfo(
        snapshot_id=snap.snapshot_id,
        parent_id=snap.parent_snapshot_id,
        timestamp_ms=snap.timestamp_ms,
        operation=summary.operation.value if summary is not None else "unknown",
        added_rows=_int_or_none(props.get("added-records")),
        total_rows=_int_or_none(props.get("total-records")),
        schema_id=snap.schema_id,
        current=facts.current_id == snap.snapshot_id,
        in_current_lineage=snap.snapshot_id in facts.ancestors,
        tags=facts.tags.get(snap.snapshot_id, []),
        short_id=facts.short.get(snap.snapshot_id, str(snap.snapshot_id)),
    )


def oldest_first(table: Table) -> list[Snapshot]:
    """Every snapshot the table keeps, in commit order (rolled-back ones included)."""
    return sorted(table.metadata.snapshots,
                  key=lambda s: (s.sequence_number or 0, s.timestamp_ms))


def describe(table: Table, snaps: Iterable[Snapshot]) -> list[SnapshotInfo]:
    """Describe some snapshots of ``table``, working out what the whole table tells about
    them (current lineage, tags, short ids) once: a page of a long history costs the page."""
    facts = _TableFacts.of(table)
    return [snapshot_info(table, s, facts) for s in snaps]


def history(table: Table) -> list[SnapshotInfo]:
    """Every snapshot the table keeps, oldest first (rolled-back ones included)."""
    return describe(table, oldest_first(table))


def parse_time(text: str) -> int:
    """Parse a point in time: ISO-8601 (naive means UTC) or integer milliseconds since epoch.

    Raises:
        InvalidInputError: The text is neither.
    """
    value = text.strip()
    if re.fullmatch(r"\d{10,}", value):
        return int(value)
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise InvalidInputError(
            f"cannot parse time {text!r}: use ISO-8601 (2026-11-26T10:00:00Z) or epoch ms"
        ) from exc
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp() * 1000)


def find_snapshot(table: Table, ref: str | int) -> Snapshot:
    """The snapshot a reference names: a snapshot id, else a tag (or branch) of that name,
    else the one snapshot whose id starts with these digits (at least :data:`MIN_PREFIX`).

    Raises:
        NoSuchSnapshotError: Nothing matches (naming the table, and its tags).
        InvalidInputError: A prefix that more than one snapshot id starts with (listing them).
    """
    name = ".".join(table.name()[-2:])
    text = str(ref).strip()
    if re.fullmatch(r"-?\d+", text):
        snap = table.snapshot_by_id(int(text))
        if snap is not None:
            return snap
    named = table.metadata.refs.get(text)
    if named is not None:
        found = table.snapshot_by_id(named.snapshot_id)
        if found is not None:
            return found
    if not text.isdigit():
        known = ", ".join(sorted(table.metadata.refs)) or "none"
        raise NoSuchSnapshotError(f"tag {text!r} does not exist on {name} (refs: {known})")
    matches = sorted(s.snapshot_id for s in table.metadata.snapshots
                     if str(s.snapshot_id).startswith(text))
    if len(text) >= MIN_PREFIX and len(matches) == 1:
        snap = table.snapshot_by_id(matches[0])
        assert snap is not None
        return snap
    if len(text) >= MIN_PREFIX and matches:
        raise InvalidInputError(
            f"snapshot id prefix {text} is ambiguous on {name}: snapshots "
            f"{', '.join(map(str, matches))} all start with it; give more digits")
    hint = (f" ({len(matches)} id(s) start with {text}, but a prefix needs at least "
            f"{MIN_PREFIX} digits)" if matches else "")
    raise NoSuchSnapshotError(f"snapshot {text} is not in the history of {name}{hint}")


def resolve_snapshot(
    table: Table,
    *,
    snapshot_id: int | None = None,
    tag: str | None = None,
    as_of: str | int | None = None,
    ref: str | int | None = None,
) -> Snapshot | None:
    """Find the snapshot a read refers to; the current one when nothing is given.

    ``snapshot_id``, ``tag`` and ``ref`` all go through :func:`find_snapshot`, so each takes
    an id, a tag or a unique id prefix.

    Returns:
        The snapshot, or None for a table that has no snapshot yet (read as empty).

    Raises:
        InvalidInputError: More than one of them was given, or an ambiguous prefix.
        NoSuchSnapshotError: Naming the table and the snapshot id, tag or time that matched nothing.
    """
    given = [x for x in (snapshot_id, tag, as_of, ref) if x is not None]
    if len(given) > 1:
        raise InvalidInputError("give only one of snapshot id, tag or as-of time")
    name = ".".join(table.name()[-2:])
    for named in (snapshot_id, tag, ref):
        if named is not None:
            return find_snapshot(table, named)
    if as_of is not None:
        ms = as_of if isinstance(as_of, int) else parse_time(as_of)
        snap = table.snapshot_as_of_timestamp(ms)
        if snap is None:
            raise NoSuchSnapshotError(f"{name} has no snapshot at or before {format_ms(ms)}")
        return snap
    return table.current_snapshot()


def create_tag(
    catalog: SqlCatalog, name: str, tag: str, snapshot_id: int | str | None = None
) -> SnapshotInfo:
    """Tag a snapshot (the current one by default; an id, tag or id prefix otherwise).
    Tagging the same snapshot again is a no-op.

    Raises:
        ConflictError: The tag exists and points at another snapshot.
        NoSuchSnapshotError: The snapshot is unknown, or the table has no snapshot to tag.
    """
    validate_tag(tag)
    tname = parse_table_name(name)

    def attempt() -> SnapshotInfo:
        table = load_table(catalog, tname)
        target = resolve_snapshot(table, ref=snapshot_id)
        if target is None:
            raise NoSuchSnapshotError(f"table {tname} has no snapshot to tag yet")
        existing = table.metadata.refs.get(tag)
        if existing is not None:
            if existing.snapshot_id == target.snapshot_id and (
                existing.snapshot_ref_type == SnapshotRefType.TAG
            ):
                return snapshot_info(table, target)
            raise ConflictError(
                f"tag {tag!r} already exists on {tname} (snapshot {existing.snapshot_id})"
            )
        table.manage_snapshots().create_tag(target.snapshot_id, tag).commit()
        return snapshot_info(load_table(catalog, tname), target)

    return retry_lost_races(attempt, f"tagging {tname}")


def list_tags(table: Table) -> list[dict[str, object]]:
    """Tags of the table with the snapshot each points at."""
    return [
        {"tag": tag, "snapshot_id": ref.snapshot_id}
        for tag, ref in sorted(table.metadata.refs.items())
        if ref.snapshot_ref_type == SnapshotRefType.TAG
    ]


@dataclass(frozen=True)
class Rollback:
    """What a rollback (or roll forward) did to a table."""

    table: str
    snapshot: SnapshotInfo
    previous_snapshot_id: int | None
    previous_short_id: str | None
    previous_schema_id: int
    schema_id: int
    columns_removed: tuple[str, ...] = ()
    columns_restored: tuple[str, ...] = ()
    kind: str = ""  # ROLLBACK, ROLL_FORWARD or NO_CHANGE (see RollbackPlan)

    @property
    def schema_changed(self) -> bool:
        """Whether the table's current schema changed (it was restored to the snapshot's)."""
        return self.schema_id != self.previous_schema_id

    def to_dict(self) -> dict[str, object]:
        """JSON-able form, with the snapshot as :meth:`SnapshotInfo.to_dict` has it."""
        return {**asdict(self), "snapshot": self.snapshot.to_dict(),
                "schema_changed": self.schema_changed}


class _SetCurrentSchema(UpdateTableMetadata["_SetCurrentSchema"]):
    """Make a schema the table already has its current schema again (staged in a
    transaction, so it commits together with the snapshot move)."""

    def __init__(self, transaction: Transaction, schema_id: int) -> None:
        super().__init__(transaction)
        self._schema_id = schema_id

    def _commit(self) -> UpdatesAndRequirements:
        current = self._transaction.table_metadata.current_schema_id
        # Fields by name at run time (populate_by_name); their pydantic aliases mislead mypy.
        return ((SetCurrentSchemaUpdate(schema_id=self._schema_id),),  # type: ignore[call-arg]
                (AssertCurrentSchemaId(current_schema_id=current),))  # type: ignore[call-arg]


def _column_names(table: Table, schema_id: int) -> list[str]:
    schema = table.schemas().get(schema_id)
    return [f.name for f in schema.fields] if schema is not None else []


ROLLBACK = "rollback"
ROLL_FORWARD = "roll forward"
NO_CHANGE = "no change"


@dataclass(frozen=True)
class RollbackPlan:
    """What making a snapshot current would do to a table, as its metadata tells now.

    ``kind`` is :data:`ROLLBACK` (the snapshot is the current one's ancestor, or the current
    one itself with another schema to restore), :data:`ROLL_FORWARD` (it was rolled back
    from) or :data:`NO_CHANGE`.
    """

    target: Snapshot
    previous: Snapshot | None
    schema_before: int
    schema_after: int
    kind: str
    columns_removed: tuple[str, ...] = ()
    columns_restored: tuple[str, ...] = ()

    @property
    def moves_snapshot(self) -> bool:
        """Whether the current snapshot changes (else at most the schema does)."""
        return self.previous is None or self.previous.snapshot_id != self.target.snapshot_id


def plan_rollback(table: Table, ref: int | str, *, keep_schema: bool = False) -> RollbackPlan:
    """What :func:`rollback` to ``ref`` would do, without committing anything (pure: reads
    only the table's metadata); a dry run shows it and the rollback carries it out.

    Raises:
        NoSuchSnapshotError: The snapshot is not in the table's history.
        ConflictError: The snapshot records no schema to restore (use ``keep_schema``).
    """
    target = find_snapshot(table, ref)
    current = table.current_snapshot()
    schema_before = table.metadata.current_schema_id
    schema_after = schema_before
    if not keep_schema:
        if target.schema_id is None or target.schema_id not in table.schemas():
            name = ".".join(table.name()[-2:])
            raise ConflictError(
                f"snapshot {target.snapshot_id} of {name} records no schema to restore "
                f"(schema id {target.schema_id}); roll back with --keep-schema "
                f"(keep_schema=True) to move only the snapshot")
        schema_after = target.schema_id
    same = current is not None and current.snapshot_id == target.snapshot_id
    if same and schema_after == schema_before:
        kind = NO_CHANGE
    elif target.snapshot_id in _ancestor_ids(table):  # the current one is its own ancestor
        kind = ROLLBACK
    else:
        kind = ROLL_FORWARD
    before_cols = _column_names(table, schema_before)
    after_cols = _column_names(table, schema_after)
    return RollbackPlan(
        target=target, previous=current, schema_before=schema_before,
        schema_after=schema_after, kind=kind,
        columns_removed=tuple(c for c in before_cols if c not in after_cols),
        columns_restored=tuple(c for c in after_cols if c not in before_cols))


def rollback(catalog: SqlCatalog, name: str | TableName, snapshot_id: int | str, *,
             keep_schema: bool = False) -> Rollback:
    """Make ``snapshot_id`` (an id, a tag or a unique id prefix) the table's current snapshot,
    and (unless ``keep_schema``) the schema that snapshot was written with the table's
    current schema again, so the table is as it was then.

    Restoring the schema matters for later writes: they are checked against the current
    schema, so columns a rolled-back write added (``evolve``) are new again and a batch that
    has them is refused without ``evolve``, as before that write. The snapshot and the schema
    move in one commit: a failure leaves the table as it was. Going back to an ancestor is a
    rollback; going to a snapshot that was rolled back from is a roll forward (its schema,
    with the columns it added, comes back too). Either way the history is kept, so every
    snapshot stays readable with its own columns.

    Args:
        catalog: The catalog.
        name: ``namespace.table``.
        snapshot_id: The snapshot to make current: an id, a tag or a unique id prefix.
        keep_schema: Move only the snapshot and leave the current schema as it is (columns
            added since stay in it; reads of the snapshot still show only its own columns).

    Returns:
        The snapshot made current, the one before, and the current schema id before and
        after (with the column names that left or came back).

    Raises:
        NoSuchSnapshotError: The snapshot is not in the table's history.
        ConflictError: The snapshot records no schema to restore (use ``keep_schema``), or
            too many lost races.
    """
    tname = name if isinstance(name, TableName) else parse_table_name(name)

    def attempt() -> Rollback:
        table = load_table(catalog, tname)
        plan = plan_rollback(table, snapshot_id, keep_schema=keep_schema)
        target_id = plan.target.snapshot_id
        previous_id = plan.previous.snapshot_id if plan.previous is not None else None
        previous_short = (_TableFacts.of(table).short.get(previous_id, str(previous_id))
                          if previous_id is not None else None)
        if plan.kind != NO_CHANGE:
            tx = table.transaction()
            if plan.moves_snapshot:
                manage = ManageSnapshots(tx)
                if plan.kind == ROLLBACK:
                    manage.rollback_to_snapshot(target_id)
                else:
                    manage.set_current_snapshot(snapshot_id=target_id)
                manage.commit()
            if plan.schema_after != plan.schema_before:
                _SetCurrentSchema(tx, plan.schema_after).commit()
            tx.commit_transaction()
        return Rollback(
            table=str(tname),
            snapshot=snapshot_info(load_table(catalog, tname), plan.target),
            previous_snapshot_id=previous_id,
            previous_short_id=previous_short,
            previous_schema_id=plan.schema_before,
            schema_id=plan.schema_after,
            columns_removed=plan.columns_removed,
            columns_restored=plan.columns_restored,
            kind=plan.kind,
        )

    return retry_lost_races(attempt, f"rolling back {tname}")
