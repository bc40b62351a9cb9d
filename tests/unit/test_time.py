import pytest

from icefloe.errors import InvalidInputError
from icefloe.lakehouse.snapshots import format_ms, parse_time


def test_parse_time_formats() -> None:
    ms = 1_795_651_200_000  # 2026-11-26T00:00:00Z
    assert parse_time("2026-11-26T00:00:00Z") == ms
    assert parse_time("2026-11-26T00:00:00") == ms
    assert parse_time("2026-11-26T01:00:00+01:00") == ms
    assert parse_time(str(ms)) == ms
    assert format_ms(ms).startswith("2026-11-26T00:00:00")


def test_parse_time_refuses_garbage() -> None:
    with pytest.raises(InvalidInputError, match="yesterday"):
        parse_time("yesterday")
