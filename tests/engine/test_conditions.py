"""Failure conditions decide whether a response means authentication failed."""

import pytest

from apiauth.engine.conditions import judge, validate_pattern
from apiauth.engine.config import Condition

HEADERS = {"Content-Type": "application/json", "X-Error": "E42 denied", "X-Remaining": "7"}
BODY = '{"status": "denied", "count": 12}'


def _judge(*conditions, status_code=200):
    return judge(conditions, status_code, HEADERS, BODY)


@pytest.mark.parametrize(
    "status_code, reason", [(200, None), (302, None), (399, None), (400, "http_400"), (503, "http_503")]
)
def test_without_rules_a_status_of_400_or_more_fails(status_code, reason):
    assert judge((), status_code, {}, "") == reason


@pytest.mark.parametrize(
    "condition, reason",
    [
        (Condition("status_code", "equals", "401"), None),
        (Condition("status_code", "equals", "200"), 'condition: status_code equals "200"'),
        (Condition("status_code", "not_equals", "200"), None),
        (Condition("status_code", "not_equals", "201"), 'condition: status_code not_equals "201"'),
        (Condition("status_code", "greater_than", "199"), 'condition: status_code greater_than "199"'),
        (Condition("status_code", "less_than", "300"), 'condition: status_code less_than "300"'),
        (Condition("status_code", "less_than", "200"), None),
        (Condition("status_code", "matches", "^2"), 'condition: status_code matches "^2"'),
        (Condition("body", "contains", "denied"), 'condition: body contains "denied"'),
        (Condition("body", "contains", "Denied"), None),
        (Condition("body", "not_contains", "granted"), 'condition: body not_contains "granted"'),
        (Condition("body", "not_contains", "denied"), None),
        (Condition("body", "equals", BODY), f'condition: body equals "{BODY}"'),
        (Condition("body", "not_equals", BODY), None),
        (Condition("body", "matches", r'"count": \d+'), 'condition: body matches ""count": \\d+"'),
        (Condition("body", "matches", "^denied"), None),
        (Condition("body", "greater_than", "1"), None),
        (Condition("header", "matches", "^E", name="x-error"), 'condition: header x-error matches "^E"'),
        (Condition("header", "contains", "denied", name="X-Error"), 'condition: header X-Error contains "denied"'),
        (Condition("header", "not_contains", "ok", name="X-Error"), 'condition: header X-Error not_contains "ok"'),
        (Condition("header", "equals", "E42 denied", name="X-ERROR"), 'condition: header X-ERROR equals "E42 denied"'),
        (Condition("header", "not_equals", "7", name="X-Remaining"), None),
        (Condition("header", "less_than", "10", name="X-Remaining"), 'condition: header X-Remaining less_than "10"'),
        (
            Condition("header", "greater_than", "6.5", name="X-Remaining"),
            'condition: header X-Remaining greater_than "6.5"',
        ),
        (Condition("header", "greater_than", "7", name="X-Remaining"), None),
    ],
)
def test_a_matching_rule_fails_and_is_named_in_the_reason(condition, reason):
    assert _judge(condition) == reason


def test_with_rules_the_status_code_alone_does_not_fail():
    assert _judge(Condition("body", "contains", "nothing-like-this"), status_code=500) is None


def test_the_first_matching_rule_is_the_reason():
    reason = _judge(Condition("body", "contains", "absent"), Condition("header", "matches", "^E", name="X-Error"))
    assert reason == 'condition: header X-Error matches "^E"'


@pytest.mark.parametrize("value", ["abc", "", "nan", "inf"])
def test_numeric_comparisons_never_match_a_non_number(value):
    assert _judge(Condition("header", "greater_than", value, name="X-Remaining")) is None
    assert _judge(Condition("header", "less_than", value, name="X-Remaining")) is None
    assert _judge(Condition("header", "less_than", "5", name="Content-Type")) is None


def test_a_missing_header_reads_as_empty():
    absent = Condition("header", "not_contains", "x", name="X-Missing")
    assert _judge(absent) == 'condition: header X-Missing not_contains "x"'
    assert _judge(Condition("header", "matches", ".", name="X-Missing")) is None


def test_header_pairs_with_repeated_names_are_joined():
    headers = [("Warning", "a"), ("warning", "b")]
    assert judge([Condition("header", "equals", "a, b", name="Warning")], 200, headers, "") is not None


def test_a_broken_pattern_never_matches():
    assert _judge(Condition("body", "matches", "([")) is None


def test_validate_pattern():
    assert validate_pattern(r"^E\d+") is None
    assert "regular expression" in validate_pattern("([")
