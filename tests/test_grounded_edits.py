"""Predicted Outputs as grounded edit operations: what an instruction grounds in a document,
how an operation is applied, and the diffusion backend returning the whole edited document
(over a tiny random model: the grammar alone picks the operation when one is grounded)."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.backends.grounded_edits import EditChoices, GroundedEdit, apply_edit, edit_instruction, prediction_details
from router.plan import RequestPlan
from tests.conftest import tiny_diffusion_backend

CODE = 'def greet(name):\n    """Say hello."""\n    return f"Hello, {name}!"\n\n\nprint(greet("Ada"))\n'
PROSE = "The quick brown fox jumps over the lazy dog.\nIt was a sunny day in the park.\nEveryone was happy.\n"


@pytest.mark.parametrize("instruction, document, finds, texts, kind", [
    ("Rename greet to welcome.", CODE, ("greet",), ("welcome",), "replace"),
    ("Rename the function greet to say_hello.", CODE, ("greet",), ("say_hello",), "replace"),
    ("Rename x to total.", "x = 1\nprint(x + 1)\n", ("x",), ("total",), "replace"),  # one-letter names too
    ("Change 'quick' to 'slow'.", PROSE, ("quick",), ("slow",), "replace"),
    # unquoted new text is what follows the last "to"/"with"/...: one span, however many words
    ("Change the greeting from Hello to Good morning.", CODE, ("Hello",), ("Good morning",), "replace"),
    ("Swap Ada for Grace Hopper, please.", CODE, ("Ada",), ("Grace Hopper",), "replace"),
    ("Add a last line: Then it rained.", PROSE, (), ("Then it rained.",), "add"),
    # words inside a quoted span belong to it: `print`/`greet` are not spans to find
    ('Add the line `print(greet("Bob"))` at the end.', CODE, (), ('print(greet("Bob"))',), "add"),
    ("Delete the line 'Everyone was happy.'", PROSE, ("Everyone was happy.",), (), "delete_line"),
    ("Remove the word 'lazy'.", PROSE, ("lazy",), (), "delete"),
    ("Delete the print statement.", CODE, ("print",), (), "delete_line"),
    # the example of OpenAI's Predicted Outputs guide
    ('Replace the "username" property with an "email" property. Respond only with code.',
     'class User {\n  username: string = "";\n}\n', ("username",), ("email",), "replace"),
    # a quoted span found only inside a longer word is not found ("ick" ≠ "quick")
    ("Replace 'ick' with 'ack'.", PROSE, (), ("ick", "ack"), "replace"),
])
def test_an_instruction_grounds_its_spans(instruction, document, finds, texts, kind):
    choices = EditChoices.of(instruction, document)
    if not finds and kind == "replace":  # nothing to find: no replace is grounded
        assert choices is None
        return
    assert (choices.finds, choices.texts, choices.kind) == (finds, texts, kind)


@pytest.mark.parametrize("instruction, document", [
    ("Make it more formal.", PROSE),        # no edit verb
    ("Add type hints.", CODE),              # a description, not text to add
    ("Change greet to uppercase.", CODE),   # descriptions of the new text, not the text
    ("Turn the greet function into a class.", CODE),
    ("Replace Hello with something warmer.", CODE),
    ("Remove the docstring.", CODE),        # names nothing in the document
    ("Rename it.", CODE),                   # nothing new to put in
    ("Summarise this.", PROSE),
])
def test_instructions_that_ground_nothing_are_left_to_the_model(instruction, document):
    assert EditChoices.of(instruction, document) is None


def test_the_schema_offers_only_the_verbs_operations_over_grounded_spans():
    add = EditChoices.of("Add the line 'It was warm.' after the line with sunny.", PROSE).schema()
    assert [op["properties"]["op"]["const"] for op in add["anyOf"]] == ["add_last_line", "add_first_line",
                                                                        "add_line_after"]
    assert add["anyOf"][2]["properties"]["after"] == {"enum": ["sunny"]}
    replace = EditChoices.of("Rename greet to welcome.", CODE).schema()
    assert replace["properties"]["find"] == {"enum": ["greet"]} and replace["additionalProperties"] is False


@pytest.mark.parametrize("operation, document, expected", [
    # every whole-word occurrence, never inside a longer word
    ({"op": "replace", "find": "greet", "with": "welcome"}, "greet(x)\ngreeting = greet\n",
     "welcome(x)\ngreeting = welcome\n"),
    ({"op": "replace", "find": "a.b", "with": "c"}, "a.b axb\n", "c axb\n"),  # a span, not a pattern
    ({"op": "replace", "find": "x", "with": r"\1"}, "x = 1\n", "\\1 = 1\n"),  # nor is the new text
    ({"op": "add_last_line", "line": "end"}, "a\nb\n", "a\nb\nend\n"),
    ({"op": "add_last_line", "line": "end"}, "a\nb", "a\nb\nend"),
    ({"op": "add_first_line", "line": "top"}, "a\nb\n", "top\na\nb\n"),
    ({"op": "add_line_after", "after": "one", "line": "two"}, "one\nthree\n", "one\ntwo\nthree\n"),
    ({"op": "delete", "find": "b."}, "a.\nb.\nc.\n", "a.\nc.\n"),                 # a whole line goes
    ({"op": "delete", "find": "lazy"}, "the lazy dog\n", "the dog\n"),
    ({"op": "delete_line", "containing": "print"}, "x = 1\nprint(x)\nreprint()\n", "x = 1\nreprint()\n"),
])
def test_operations_apply_to_the_document_verbatim(operation, document, expected):
    assert apply_edit(operation, document) == expected


def test_the_instruction_is_the_last_turn_without_the_document():
    def plan(content, document=PROSE):
        return RequestPlan.of({"messages": [{"role": "user", "content": content}],
                               "prediction": {"type": "content", "content": document}})

    assert edit_instruction(plan(f"Change 'quick' to 'slow'.\n\n{PROSE}")) == "Change 'quick' to 'slow'."
    parts = [{"type": "text", "text": "Rename greet to welcome."}, {"type": "text", "text": CODE}]
    edit = GroundedEdit.of(plan(parts, CODE))
    assert edit.instruction == "Rename greet to welcome." and edit.document == CODE
    assert edit.apply({"op": "replace", "find": "greet", "with": "welcome"}) == CODE.replace("greet", "welcome")
    assert edit.allows({"op": "replace", "find": "greet", "with": "welcome"})
    assert not edit.allows({"op": "replace", "find": "greet", "with": "anything"})
    assert not edit.allows({"op": "delete", "find": "greet"}) and not edit.allows(["replace"])
    assert GroundedEdit.of(RequestPlan.of({"messages": [{"role": "user", "content": "Rename greet to x."}]})) is None
    assert GroundedEdit.of(plan("Make it more formal.")) is None
    system = RequestPlan.of({"messages": [{"role": "system", "content": "Rename greet to welcome."},
                                          {"role": "user", "content": CODE}],
                             "prediction": {"type": "content", "content": CODE}})
    assert edit_instruction(system) == "Rename greet to welcome."  # the turn is only the document


def test_prediction_details_count_kept_and_dropped_prediction_tokens():
    assert prediction_details([1, 2, 3, 4], [1, 2, 9, 4]) == {"accepted_prediction_tokens": 3,
                                                              "rejected_prediction_tokens": 1}
    assert prediction_details([1, 2], [5, 1, 2, 6]) == {"accepted_prediction_tokens": 2,
                                                        "rejected_prediction_tokens": 0}


@pytest.fixture(scope="module")
def backend():
    return tiny_diffusion_backend("tiny-edits")


def edit(instruction: str, document: str, **extra) -> RequestPlan:
    return RequestPlan.of({"model": "diffusion", "seed": 7, "prediction": {"type": "content", "content": document},
                           "messages": [{"role": "user", "content": f"{instruction}\n\n{document}"}], **extra})


#: what the tiny character tokenizer spells
SHORT = "the quick brown fox. it was a sunny day. all were happy."


def test_a_grounded_edit_comes_back_whole_even_from_a_random_model(backend):
    result = asyncio.run(backend.complete(edit("Replace 'sunny' with 'rainy'.", PROSE, max_tokens=200)))
    choice = result["choices"][0]
    assert choice["message"]["content"] == PROSE.replace("sunny", "rainy")  # applied, not re-spelled
    assert choice["finish_reason"] == "stop"
    usage = result["usage"]
    assert usage["tandem"]["edit"] == {"op": "replace", "find": "sunny", "with": "rainy"}
    details = usage["completion_tokens_details"]
    assert details["accepted_prediction_tokens"] > 0 and details["rejected_prediction_tokens"] > 0
    assert usage["completion_tokens"] >= details["accepted_prediction_tokens"]


def test_a_grounded_edit_streams_as_one_delta_and_respects_max_tokens(backend):
    async def run():
        return [c async for c in backend.stream(edit("Change 'quick' to 'slow'.", SHORT, max_tokens=12,
                                                     stream_options={"include_usage": True}))]

    chunks = asyncio.run(run())
    content = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert content == SHORT.replace("quick", "slow")[:12]  # one character per token
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "length"
    assert chunks[-1]["usage"]["completion_tokens"] == 12


def test_an_ungrounded_edit_is_generated(backend):
    result = asyncio.run(backend.complete(edit("Make it more formal.", PROSE, max_tokens=16)))
    assert "edit" not in result["usage"]["tandem"]
    assert "accepted_prediction_tokens" in result["usage"]["completion_tokens_details"]


WORDS = ["greet", "Hello", "rename", "change", "add", "delete", "line", "to", "with", "'x y'", "`a(b)`", ":",
         "the", "statement", "welcome", "\n", ".", "é", "for", "after"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(WORDS), max_size=12), st.lists(st.sampled_from(WORDS), max_size=12))
def test_any_grounded_operation_applies_and_changes_the_document(instruction_words, document_words):
    """Whatever the instruction and document, every operation the schema allows applies
    without error, and a replace or deletion never leaves the document as it was."""
    instruction, document = " ".join(instruction_words), " ".join(document_words)
    choices = EditChoices.of(instruction, document)
    if choices is None:
        return
    for op in choices.operations():
        fields = {name: spec["enum"][-1] for name, spec in op["properties"].items() if "enum" in spec}
        edited = apply_edit({"op": op["properties"]["op"]["const"], **fields}, document)
        if op["properties"]["op"]["const"] in ("replace", "delete", "delete_line"):
            assert edited != document
