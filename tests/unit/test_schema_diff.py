"""How one schema's fields became another's (pure)."""

from pyiceberg.schema import Schema
from pyiceberg.types import DoubleType, FloatType, LongType, NestedField, StringType

from icefloe.lakehouse.schema import schema_diff, schema_fields


def test_fields_are_shown_with_id_name_type_and_required() -> None:
    schema = Schema(NestedField(1, "id", LongType(), required=True),
                    NestedField(2, "name", StringType(), required=False))
    assert schema_fields(schema) == [
        {"id": 1, "name": "id", "type": "long", "required": True},
        {"id": 2, "name": "name", "type": "string", "required": False}]


def test_diff_names_added_removed_and_changed_fields() -> None:
    before = schema_fields(Schema(
        NestedField(1, "id", LongType(), required=True),
        NestedField(2, "gone", StringType(), required=False),
        NestedField(3, "score", FloatType(), required=False),
        NestedField(4, "same", StringType(), required=False)))
    after = schema_fields(Schema(
        NestedField(1, "id", LongType(), required=False),
        NestedField(3, "score", DoubleType(), required=False),
        NestedField(4, "same", StringType(), required=False),
        NestedField(7, "new_b", StringType(), required=False),
        NestedField(6, "new_a", LongType(), required=False)))
    diff = schema_diff(before, after)
    assert [f["name"] for f in diff["added"]] == ["new_b", "new_a"]  # in the new order
    assert diff["added"][1] == {"id": 6, "name": "new_a", "type": "long", "required": False}
    assert diff["removed"] == [{"id": 2, "name": "gone", "type": "string", "required": False}]
    assert diff["changed"] == [
        {"name": "id", "from_type": "long", "to_type": "long", "from_required": True,
         "to_required": False},
        {"name": "score", "from_type": "float", "to_type": "double", "from_required": False,
         "to_required": False}]
    # Backwards is the mirror image; a schema against itself has no difference.
    back = schema_diff(after, before)
    assert back["added"] == diff["removed"] and back["removed"] == diff["added"]
    assert schema_diff(after, after) == {"added": [], "removed": [], "changed": []}


def test_a_column_added_again_with_a_new_field_id_is_no_change() -> None:
    before = [{"id": 2, "name": "c", "type": "string", "required": False}]
    after = [{"id": 5, "name": "c", "type": "string", "required": False}]
    assert schema_diff(before, after) == {"added": [], "removed": [], "changed": []}
