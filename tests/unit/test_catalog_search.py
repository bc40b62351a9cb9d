"""Catalog search (pure): ranking, kinds, and which models use a column."""

import pytest

from icefloe.catalog.search import (
    Column,
    ModelDoc,
    TableDoc,
    Usage,
    all_columns,
    models_using,
    search,
    text_score,
)
from icefloe.errors import InvalidInputError

LOANS = TableDoc("lending.loans", (Column("annual_inc", "double"), Column("loan_status", "string"),
                                   Column("funded_amnt", "double"), Column("purpose", "string")))
SCORED = TableDoc("lending.scored", (Column("annual_inc", "double"),
                                     Column("bureau_score", "double")))
INCOME = TableDoc("hr.income_bands", (Column("band", "string"),))
MODELS = [
    ModelDoc("loan-default", "Probability that a loan is charged off", ("credit", "retail"),
             "approve loans", "high"),
    ModelDoc("churn", "Which customers leave; uses income", ("marketing",), "retention", "low"),
    ModelDoc("income-estimator", "", ("credit",)),
]
USAGES = [
    Usage("loan-default", 1, "lending.loans", ("annual_inc", "funded_amnt"), "loan_status"),
    Usage("loan-default", 2, "lending.loans", ("annual_inc", "funded_amnt", "purpose"),
          "loan_status"),
    Usage("bureau", 1, "lending.scored", ("annual_inc", "bureau_score"), "loan_status"),
    # a column the table no longer has (its schema was rolled back)
    Usage("loan-default", 3, "lending.loans", ("annual_inc", "home_ownership"), "loan_status"),
]


def _search(query: str, kind: str | None = None, limit: int = 50) -> list[dict]:
    return search(query, MODELS, [LOANS, SCORED, INCOME], USAGES, kind=kind, limit=limit)


def test_text_score_orders_exact_prefix_word_substring_and_terms() -> None:
    assert text_score("annual_inc", "ANNUAL_INC") == 1.0
    assert text_score("annual", "annual_inc") == 0.8
    assert text_score("inc", "annual_inc") == 0.6
    assert text_score("nual", "annual_inc") == 0.5
    assert text_score("loan charged", "Probability that a loan is charged off") == 0.4
    assert text_score("loan stolen", "Probability that a loan is charged off") == 0.0
    assert text_score("x", "") == 0.0


def test_which_models_use_column_annual_inc() -> None:
    hits = _search("annual_inc")
    columns = [h for h in hits if h["kind"] == "column"]
    assert [(h["table"], h["name"], h["type"]) for h in columns] == [
        ("lending.loans", "annual_inc", "double"), ("lending.scored", "annual_inc", "double")]
    assert columns[0]["models"] == [{"name": "loan-default", "versions": [1, 2, 3],
                                     "as": ["feature"]}]
    assert columns[1]["models"] == [{"name": "bureau", "versions": [1], "as": ["feature"]}]
    # an exact column name outranks a model whose description merely mentions "income"
    assert hits[0]["kind"] == "column" and hits[0]["score"] == 3.0


def test_a_label_column_names_its_models_as_label() -> None:
    loans, scored = _search("loan_status", kind="column")
    assert (loans["table"], loans["type"]) == ("lending.loans", "string")
    assert loans["models"] == [{"name": "loan-default", "versions": [1, 2, 3],
                                "as": ["label"]}]
    # lending.scored has no such column now; the lineage of bureau/1 still names it
    assert (scored["table"], scored["type"]) == ("lending.scored", None)
    assert scored["models"] == [{"name": "bureau", "versions": [1], "as": ["label"]}]
    assert models_using("lending.loans", "band", USAGES) == []


def test_a_column_only_lineage_still_names_is_found_without_a_type() -> None:
    (hit,) = _search("home_ownership")
    assert (hit["kind"], hit["table"], hit["type"]) == ("column", "lending.loans", None)
    assert hit["models"] == [{"name": "loan-default", "versions": [3], "as": ["feature"]}]
    pairs = all_columns([LOANS], USAGES)
    assert ("lending.loans", Column("annual_inc", "double")) in pairs
    assert len(pairs) == len(set(pairs))


def test_qualified_column_names_narrow_to_one_table() -> None:
    hits = _search("lending.scored.annual_inc", kind="column")
    assert hits[0]["table"] == "lending.scored" and hits[0]["score"] == 3.0
    assert all(h["score"] < 3.0 for h in hits[1:])


def test_models_rank_by_name_then_tags_use_case_and_description() -> None:
    hits = _search("income", kind="model")
    assert [h["name"] for h in hits] == ["income-estimator", "churn"]
    assert hits[0]["matched"] == ["name"] and hits[1]["matched"] == ["description"]
    credit = _search("credit", kind="model")
    assert [h["name"] for h in credit] == ["income-estimator", "loan-default"]  # tie: by name
    assert credit[0]["matched"] == ["tags"] and credit[0]["score"] == 2.0
    assert [h["name"] for h in _search("retention", kind="model")] == ["churn"]
    assert [h["name"] for h in _search("high", kind="model")] == ["loan-default"]


def test_tables_match_on_full_and_short_names_and_kinds_filter() -> None:
    assert [h["name"] for h in _search("loans", kind="table")] == ["lending.loans"]
    assert _search("lending.loans", kind="table")[0]["score"] == 3.0
    income = _search("income")
    assert {h["kind"] for h in income} == {"model", "table"}
    assert income[0] == {"kind": "model", "name": "income-estimator", "score": 2.4,
                         "matched": ["name"], "description": "", "tags": ["credit"],
                         "use_case": "", "risk_level": ""}
    assert any(h["kind"] == "table" and h["name"] == "hr.income_bands" for h in income)
    assert [h["name"] for h in _search("double", kind="column")] == [
        "annual_inc", "funded_amnt", "annual_inc", "bureau_score"]
    assert len(_search("a", limit=2)) == 2


@pytest.mark.parametrize(("query", "kind", "limit", "message"), [
    ("   ", None, 50, "q: give something"),
    ("x" * 256, None, 50, "q: at most 255"),
    ("loans", "view", 50, "kind 'view' is not one of model, table, column"),
    ("loans", None, 0, "limit must be between 1 and 500"),
])
def test_bad_queries_are_refused_naming_what(query: str, kind: str | None, limit: int,
                                              message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        _search(query, kind=kind, limit=limit)
