import datetime as dt
import decimal

import pyarrow as pa

from icefloe.demo.loans import generate_loans
from icefloe.lakehouse.fingerprint import fingerprint


def test_order_independent_but_content_sensitive() -> None:
    t = generate_loans(500, 1, bad_batch=True)
    fp = fingerprint(t)
    assert fp.startswith("fp1:")
    assert fingerprint(t.take(list(reversed(range(t.num_rows))))) == fp
    assert fingerprint(t.slice(1)) != fp
    assert fingerprint(pa.concat_tables([t, t.slice(0, 1)])) != fp  # a duplicate row counts
    changed = t.set_column(0, t.column_names[0], pa.array([9] + t.column(0).to_pylist()[1:],
                                                            t.schema.field(0).type))
    assert fingerprint(changed) != fp
    assert fingerprint(t.rename_columns([c.upper() for c in t.column_names])) != fp


def test_all_types_and_nulls_are_hashed() -> None:
    t = pa.table({
        "ts": pa.array([dt.datetime(2024, 1, 1), None], pa.timestamp("us")),
        "d": pa.array([decimal.Decimal("1.10"), None], pa.decimal128(5, 2)),
        "b": [True, None], "x": [1.0, float("nan")], "day": pa.array([dt.date(2024, 1, 1), None]),
        "big": pa.array([2**62 + 1, None]),
    })
    fp = fingerprint(t)
    assert fingerprint(t.set_column(5, "big", pa.array([2**62, None]))) != fp
    assert fingerprint(t.set_column(1, "d", pa.array([decimal.Decimal("1.11"), None],
                                                     pa.decimal128(5, 2)))) != fp
    assert fingerprint(t.slice(0, 0)) != fingerprint(t)
