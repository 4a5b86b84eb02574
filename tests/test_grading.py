"""The extraction grader: each check kind accepts what it should and nothing else."""

from __future__ import annotations

import pytest

from diffusion_engine.grading import field_correct, grade


@pytest.mark.parametrize("check,predicted,gold,expected", [
    ("exact", "2024-03-05", "2024-03-05", True),
    ("exact", "2024-3-5", "2024-03-05", False),
    ("exact", 40, 40, True),
    ("exact", 40.0, 40, True),
    ("exact", True, 1, False),
    ("exact", "40", 40, False),
    ("number", 412.5, 412.5, True),
    ("number", "412.50", 412.5, True),
    ("number", 412.51, 412.5, False),
    ("number", True, 1, False),
    ("case_insensitive", " Maple Street Bakery", "maple street bakery", True),
    ("case_insensitive", "Maple St Bakery", "Maple Street Bakery", False),
    ("case_insensitive", None, "x", False),
    ("set", ["b", "A"], ["a", "B"], True),
    ("set", ["a"], ["a", "b"], False),
    ("set", "a", ["a"], False),
])
def test_field_checks(check, predicted, gold, expected):
    assert field_correct(check, predicted, gold) is expected


def test_grade_counts_fields_and_skips():
    gold = {"a": "X", "b": 2, "c": ["p", "q"], "d": "ignored"}
    checks = {"a": "case_insensitive", "b": "number", "c": "set", "d": "skip"}
    result = grade({"a": "x", "b": 3, "c": ["q", "p"], "d": "anything"}, gold, checks)
    assert (result.correct, result.graded) == (2, 3)
    assert grade(["not", "an", "object"], gold, checks).correct == 0
    assert grade({}, gold, checks).accuracy == 0.0


def test_unknown_check_is_an_error():
    with pytest.raises(ValueError, match="unknown check"):
        field_correct("fuzzy", "a", "a")
