"""Pure schema logic: making Arrow data fit Iceberg, and deciding whether data fits a table.

Nothing here touches the catalog; :mod:`icefloe.lakehouse.tables` calls these before every
write so that a refusal names the offending column and happens before anything is written.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.io.pyarrow import _ConvertToIcebergWithoutIDs, schema_to_pyarrow, visit_pyarrow
from pyiceberg.schema import Schema
from pyiceberg.types import (
    DecimalType,
    DoubleType,
    FloatType,
    IcebergType,
    IntegerType,
    LongType,
)

from icefloe.errors import SchemaMismatchError


def _normalize_type(t: pa.DataType) -> pa.DataType:
    """The Arrow type Iceberg can store for ``t`` (microsecond timestamps, signed ints...)."""
    if pa.types.is_timestamp(t):
        return pa.timestamp("us", tz="UTC" if t.tz else None)
    if pa.types.is_time(t):
        return pa.time64("us")
    if pa.types.is_dictionary(t):
        return _normalize_type(t.value_type)
    if pa.types.is_null(t):
        return pa.string()
    if pa.types.is_uint8(t) or pa.types.is_uint16(t) or pa.types.is_int8(t) or pa.types.is_int16(t):
        return pa.int32()
    if pa.types.is_uint32(t) or pa.types.is_uint64(t):
        return pa.int64()
    if pa.types.is_float16(t):
        return pa.float32()
    if pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return pa.string()
    if pa.types.is_large_binary(t) or pa.types.is_binary_view(t):
        return pa.binary()
    if pa.types.is_date64(t):
        return pa.date32()
    return t


def normalize_arrow(data: pa.Table) -> pa.Table:
    """Cast columns to types Iceberg accepts; nanosecond timestamps are truncated to us.

    Raises:
        SchemaMismatchError: A column that cannot be cast (e.g. a uint64 over 2**63).
    """
    columns = []
    for name, column in zip(data.column_names, data.columns, strict=True):
        target = _normalize_type(column.type)
        if target != column.type:
            try:
                safe = not pa.types.is_timestamp(column.type)
                column = pc.cast(column, target, safe=safe)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise SchemaMismatchError(
                    f"column {name!r} of type {column.type} cannot be stored as {target}: {exc}"
                ) from exc
        columns.append(column)
    names = data.column_names
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise SchemaMismatchError(f"duplicate column name(s) in the data: {', '.join(dupes)}")
    return pa.Table.from_arrays(columns, names=names)


def iceberg_schema_of(data: pa.Schema) -> Schema:
    """Iceberg schema (with placeholder ids) for an Arrow schema."""
    schema = visit_pyarrow(data, _ConvertToIcebergWithoutIDs())
    assert isinstance(schema, Schema)
    return schema


def _is_widening(source: IcebergType, target: IcebergType) -> bool:
    """True if ``source`` values fit ``target`` without loss under Iceberg's promotion rules."""
    if source == target:
        return True
    if isinstance(source, IntegerType) and isinstance(target, LongType):
        return True
    if isinstance(source, FloatType) and isinstance(target, DoubleType):
        return True
    if isinstance(source, DecimalType) and isinstance(target, DecimalType):
        return source.scale == target.scale and source.precision <= target.precision
    return False


def _fits(source: IcebergType, target: IcebergType) -> bool:
    """True if ``source`` data can be written into a ``target`` column (checked per value).

    Beyond Iceberg's promotions this lets integers into floating-point columns, since CSV
    readers infer ``77300`` as an integer where the table holds doubles.
    """
    if _is_widening(source, target):
        return True
    return isinstance(source, IntegerType | LongType) and isinstance(target, FloatType | DoubleType)


@dataclass(frozen=True)
class WritePlan:
    """What a write must do to the schema: columns to add and columns to widen."""

    new_columns: tuple[str, ...] = ()
    widened_columns: tuple[str, ...] = ()

    @property
    def changes_schema(self) -> bool:
        """True if the table schema must be evolved for this write."""
        return bool(self.new_columns or self.widened_columns)


def plan_write(table_name: str, table_schema: Schema, data: pa.Schema, evolve: bool) -> WritePlan:
    """Decide whether ``data`` can be written into a table with ``table_schema``.

    Args:
        table_name: For messages.
        table_schema: The table's current Iceberg schema.
        data: Schema of the (normalized) data.
        evolve: Whether new columns may be added and compatible types widened.

    Returns:
        The schema changes the write needs (empty when the data fits as is).

    Raises:
        SchemaMismatchError: Naming the first offending column and what to do about it.
    """
    incoming = iceberg_schema_of(data)
    new_columns: list[str] = []
    widened: list[str] = []
    for field in incoming.fields:
        try:
            existing = table_schema.find_field(field.name, case_sensitive=True)
        except ValueError:
            new_columns.append(field.name)
            continue
        if _fits(field.field_type, existing.field_type):
            continue
        if _is_widening(existing.field_type, field.field_type):
            widened.append(field.name)
            continue
        raise SchemaMismatchError(
            f"column {field.name!r} is {field.field_type} in the data but "
            f"{existing.field_type} in table {table_name}; the types are not compatible"
        )
    incoming_names = {f.name for f in incoming.fields}
    for field in table_schema.fields:
        if field.required and field.name not in incoming_names:
            raise SchemaMismatchError(
                f"column {field.name!r} is required by table {table_name} but missing from the data"
            )
    if not evolve and new_columns:
        cols = ", ".join(repr(c) for c in new_columns)
        raise SchemaMismatchError(
            f"column(s) {cols} not in table {table_name}; "
            "append with --evolve (evolve=True) to add them"
        )
    # Without evolve, wider data (a pandas int64 for an int column) is cast down by
    # cast_to_table, which refuses values that do not fit.
    return WritePlan(tuple(new_columns), tuple(widened) if evolve else ())


def cast_to_table(data: pa.Table, table_schema: Schema, table_name: str = "the table") -> pa.Table:
    """Cast columns to the table's types: widening always, narrowing only where values fit.

    Raises:
        SchemaMismatchError: A value does not fit the table's (narrower) column type.
    """
    target = schema_to_pyarrow(table_schema, include_field_ids=False)
    columns = []
    for name, column in zip(data.column_names, data.columns, strict=True):
        idx = target.get_field_index(name)
        if idx >= 0:
            want = target.field(idx).type
            if pa.types.is_large_string(want):
                want = pa.string()
            if pa.types.is_large_binary(want):
                want = pa.binary()
            if want != column.type:
                try:
                    column = pc.cast(column, want, safe=True)
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                    raise SchemaMismatchError(
                        f"column {name!r} has values that do not fit {want} in {table_name}; "
                        "write with --evolve (evolve=True) to widen the column"
                    ) from exc
        columns.append(column)
    return pa.Table.from_arrays(columns, names=data.column_names)


def evolution_schema(table_schema: Schema, data: pa.Schema, plan: WritePlan) -> pa.Schema:
    """The Arrow schema to union into the table: the data's columns with the table's types
    everywhere except for new and widened columns, so that ``union_by_name`` never tries to
    narrow a column the data merely fits into (an integer CSV column into a double column)."""
    target = schema_to_pyarrow(table_schema, include_field_ids=False)
    fields = []
    for field in data:
        idx = target.get_field_index(field.name)
        keep_data_type = idx < 0 or field.name in plan.widened_columns
        fields.append(field if keep_data_type else field.with_type(target.field(idx).type))
    return pa.schema(fields)


def schema_fields(schema: Schema) -> list[dict[str, object]]:
    """A schema's top-level fields as the API shows them: ``id``, ``name``, ``type`` (Iceberg's
    text, nested types included, e.g. ``list<string>``) and ``required``."""
    return [{"id": f.field_id, "name": f.name, "type": str(f.field_type),
             "required": f.required} for f in schema.fields]


def schema_diff(before: Sequence[Mapping[str, object]],
                after: Sequence[Mapping[str, object]]) -> dict[str, list[dict[str, object]]]:
    """How the fields of one schema became those of another, by field name (pure).

    Args:
        before: Fields as :func:`schema_fields` gives them.
        after: The same for the other schema.

    Returns:
        ``added`` (fields only ``after`` has, in its order), ``removed`` (only ``before``
        has, in its order) and ``changed`` (in both, with another type or nullability:
        ``name``, ``from_type``, ``to_type``, ``from_required``, ``to_required``). A column
        dropped and added again with the same type is not a change, although Iceberg gives it
        a new field id: readers see the same column.
    """
    old = {str(f["name"]): f for f in before}
    new = {str(f["name"]): f for f in after}
    changed = [{"name": name, "from_type": old[name]["type"], "to_type": f["type"],
                "from_required": old[name]["required"], "to_required": f["required"]}
               for name, f in new.items() if name in old
               and (old[name]["type"], old[name]["required"]) != (f["type"], f["required"])]
    return {"added": [dict(f) for name, f in new.items() if name not in old],
            "removed": [dict(f) for name, f in old.items() if name not in new],
            "changed": changed}
