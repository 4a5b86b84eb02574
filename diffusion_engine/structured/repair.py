"""Deterministic minimal repair of one slot value that failed its constraints.

Candidates go from "closest to what the model wrote" to "canonical": truncate/pad the
model's string, the format's canonical value, a pattern witness; clamp numbers into
bounds and snap them to ``multipleOf``. The first candidate the slot validator accepts
wins; when none does we raise rather than hand out invalid JSON.
"""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any, Callable

from .errors import StructuredOutputError
from .formats import RegexExampleError, format_example, pattern_example
from .skeleton import Slot, SlotKind


def repair_value(slot: Slot, raw: Any, is_valid: Callable[[Any], bool]) -> Any:
    if slot.kind is SlotKind.STRING:
        candidates = _string_candidates(slot, raw)
    elif slot.kind in (SlotKind.INTEGER, SlotKind.NUMBER):
        candidates = _number_candidates(slot, raw)
    else:
        candidates = list(slot.options[:1])
    if slot.nullable:
        candidates.append(None)
    for cand in candidates:
        if is_valid(cand):
            return cand
    raise StructuredOutputError(
        f"no valid value for {slot.pointer} ({slot.constraints}); simplify that part of the schema")


def _string_candidates(slot: Slot, raw: Any) -> list[Any]:
    c = slot.constraints
    text = raw if isinstance(raw, str) else ""
    lo = int(c.get("minLength", 0) or 0)
    hi = c.get("maxLength")
    out: list[Any] = []
    fitted = text[:hi] if isinstance(hi, int) else text
    if len(fitted) < lo:
        fitted = fitted + "x" * (lo - len(fitted))
    out.append(fitted)
    if slot.fmt and format_example(slot.fmt):
        out.append(format_example(slot.fmt))
    if isinstance(c.get("pattern"), str):
        try:
            witness = pattern_example(c["pattern"], lo)
            out.append(witness)
            if isinstance(hi, int):
                out.append(witness[:hi])
            if len(witness) < lo:  # patterns are unanchored unless they say so: pad around
                out.extend([witness + "x" * (lo - len(witness)), "x" * (lo - len(witness)) + witness])
        except RegexExampleError:
            pass
    out.append("x" * lo)
    return out


def _number_candidates(slot: Slot, raw: Any) -> list[Any]:
    c = slot.constraints
    integer = slot.kind is SlotKind.INTEGER
    value = raw if isinstance(raw, (int, float)) and not isinstance(raw, bool) else 0
    if isinstance(value, float) and not math.isfinite(value):
        value = 0
    lo, hi = c.get("minimum"), c.get("maximum")
    xlo, xhi = c.get("exclusiveMinimum"), c.get("exclusiveMaximum")
    step = c.get("multipleOf")
    nudge = 1 if integer else (step or 1e-6)
    if isinstance(xlo, (int, float)):
        lo = max(lo, xlo + nudge) if lo is not None else xlo + nudge
    if isinstance(xhi, (int, float)):
        hi = min(hi, xhi - nudge) if hi is not None else xhi - nudge
    if integer:
        lo = math.ceil(lo) if lo is not None else None
        hi = math.floor(hi) if hi is not None else None
    clamped = value
    if lo is not None and clamped < lo:
        clamped = lo
    if hi is not None and clamped > hi:
        clamped = hi
    out: list[Any] = [clamped]
    if isinstance(step, (int, float)) and step > 0:
        out.extend(_multiples_near(clamped, step, lo, hi, integer))
    out.extend(v for v in (lo, hi, 0) if v is not None)
    if integer:
        out = [int(v) if isinstance(v, float) and v.is_integer() else v for v in out]
    return out


def _multiples_near(value: float, step: float, lo: Any, hi: Any, integer: bool) -> list[Any]:
    d_step = Decimal(str(step))
    k = (Decimal(str(value)) / d_step).to_integral_value()
    out: list[Any] = []
    for kk in (k, k + 1, k - 1, (Decimal(str(lo)) / d_step).to_integral_value(rounding="ROUND_CEILING")
               if lo is not None else k,
               (Decimal(str(hi)) / d_step).to_integral_value(rounding="ROUND_FLOOR") if hi is not None else k):
        exact = kk * d_step
        if integer:
            if exact == exact.to_integral_value():
                out.append(int(exact))
        else:
            out.append(int(exact) if exact == exact.to_integral_value() else float(exact))
    return out
