"""FileSpin's matching rules as small pure functions: content types and ``schema_criteria``.

Content types match exactly, by ``type/*`` or by ``*/*`` (case-insensitive; parameters such as
``; charset=utf-8`` are ignored). A ``schema_criteria`` field value may hold ``AND`` or ``OR`` (not both,
at most :data:`MAX_TERMS` terms) and a term may end in ``*`` for a prefix match.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from asset_post_process.common.filespin_models import SchemaCriteria

#: At most this many terms in one ``AND``/``OR`` criteria value (FileSpin's documented limit).
MAX_TERMS = 5

#: An ``AND``/``OR`` operator word: at the start or after blanks, followed by blanks or the end.
_OPERATOR = re.compile(r"(?:^|\s+)(AND|OR)(?=\s|$)")


def normalize_content_type(value: str | None) -> str:
    """``value`` lower-cased, without parameters and surrounding blanks (``""`` for none)."""
    if not value:
        return ""
    return value.split(";", 1)[0].strip().lower()


def content_type_matches(content_type: str | None, pattern: str) -> bool:
    """Whether ``content_type`` matches one pattern: exact, ``type/*`` or ``*/*`` (``*`` alone too)."""
    actual = normalize_content_type(content_type)
    wanted = normalize_content_type(pattern)
    if not actual or not wanted:
        return False
    if wanted in ("*/*", "*"):
        return True
    if wanted.endswith("/*"):
        major, slash, _ = actual.partition("/")
        return bool(slash) and major == wanted[:-2]
    return actual == wanted


def content_type_matches_any(content_type: str | None, patterns: Iterable[str]) -> bool:
    """Whether ``content_type`` matches at least one of ``patterns``."""
    return any(content_type_matches(content_type, p) for p in patterns)


class InvalidCriteria(ValueError):
    """A ``schema_criteria`` value FileSpin would refuse (mixed ``AND``/``OR``, too many terms, bad type)."""


@dataclass(frozen=True)
class FieldCondition:
    """One parsed criteria value: terms joined by ``AND`` (all) or ``OR`` (any)."""

    terms: tuple[str, ...]
    require_all: bool


def _scalar_text(value: Any) -> str | None:
    """The text a scalar compares as (``true``/``false`` for booleans); ``None`` for non-scalars."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | str):
        return str(value)
    return None


def parse_condition(value: Any) -> FieldCondition:
    """Parse one criteria field value; :class:`InvalidCriteria` when FileSpin's rules are broken."""
    text = _scalar_text(value)
    if text is None:
        raise InvalidCriteria(f"value must be a string, number or boolean, not {type(value).__name__}")
    parts = _OPERATOR.split(text.strip())
    terms = tuple(part.strip() for part in parts[0::2])
    operators = set(parts[1::2])
    if len(operators) > 1:
        raise InvalidCriteria(f"{text!r} mixes AND and OR")
    if len(terms) > MAX_TERMS:
        raise InvalidCriteria(f"{text!r} has {len(terms)} terms (at most {MAX_TERMS})")
    if len(terms) > 1 and any(not term for term in terms):
        raise InvalidCriteria(f"{text!r} has an empty term")
    return FieldCondition(terms=terms, require_all=operators == {"AND"})


def term_matches(term: str, value: Any) -> bool:
    """Whether one term matches an asset value: equal text, or prefix for a trailing ``*``.

    A list value matches when one of its elements does; ``None`` and objects never match.
    """
    if isinstance(value, list | tuple):
        return any(term_matches(term, item) for item in value)
    text = _scalar_text(value)
    if text is None:
        return False
    if term.endswith("*"):
        return text.startswith(term[:-1])
    return text == term


def condition_matches(condition: FieldCondition, value: Any) -> bool:
    """Whether an asset value satisfies a parsed condition."""
    results = (term_matches(term, value) for term in condition.terms)
    return all(results) if condition.require_all else any(results)


def same_schema_id(wanted: int | str, actual: Any) -> bool:
    """Whether two ``data_schema_id`` values are equal, ``1`` and ``"1"`` alike."""

    def canon(value: Any) -> str | None:
        if value is None or isinstance(value, bool):
            return None
        text = str(value).strip()
        if text.lstrip("-").isdigit():
            return str(int(text))
        return text or None

    wanted_text = canon(wanted)
    return wanted_text is not None and wanted_text == canon(actual)


@dataclass(frozen=True)
class CriteriaResult:
    """The verdict on ``schema_criteria``: ``matched``, or why not (``code``: mismatch kind)."""

    matched: bool
    code: str = ""
    reason: str = ""


def check_criteria(criteria: SchemaCriteria | None, schema_id: Any, data: Mapping[str, Any]) -> CriteriaResult:
    """Check ``criteria`` against an asset's ``data_schema_id`` and custom ``data``.

    Codes: ``schema_id`` (the schema differs), ``field`` (a field is missing or differs), ``invalid`` (the
    criteria themselves break FileSpin's rules). Every value is validated before any is compared, so an
    invalid criteria set is reported as such whatever the asset holds.
    """
    if criteria is None or criteria.is_empty:
        return CriteriaResult(True, reason="no schema criteria")
    conditions: dict[str, FieldCondition] = {}
    for name, raw in criteria.fields.items():
        try:
            conditions[name] = parse_condition(raw)
        except InvalidCriteria as exc:
            return CriteriaResult(False, "invalid", f"schema criteria field {name!r}: {exc}")
    if criteria.data_schema_id is not None and not same_schema_id(criteria.data_schema_id, schema_id):
        return CriteriaResult(
            False, "schema_id", f"asset data_schema_id {schema_id!r} is not {criteria.data_schema_id!r}"
        )
    for name, condition in conditions.items():
        if name not in data:
            return CriteriaResult(False, "field", f"asset data has no field {name!r}")
        if not condition_matches(condition, data[name]):
            return CriteriaResult(False, "field", f"asset field {name!r} does not match {criteria.fields[name]!r}")
    return CriteriaResult(True, reason="schema criteria match")
