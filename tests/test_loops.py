"""Runaway detection on JSON text (diffusion_engine.structured.loops.find_loop)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from diffusion_engine.structured.loops import find_loop, open_string, open_value


def cut_text(text: str, **kwargs) -> str | None:
    cut = find_loop(text, **kwargs)
    return None if cut is None else text[: cut.keep] + cut.close


def test_a_repeated_string_item_closes_the_array_before_it():
    text = '{"tags": ["red", "blue", "red", '
    assert cut_text(text) == '{"tags": ["red", "blue"]'
    assert find_loop(text).reason == "repeated array item"


def test_records_may_repeat_once_and_are_cut_at_the_second_repeat():
    one, other = '{"w": 6, "l": 4}', '{"w": 3, "l": 6}'
    assert find_loop(f'{{"sets": [{one}, {one}, ') is None  # 6-4, 6-4 is a real score line
    assert cut_text(f'{{"sets": [{one}, {other}, {one}, {one}, ') == f'{{"sets": [{one}, {other}, {one}]'


@pytest.mark.parametrize("items", ["1, 1, 1, 1, ", "true, true, true, ", "null, null, null, "])
def test_numbers_booleans_and_null_repeat_legitimately(items):
    assert find_loop('{"xs": [' + items) is None


def test_a_closed_array_is_left_alone():
    assert find_loop('{"a": ["x", "x"], "b": ') is None


def test_repeats_inside_strings_do_not_count_as_items():
    assert find_loop('{"a": ["x, \\"y\\", z", "x, \\"y\\", w", ') is None


def test_a_looping_string_keeps_one_copy_and_closes_the_string():
    unit = "full-stack-2023/"
    text = '{"skills": ["' + unit * 3
    assert cut_text(text) == '{"skills": ["' + unit + '"'
    assert find_loop(text).reason == "repeating string"
    assert find_loop('{"s": "' + "ha" * 10) is None  # "hahaha..." up to 3 x 8 characters is text
    assert find_loop('{"s": "' + unit * 2) is None  # two copies can be real text


def test_a_string_loop_seen_late_is_cut_where_it_started():
    # drafts can add many tokens in one round: the guard may first look at 4.5 copies
    head = '{"order": "No. '
    for copies in (3, 4, 5):
        text = head + "1234567890" * copies + "12345"
        assert cut_text(text) == head + '1234567890"'


def test_the_earliest_cut_wins_and_refused_cuts_are_skipped():
    text = '{"a": ["p", "q", "p", "q", "p", '
    first = find_loop(text)
    assert text[: first.keep] == '{"a": ["p", "q"'
    second = find_loop(text, ignore={first.keep})
    assert second is None or second.keep != first.keep


def test_nested_arrays_are_tracked_separately():
    text = '{"rows": [["a", "b"], ["c", "a", "c", '
    assert cut_text(text) == '{"rows": [["a", "b"], ["c", "a"]'
    closed = json.loads(cut_text(text) + "]}")
    assert closed == {"rows": [["a", "b"], ["c", "a"]]}


def test_a_run_of_records_repeated_back_to_back_is_cut_at_its_second_copy():
    a, b, c = '{"d": "subtotal"}', '{"d": "tax"}', '{"d": "total"}'
    head = '{"lines": [{"d": "paper"}, '
    assert find_loop(head + f"{a}, {b}, {c}, {a}, {b}, ") is None
    assert cut_text(head + f"{a}, {b}, {c}, {a}, {b}, {c}, ") == head + f"{a}, {b}, {c}]"
    assert find_loop(head + f"{a}, {b}, {c}, {a}, {b}, {c}, ").reason == "repeated run of array items"
    assert find_loop('{"xy": [1, 2, 1, 2, ') is None  # numbers only: a pair can repeat (coordinates)
    assert cut_text('{"years": [2016, 2019, 2020, 2019, 2020, 2019, 2020, ') == '{"years": [2016, 2019, 2020]'
    assert find_loop('{"zeros": [0, 0, 0, 0, 0, 0, ') is None


def close_open_containers(text: str) -> str:
    """``text`` (a JSON prefix ending right after a complete value) with its open containers closed."""
    stack, in_string, escaped = [], False, False
    for ch in text:
        if in_string:
            escaped = not escaped and ch == "\\"
            in_string = escaped or ch != '"'
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            stack.append("]" if ch == "[" else "}")
        elif ch in "]}":
            stack.pop()
    return text + "".join(reversed(stack))


WORDS = st.sampled_from(["red", "tax", "Lavafuna", "full-stack-2023/", 'say "hi"', "a\\b"])
RECORDS = st.fixed_dictionaries({"name": WORDS, "n": st.integers(0, 3)})
DOCUMENTS = st.fixed_dictionaries({
    "tags": st.lists(WORDS, max_size=6),
    "items": st.lists(RECORDS, max_size=6),
    "note": st.lists(WORDS, max_size=5).map("".join),
    "years": st.lists(st.integers(2019, 2020), max_size=8),
})


@settings(max_examples=150, deadline=None)
@given(DOCUMENTS)
def test_every_cut_leaves_a_document_that_closes_into_valid_json(doc):
    """Whatever the prefix, a cut keeps a JSON prefix whose open value the closer completes."""
    text = json.dumps(doc, separators=(", ", ": "))
    for end in range(1, len(text)):
        cut = find_loop(text[:end])
        if cut is None:
            continue
        kept = text[: cut.keep] + cut.close
        value = json.loads(close_open_containers(kept))  # raises if the cut broke the JSON
        assert isinstance(value, dict)
        assert cut.keep < end  # something was cut


def test_open_string_is_the_text_of_the_string_being_written():
    assert open_string('{"a": "Tom') == "Tom"
    assert open_string('{"a": "x \\" y') == 'x \\" y'  # an escaped quote does not close it
    assert open_string('{"a": "Tom", "b": ') is None and open_string("") is None


def test_open_value_is_the_string_or_number_being_written():
    assert open_value('{"a": "Tom') == "Tom"
    assert open_value('{"total": 41') == "41" and open_value('{"xs": [1, -2.5') == "-2.5"
    assert open_value('{"a": "x", "n": ') is None  # nothing written yet
    assert open_value('{"n": 41, ') is None and open_value('{"n": 41}') is None
    assert open_value('{"a": "room 41') == "room 41"  # digits inside a string are the string
