import pytest

from icefloe.errors import InvalidNameError
from icefloe.lakehouse.names import parse_table_name, validate_namespace, validate_tag


def test_valid_table_name() -> None:
    name = parse_table_name("lending.loans")
    assert (name.namespace, name.table) == ("lending", "loans")
    assert str(name) == "lending.loans"


@pytest.mark.parametrize(
    ("bad", "fragment"),
    [
        ("../x", "invalid table name"),
        ("a;drop", "namespace.table"),
        ("lending.a;drop", "'a;drop'"),
        ("", "empty"),
        ("ns." + "x" * 253, "limit is 255"),
        ("loans", "namespace.table"),
        ("a.b.c", "namespace.table"),
        ("lending.", "namespace.table"),
        ("1ns.t", "'1ns'"),
        ("ns.t-1", "'t-1'"),
        ("ns.t x", "'t x'"),
    ],
)
def test_invalid_table_names_are_refused_with_the_name(bad: str, fragment: str) -> None:
    with pytest.raises(InvalidNameError) as info:
        parse_table_name(bad)
    assert fragment in info.value.message


def test_namespace_and_tag_rules() -> None:
    assert validate_namespace("lending") == "lending"
    with pytest.raises(InvalidNameError):
        validate_namespace("../etc")
    assert validate_tag("v1.0-rc_1") == "v1.0-rc_1"
    for bad in ("", "main", "a/b", "../x", "x" * 256, "a b"):
        with pytest.raises(InvalidNameError):
            validate_tag(bad)
