"""Failure conditions: decide from a response whether authentication failed."""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Iterable, Mapping

from .config import Condition

Headers = Mapping[str, str] | Iterable[tuple[str, str]]


def _number(text: str) -> float | None:
    """Return text as a finite number, or None."""
    try:
        number = float(text)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _compare(compare):
    """Return an operator that compares both sides as numbers; a non-number never matches."""

    def numeric(subject: str, value: str) -> bool:
        left, right = _number(subject), _number(value)
        return left is not None and right is not None and compare(left, right)

    return numeric


def _search(subject: str, pattern: str) -> bool:
    """Return whether the regular expression matches anywhere; a broken one never matches."""
    try:
        return re.search(pattern, subject) is not None
    except re.error:
        return False


OPERATORS = {
    "equals": operator.eq,
    "not_equals": operator.ne,
    "contains": lambda subject, value: value in subject,
    "not_contains": lambda subject, value: value not in subject,
    "matches": _search,
    "greater_than": _compare(operator.gt),
    "less_than": _compare(operator.lt),
}


def header_value(headers: Headers, name: str) -> str:
    """Return a header's value by case-insensitive name, repeated values joined; "" if absent."""
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    return ", ".join(value for key, value in pairs if key.lower() == name.lower())


def _subject(condition: Condition, status_code: int, headers: Headers, body: str) -> str:
    """Return the part of the response that a condition looks at."""
    if condition.source == "status_code":
        return str(status_code)
    if condition.source == "header":
        return header_value(headers, condition.name)
    return body


def describe(condition: Condition) -> str:
    """Return the failure reason that names a condition."""
    source = f"header {condition.name}" if condition.source == "header" else condition.source
    return f'condition: {source} {condition.operator} "{condition.value}"'


def matches(condition: Condition, status_code: int, headers: Headers, body: str) -> bool:
    """Return whether a response matches a condition."""
    compare = OPERATORS[condition.operator]
    return compare(_subject(condition, status_code, headers, body), condition.value)


def judge(conditions: Iterable[Condition], status_code: int, headers: Headers, body: str) -> str | None:
    """Return None when authentication succeeded, else the reason it failed."""
    conditions = tuple(conditions)
    if not conditions:
        return f"http_{status_code}" if status_code >= 400 else None
    failed = next((c for c in conditions if matches(c, status_code, headers, body)), None)
    return describe(failed) if failed else None


def validate_pattern(value: str) -> str | None:
    """Return why a regular expression does not compile, or None when it does."""
    try:
        re.compile(value)
    except re.error as error:
        return f"not a valid regular expression: {error}"
    return None
