"""Per-field grading of extraction outputs against gold JSON (the extract eval's checks).

Check kinds: ``exact`` (equal JSON values), ``number`` (numerically close; numeric
strings count), ``case_insensitive`` (strings equal ignoring case and surrounding
space), ``set`` (same elements in any order; strings compared case-insensitively),
``skip`` (not graded).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

CHECKS = ("exact", "number", "case_insensitive", "set", "skip")


def _norm(value: Any) -> Any:
    return value.strip().casefold() if isinstance(value, str) else value


def _as_number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.replace(",", "").strip())
        except ValueError:
            return None
    return None


def field_correct(check: str, predicted: Any, gold: Any) -> bool:
    if check == "exact":
        return type(predicted) is type(gold) and predicted == gold or (
            isinstance(predicted, (int, float)) and not isinstance(predicted, bool)
            and isinstance(gold, (int, float)) and not isinstance(gold, bool) and predicted == gold)
    if check == "number":
        p, g = _as_number(predicted), _as_number(gold)
        return p is not None and g is not None and math.isclose(p, g, rel_tol=1e-6, abs_tol=1e-9)
    if check == "case_insensitive":
        return isinstance(predicted, str) and isinstance(gold, str) and _norm(predicted) == _norm(gold)
    if check == "set":
        if not isinstance(predicted, list) or not isinstance(gold, list):
            return False
        try:
            return sorted(map(repr, map(_norm, predicted))) == sorted(map(repr, map(_norm, gold)))
        except TypeError:
            return False
    raise ValueError(f"unknown check {check!r}; expected one of {CHECKS}")


@dataclass(frozen=True)
class Grade:
    correct: int
    graded: int

    @property
    def accuracy(self) -> float:
        return self.correct / self.graded if self.graded else 1.0


def grade(predicted: Any, gold: Mapping[str, Any], checks: Mapping[str, str]) -> Grade:
    """Fields right out of fields graded; a non-object prediction gets none right."""
    graded = [(field, check) for field, check in checks.items() if check != "skip"]
    if not isinstance(predicted, Mapping):
        return Grade(0, len(graded))
    correct = sum(
        1 for field, check in graded
        if field in predicted and field_correct(check, predicted[field], gold.get(field))
    )
    return Grade(correct, len(graded))
