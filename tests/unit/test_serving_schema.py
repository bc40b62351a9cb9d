import pytest

from icefloe.errors import InvalidInputError
from icefloe.serving.schema import (
    FieldSpec,
    InputSchema,
    RequestTooLarge,
    describe_fields,
    new_fields,
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


@pytest.mark.parametrize(("raw", "fragment"), [
    (b'{"a": 1' + b"0" * 5000 + b"}", "more than 4300 digits (at byte 6)"),
    (b"[" * 100_000 + b"]" * 100_000, "nested deeper than 64 levels"),
    (b'{"a":' * 5000 + b"1" + b"}" * 5000, "nested deeper than 64 levels"),
    (b'{"a": [' + b"[" * 64 + b"]" * 65 + b"}", "nested deeper than 64 levels at a[0]"),
    (b'{"accessKey": "mab\\ud800"}', "field 'accessKey' is not valid: it holds a lone "
                                    "surrogate (U+D800 at character 3)"),
    (b'{"request": {"home": "\\uDFFF"}}', "field 'request.home'"),
    (b'{"requests": [{}, {"x\\udc00": 1}]}', "a field name in requests[1] is not valid"),
    (b'{"a": "\xed\xa0\x80"}', "not UTF-8"),  # a surrogate as bytes is no UTF-8
    (b'{"a": "\xff"}', "not UTF-8"),
])
def test_hostile_bodies_are_refused_naming_the_problem(raw: bytes, fragment: str) -> None:
    with pytest.raises(InvalidInputError) as info:
        parse_body(raw)
    assert info.value.http_status == 422
    assert fragment in info.value.message
    assert "mab" not in info.value.message  # a refused value (an access key) is not echoed


def test_strict_bodies_refuse_numbers_no_float_holds() -> None:
    body = b'{"m": {"a": [1, 1' + b"0" * 400 + b"]}}"
    assert parse_body(body)["m"]["a"][0] == 1  # model calls check numbers per field
    with pytest.raises(InvalidInputError, match=r"field 'm.a\[1\]': integer of 401 digits is "
                                                "too large for a floating-point number"):
        parse_body(body, strict=True)
    with pytest.raises(InvalidInputError, match="field 'x': number out of range"):
        parse_body(b'{"x": -1e400}', strict=True)
    nul = b'{"d": "ab\\u0000", "k": {"a\\u0000": 1}}'
    assert parse_body(nul)["d"] == "ab\x00"  # a model's string may hold one
    with pytest.raises(InvalidInputError, match=r"field 'd' is not valid: it holds a NUL "
                                                r"character \(at character 2\)"):
        parse_body(nul, strict=True)  # Postgres text cannot
    ok = b'{"x": 1.5e308, "y": -12345678901234567890, "s": "caf\\u00e9 \\ud83d\\ude00"}'
    assert parse_body(ok, strict=True)["s"] == "caf\u00e9 \U0001f600"  # a surrogate *pair*
    assert parse_body(b'{"k": [[[]]]}', 100, strict=True) == {"k": [[[]]]}
    with pytest.raises(RequestTooLarge, match="the limit is 100 bytes"):
        parse_body(b" " * 101, 100)
    with pytest.raises(RequestTooLarge, match="the limit is 1 MB"):
        parse_body(b" " * (1024 * 1024 + 1), 1024 * 1024)


@pytest.mark.parametrize("value", [10**400, -(10**39), 4e38, -3.5e38, 2**128])
def test_numbers_beyond_float32_name_the_field(value: float) -> None:
    with pytest.raises(InvalidInputError, match="field 'income' is out of range"):
        validate_record(SCHEMA, {"income": value, "home": "RENT"})
    assert validate_record(SCHEMA, {"income": 3.4e38, "home": "RENT"})["income"] == 3.4e38
    assert validate_record(SCHEMA, {"income": -(2**100), "home": "RENT"})["income"] == -(2**100)


def test_many_unknown_fields_make_a_short_message() -> None:
    record = {"income": 1, "home": "RENT", **{f"f{i:03}" * 50: 1 for i in range(500)}}
    with pytest.raises(InvalidInputError) as info:
        validate_record(SCHEMA, record)
    assert "and 480 more" in info.value.message and len(info.value.message) < 2500


def test_an_optional_field_left_out_is_scored_as_missing() -> None:
    region = FieldSpec("region", "string", ("N", "S"), nullable=True, optional=True)
    schema = InputSchema((*SCHEMA.fields, region))
    assert schema.optional_names == ("region",)
    assert validate_record(schema, {"income": 1, "home": "OWN"}) == {
        "income": 1, "home": "OWN", "region": None}
    assert validate_record(schema, {"income": 1, "home": "OWN", "region": "N"})["region"] == "N"
    # Fields without a declared default are still required, as before.
    with pytest.raises(InvalidInputError, match="missing field 'home'"):
        validate_record(schema, {"income": 1})
    with pytest.raises(InvalidInputError, match="missing field 'income'"):
        validate_record(schema, {"home": "OWN", "region": "N"})
    with pytest.raises(InvalidInputError, match="'region' must be a string"):
        validate_record(schema, {"income": 1, "home": "OWN", "region": 3})
    assert InputSchema.from_dict(schema.to_dict()) == schema
    # A schema stored before defaults were declared has none.
    stored = schema.to_dict()
    for f in stored["fields"]:
        del f["optional"]
    assert InputSchema.from_dict(stored).optional_names == ()


def test_new_fields_are_what_callers_of_the_serving_build_do_not_send() -> None:
    serving = InputSchema((FieldSpec("income", "number"), FieldSpec("gone", "number")))
    candidate = InputSchema((
        FieldSpec("region", "string", ("N",), nullable=True, optional=True),
        FieldSpec("income", "number"),
        FieldSpec("score", "number", nullable=True),
        FieldSpec("channel", "string", ("web",), nullable=True),  # no default declared
    ))
    added = new_fields(serving, candidate)
    assert [f.name for f in added.required] == ["score", "channel"]
    assert [f.name for f in added.defaulted] == ["region"]
    assert added.breaks_callers
    assert describe_fields(added.required) == "'score' (number), 'channel' (string)"
    # Only defaulted additions: callers keep working.
    only_strings = new_fields(serving, InputSchema((*serving.fields, candidate.fields[0])))
    assert not only_strings.breaks_callers and only_strings.required == ()
    assert not new_fields(serving, serving).breaks_callers
    # A dropped field is not new, but callers still send it: refused as unknown, so it
    # breaks them (unless the new build takes unknown fields).
    dropped = new_fields(serving, InputSchema(serving.fields[:1]))
    assert [f.name for f in dropped.removed] == ["gone"] and dropped.breaks_callers
    assert "refuses field(s) callers send today 'gone' (number)" in dropped.breaking()
    assert not new_fields(serving, InputSchema(serving.fields[:1], True)).breaks_callers
    # A field that turns from a number into a string breaks them too.
    kind = new_fields(serving, InputSchema((FieldSpec("income", "string"), serving.fields[1])))
    assert [f.name for f in kind.changed] == ["income"] and kind.breaks_callers
    assert "changes the kind of 'income' (string)" in kind.breaking()
    many = tuple(FieldSpec(f"f{i}", "number") for i in range(25))
    assert describe_fields(many).endswith("'f19' (number) and 5 more")
