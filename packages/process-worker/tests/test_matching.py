"""Content-type and schema-criteria matching, rule by rule."""

from __future__ import annotations

from typing import Any

import pytest

from asset_post_process.common.filespin_models import SchemaCriteria
from asset_post_process.process_worker.matching import (
    InvalidCriteria,
    check_criteria,
    content_type_matches,
    parse_condition,
    same_schema_id,
    term_matches,
)


@pytest.mark.parametrize(
    ("content_type", "pattern", "expected"),
    [
        ("image/jpeg", "image/jpeg", True),
        ("image/jpeg", "image/png", False),
        ("image/jpeg", "image/*", True),
        ("video/mp4", "image/*", False),
        ("application/pdf", "*/*", True),
        ("application/pdf", "*", True),
        ("IMAGE/JPEG", "image/jpeg", True),
        ("image/jpeg", "Image/*", True),
        ("text/plain; charset=utf-8", "text/plain", True),
        ("text/plain", "text/plain; charset=utf-8", True),
        (" image/png ", "image/*", True),
        ("image", "image/*", False),
        ("imagex/png", "image/*", False),
        (None, "*/*", False),
        ("", "*/*", False),
        ("image/png", "", False),
    ],
)
def test_content_type_matching(content_type: str | None, pattern: str, expected: bool) -> None:
    assert content_type_matches(content_type, pattern) is expected


@pytest.mark.parametrize(
    ("value", "terms", "require_all"),
    [
        ("GM", ("GM",), False),
        ("GM OR TV", ("GM", "TV"), False),
        ("GM AND TV", ("GM", "TV"), True),
        ("A OR B OR C OR D OR E", ("A", "B", "C", "D", "E"), False),
        ("BRAND", ("BRAND",), False),  # AND inside a word is not an operator
        ("ORANGE OR ANDES", ("ORANGE", "ANDES"), False),
        ("gm and tv", ("gm and tv",), False),  # operators are upper-case words
        ("New York OR Paris", ("New York", "Paris"), False),
        (5, ("5",), False),
        (True, ("true",), False),
        ("", ("",), False),
    ],
)
def test_parse_condition(value: Any, terms: tuple[str, ...], require_all: bool) -> None:
    condition = parse_condition(value)
    assert condition.terms == terms
    assert condition.require_all is require_all


@pytest.mark.parametrize(
    "value",
    ["A OR B AND C", "A OR B OR C OR D OR E OR F", "AND B", "A OR", "A OR  OR B", {"x": 1}, [1, 2], None],
)
def test_invalid_conditions(value: Any) -> None:
    with pytest.raises(InvalidCriteria):
        parse_condition(value)


@pytest.mark.parametrize(
    ("term", "value", "expected"),
    [
        ("GM", "GM", True),
        ("GM", "gm", False),
        ("GM*", "GMX", True),
        ("GM*", "GM", True),
        ("GM*", "XGM", False),
        ("*", "anything", True),
        ("5", 5, True),
        ("true", True, True),
        ("GM", ["TV", "GM"], True),
        ("GM", ["TV"], False),
        ("GM", None, False),
        ("GM", {"GM": 1}, False),
    ],
)
def test_term_matches(term: str, value: Any, expected: bool) -> None:
    assert term_matches(term, value) is expected


@pytest.mark.parametrize(
    ("wanted", "actual", "expected"),
    [
        (1, 1, True),
        (1, "1", True),
        ("1", 1, True),
        (" 01", 1, True),
        (1, 2, False),
        ("abc", "abc", True),
        (1, None, False),
    ],
)
def test_same_schema_id(wanted: int | str, actual: Any, expected: bool) -> None:
    assert same_schema_id(wanted, actual) is expected


def test_criteria_validated_before_compared() -> None:
    # The schema id differs, but the invalid value is what gets reported: the criteria can never match.
    criteria = SchemaCriteria(data_schema_id=9, fields={"a": "X OR Y AND Z"})
    result = check_criteria(criteria, 1, {"a": "X"})
    assert (result.matched, result.code) == (False, "invalid")
    assert "mixes AND and OR" in result.reason


def test_empty_and_absent_criteria_match() -> None:
    assert check_criteria(None, None, {}).matched
    assert check_criteria(SchemaCriteria(), None, {}).matched
