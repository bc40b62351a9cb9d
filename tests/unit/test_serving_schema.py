import pytest

from icefloe.errors import InvalidInputError
from icefloe.serving.schema import (
    FieldSpec,
    InputSchema,
    RequestTooLarge,
    parse_body,
    validate_record,
)

SCHEMA = InputSchema((FieldSpec("income", "number"), FieldSpec("home", "string",
                                                                ("RENT", "OWN"), nullable=True)))


def test_valid_records_and_unseen_categories_pass() -> None:
    assert validate_record(SCHEMA, {"income": 5, "home": "RENT"}) == {"income": 5, "home": "RENT"}
    assert validate_record(SCHEMA, {"income": 5.5, "home": "CASTLE"})["home"] == "CASTLE"
    assert validate_record(SCHEMA, {"income": 1, "home": None})["home"] is None


@pytest.mark.parametrize(("record", "fragment"), [
    ({"home": "RENT"}, "missing field 'income'"),
    ({"income": 1, "home": "RENT", "age": 3}, "unknown field(s) 'age'"),
    ({"income": "12", "home": "RENT"}, "'income' must be a number, got str"),
    ({"income": True, "home": "RENT"}, "'income' must be a number"),
    ({"income": None, "home": "RENT"}, "'income' may not be null"),
    ({"income": float("inf"), "home": "RENT"}, "'income' must be finite"),
    ({"income": 1, "home": 3}, "'home' must be a string"),
    ([1, 2], "JSON object"),
])
def test_bad_records_name_the_field(record, fragment: str) -> None:
    with pytest.raises(InvalidInputError) as info:
        validate_record(SCHEMA, record)
    assert fragment in info.value.message


def test_bodies() -> None:
    assert parse_body(b'{"a": 1}') == {"a": 1}
    with pytest.raises(InvalidInputError, match="NaN is not a valid number"):
        parse_body(b'{"a": NaN}')
    with pytest.raises(InvalidInputError, match="malformed JSON"):
        parse_body(b'{"a": ')
    with pytest.raises(RequestTooLarge) as info:
        parse_body(b" " * (5 * 1024 * 1024 + 1))
    assert info.value.http_status == 413
    assert InputSchema.from_dict(SCHEMA.to_dict()) == SCHEMA
    lenient = InputSchema(SCHEMA.fields, allow_unknown_fields=True)
    assert validate_record(lenient, {"income": 1, "home": "OWN", "x": 1}) == {
        "income": 1, "home": "OWN"}
