"""Runaway detection in a JSON document being generated: repeated array items, looping strings.

A small model under a grammar rarely ends an array once it starts repeating: on the
extraction set 16 of 60 SmolLM2 documents ran to the token cap, re-emitting the same
medication, ingredient or line item (or one string's text) until the budget ended them
invalid. ``find_loop`` spots the repetition in the text as soon as it is certain and
says where to cut and what closes the open value there:

* an item of an open array that repeats an earlier item of the same array -- cut before
  it and close the array with ``]``. A string's first repeat counts (a list of names or
  tags does not list one twice); a record (object or array) counts at its second repeat,
  since two equal records can be real (a tennis match won 6-4, 6-4); numbers, booleans
  and null never count alone. A run of two or more items repeated right after itself
  (``A, B, C, A, B, C``) is a loop at once (numbers only: at the third copy of the run,
  ``2019, 2020, 2019, 2020, 2019, 2020``); the copies after the first are cut;
* an open string whose text ends in ``copies`` back-to-back copies of the same unit of at
  least ``min_unit`` characters -- keep one copy and close the string with ``"``.

The caller re-tokenises ``text[:keep] + close`` and lets the grammar check it (``minItems``
or ``minLength`` may forbid the cut; then it is skipped). Pure text in, plain data out.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Collection, Iterator


#: copies of an array item allowed before the next one is a loop, by the item's first character
_ALLOWED_COPIES = {'"': 1, "{": 2, "[": 2}


@dataclass(frozen=True)
class LoopCut:
    #: characters of the document to keep
    keep: int
    #: text that closes the open value at ``keep``
    close: str
    reason: str


@dataclass
class _Array:
    items: Counter[str] = field(default_factory=Counter)
    order: list[str] = field(default_factory=list)
    #: the comma after each item in ``order``
    commas: list[int] = field(default_factory=list)
    item_start: int | None = None
    cut: LoopCut | None = None


class _Scan:
    """The characters of a JSON prefix outside strings (each string's opening quote
    included); once iterated, ``open_at`` is where the string still open at the end starts."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.open_at: int | None = None

    def __iter__(self) -> Iterator[tuple[int, str]]:
        in_string = escaped = False
        for i, ch in enumerate(self.text):
            if in_string:
                if escaped:
                    escaped = False
                elif ch == "\\":
                    escaped = True
                elif ch == '"':
                    in_string = False
                continue
            if ch == '"':
                in_string, self.open_at = True, i
            yield i, ch
        if not in_string:
            self.open_at = None


def find_loop(text: str, *, min_unit: int = 8, copies: int = 3, ignore: Collection[int] = ()) -> LoopCut | None:
    """The earliest cut that ends a repetition still open at the end of ``text`` (a JSON prefix),
    or None. Cuts whose ``keep`` is in ``ignore`` (the grammar refused them) are not proposed."""
    stack: list[_Array | None] = []  # None: an object
    scan = _Scan(text)
    for i, ch in scan:
        top = stack[-1] if stack else None
        if top is not None and top.item_start is None and not ch.isspace() and ch not in ",]":
            top.item_start = i
        if ch in "[{":
            stack.append(_Array() if ch == "[" else None)
        elif ch in "]}":
            if stack:
                stack.pop()
        elif ch == "," and top is not None:
            item = text[top.item_start:i].strip() if top.item_start is not None else ""
            if top.cut is None:
                top.cut = _repeat_cut(top, item, ignore)
            top.items[item] += 1
            top.order.append(item)
            top.commas.append(i)
            top.item_start = None
    cuts = [frame.cut for frame in stack if frame is not None and frame.cut is not None]
    if scan.open_at is not None:
        cut = _string_loop(text, scan.open_at + 1, min_unit, copies, ignore)
        if cut is not None:
            cuts.append(cut)
    return min(cuts, key=lambda c: c.keep) if cuts else None


def _repeat_cut(array: _Array, item: str, ignore: Collection[int]) -> LoopCut | None:
    """A cut before ``item`` (the next item of ``array``, just completed) or before the
    second of two back-to-back runs of items that it completes."""
    n = len(array.order)  # ``item``'s index
    allowed = _ALLOWED_COPIES.get(item[:1])
    if allowed is not None and array.items[item] >= allowed and array.commas[n - 1] not in ignore:
        return LoopCut(keep=array.commas[n - 1], close="]", reason="repeated array item")
    items = [*array.order, item]
    for run in range(2, (n + 1) // 2 + 1):
        last = items[-run:]
        if last != items[-2 * run:-run] or len(set(last)) < 2:  # one item repeated: the copies rule
            continue
        if any(i[:1] in _ALLOWED_COPIES for i in last):
            keep = array.commas[n - run]  # the comma that ends the first run
        elif 3 * run <= n + 1 and last == items[-3 * run:-2 * run]:
            keep = array.commas[n - 2 * run]  # numbers only: a third copy, keep the first
        else:
            continue
        if keep not in ignore:
            return LoopCut(keep=keep, close="]", reason="repeated run of array items")
    return None


def _string_loop(text: str, start: int, min_unit: int, copies: int, ignore: Collection[int]) -> LoopCut | None:
    """A cut keeping one copy when the open string ``text[start:]`` ends in ``copies`` repeats
    of a unit: the first copy of the periodic run it ends, or (that cut refused) the next."""
    content = text[start:]
    for unit in range(min_unit, len(content) // copies + 1):
        tail = content[-unit:]
        if not content.endswith(tail * copies):
            continue
        # the repetition may have started before the last ``copies`` units (a round can add
        # many tokens at once): cut from where the period starts, so the cut does not depend
        # on when it was looked for
        first = len(content) - copies * unit
        while first > 0 and content[first - 1] == content[first - 1 + unit]:
            first -= 1
        for keep in range(start + first + unit, len(text) - (copies - 1) * unit + 1, unit):
            if text[keep - 1] == "\\":  # never split an escape sequence
                return None
            if keep not in ignore:
                return LoopCut(keep=keep, close='"', reason="repeating string")
        return None
    return None


def open_string(text: str) -> str | None:
    """The text written so far of the string still open at the end of ``text`` (a JSON
    prefix), or None when the text does not end inside a string."""
    scan = _Scan(text)
    for _ in scan:
        pass
    return text[scan.open_at + 1:] if scan.open_at is not None else None


_OPEN_NUMBER = re.compile(r"[:\[,]\s*(-?[0-9][0-9.eE+-]*)$")


def open_value(text: str) -> str | None:
    """The text written so far of the string or number still open at the end of ``text``
    (a JSON prefix), or None. A number is open when the text ends in its digits right after
    ``:``, ``[`` or ``,`` (outside a string, since no string is open)."""
    written = open_string(text)
    if written is not None:
        return written
    number = _OPEN_NUMBER.search(text)
    return number.group(1) if number else None
