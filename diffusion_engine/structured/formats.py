"""String formats and patterns: narrower character sets for slots, and deterministic
minimal valid values used by repair when refills did not produce one."""

from __future__ import annotations

import re
import string
from re import _constants as sre_c  # type: ignore[attr-defined]
from re import _parser as sre_parse  # type: ignore[attr-defined]

from jsonschema import FormatChecker

#: the checker every validation in this package uses (slot checks, documents, repair)
FORMAT_CHECKER = FormatChecker()

_DIGITS = string.digits
_HEX = string.digits + "abcdefABCDEF"
_EMAIL = string.ascii_letters + string.digits + "._%+-@"
_HOST = string.ascii_letters + string.digits + ".-"
_URI = string.ascii_letters + string.digits + "-._~:/?#[]@!$&'()*+,;=%"

#: format -> (characters a slot may use, a canonical value FormatChecker accepts)
FORMATS: dict[str, tuple[str, str]] = {
    "date": (_DIGITS + "-", "2000-01-01"),
    "date-time": (_DIGITS + "-:.TZ+", "2000-01-01T00:00:00Z"),
    "time": (_DIGITS + ":.Z+-", "00:00:00"),
    "email": (_EMAIL, "user@example.com"),
    "idn-email": (_EMAIL, "user@example.com"),
    "uuid": (_HEX + "-", "00000000-0000-4000-8000-000000000000"),
    "ipv4": (_DIGITS + ".", "127.0.0.1"),
    "ipv6": (_HEX + ":.", "::1"),
    "hostname": (_HOST, "example.com"),
    "idn-hostname": (_HOST, "example.com"),
    "uri": (_URI, "https://example.com"),
    "iri": (_URI, "https://example.com"),
    "uri-reference": (_URI, "https://example.com"),
    "iri-reference": (_URI, "https://example.com"),
    "duration": (_DIGITS + "PYMWDTHS.", "P1D"),
    "json-pointer": (_URI, "/a"),
    "relative-json-pointer": (_DIGITS + "/#~", "0"),
    "regex": (string.ascii_letters + string.digits + ".*+?[]()|^$-", "a"),
    "uri-template": (_URI + "{}", "https://example.com"),
    "color": (string.ascii_letters + string.digits + "#", "red"),
}

#: how many characters a value of the format takes at most (slot budget in characters)
FORMAT_LENGTH: dict[str, int] = {
    "date": 10, "date-time": 25, "time": 15, "uuid": 36, "ipv4": 15, "ipv6": 39,
}


def format_charset(fmt: str | None) -> str | None:
    if fmt is None or fmt not in FORMATS:
        return None
    return FORMATS[fmt][0]


def format_example(fmt: str) -> str | None:
    entry = FORMATS.get(fmt)
    return entry[1] if entry else None


class RegexExampleError(ValueError):
    pass


_CATEGORY_CHARS = {
    sre_c.CATEGORY_DIGIT: "0",
    sre_c.CATEGORY_NOT_DIGIT: "a",
    sre_c.CATEGORY_SPACE: " ",
    sre_c.CATEGORY_NOT_SPACE: "a",
    sre_c.CATEGORY_WORD: "a",
    sre_c.CATEGORY_NOT_WORD: "-",
}


def pattern_example(pattern: str, min_length: int = 0) -> str:
    """A short string that ``re.search(pattern, ...)`` accepts.

    Walks the parsed regex taking the cheapest path (first alternative, minimum
    repetitions), then stretches the first stretchable repeat toward ``min_length``.
    Raises ``RegexExampleError`` for constructs without a cheap witness (lookarounds,
    backreferences); the caller then tries other candidates.
    """
    try:
        parsed = sre_parse.parse(pattern)
    except re.error as exc:
        raise RegexExampleError(f"invalid pattern {pattern!r}: {exc}") from exc
    text = _emit(parsed, extra=0)
    if len(text) < min_length:
        stretched = _emit(parsed, extra=min_length - len(text))
        if re.search(pattern, stretched):
            text = stretched
    if re.search(pattern, text) is None:
        raise RegexExampleError(f"no simple example for pattern {pattern!r}")
    return text


def _emit(items, extra: int) -> str:
    out: list[str] = []
    budget = [extra]
    _emit_into(items, out, budget)
    return "".join(out)


def _emit_into(items, out: list[str], budget: list[int]) -> None:
    for op, arg in items:
        if op is sre_c.LITERAL:
            out.append(chr(arg))
        elif op is sre_c.NOT_LITERAL:
            out.append("a" if chr(arg) != "a" else "b")
        elif op is sre_c.ANY:
            out.append("a")
        elif op is sre_c.IN:
            out.append(_class_char(arg))
        elif op in (sre_c.MAX_REPEAT, sre_c.MIN_REPEAT, getattr(sre_c, "POSSESSIVE_REPEAT", None)):
            lo, hi, sub = arg
            count = lo
            if budget[0] > 0 and (hi is sre_c.MAXREPEAT or hi > lo):
                room = budget[0] if hi is sre_c.MAXREPEAT else min(budget[0], hi - lo)
                count += room
                budget[0] -= room
            for _ in range(count):
                _emit_into(sub, out, budget)
        elif op is sre_c.SUBPATTERN:
            _emit_into(arg[-1], out, budget)
        elif op is getattr(sre_c, "ATOMIC_GROUP", None):
            _emit_into(arg, out, budget)
        elif op is sre_c.BRANCH:
            _emit_into(arg[1][0], out, budget)
        elif op is sre_c.AT:
            continue  # anchors add no characters
        elif op is sre_c.CATEGORY:
            out.append(_CATEGORY_CHARS.get(arg, "a"))
        else:
            raise RegexExampleError(f"regex construct {op} has no simple example")


def _class_char(members) -> str:
    negated = any(op is sre_c.NEGATE for op, _ in members)
    if negated:
        for cand in "aA0_-x ":
            if re.fullmatch(_class_regex(members), cand):
                return cand
        raise RegexExampleError("negated character class without a simple member")
    for op, arg in members:
        if op is sre_c.LITERAL:
            return chr(arg)
        if op is sre_c.RANGE:
            return chr(arg[0])
        if op is sre_c.CATEGORY:
            return _CATEGORY_CHARS.get(arg, "a")
    raise RegexExampleError("empty character class")


def _class_regex(members) -> str:
    parts = []
    for op, arg in members:
        if op is sre_c.NEGATE:
            parts.insert(0, "^")
        elif op is sre_c.LITERAL:
            parts.append(re.escape(chr(arg)))
        elif op is sre_c.RANGE:
            parts.append(f"{re.escape(chr(arg[0]))}-{re.escape(chr(arg[1]))}")
        elif op is sre_c.CATEGORY:
            parts.append({sre_c.CATEGORY_DIGIT: r"\d", sre_c.CATEGORY_NOT_DIGIT: r"\D",
                          sre_c.CATEGORY_SPACE: r"\s", sre_c.CATEGORY_NOT_SPACE: r"\S",
                          sre_c.CATEGORY_WORD: r"\w", sre_c.CATEGORY_NOT_WORD: r"\W"}.get(arg, ""))
    return "[" + "".join(parts) + "]"
