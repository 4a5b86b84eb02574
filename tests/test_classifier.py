"""Task classifier: shape rules and precedence, content head on hand-written requests,
the features-only fallback, and a dev-set accuracy floor."""

from __future__ import annotations

import json
import threading

import pytest

from bench.route_eval import ROOT, default_dev_path, evaluate
from router.classifier import TaskClassifier, get_classifier
from router.content import instruction_window, last_turn, rules_only_task
from router.policy import load_policy
from router.plan import RequestPlan
from router.shape import shape_rules

TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather for a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}
SCHEMA_FORMAT = {"type": "json_schema", "json_schema": {
    "name": "answer", "strict": True, "schema": {"type": "object", "properties": {}}}}

#: measured dev accuracy of the committed head is 0.973 (146/150); retraining on resampled
#: corpora moved it between 0.947 and 0.987, so the floor leaves room for that spread.
DEV_ACCURACY_FLOOR = 0.93


def req(text: str, **fields) -> dict:
    return {"model": "auto", "messages": [{"role": "user", "content": text}], **fields}


def shape_task(request: dict) -> str:
    return TaskClassifier().classify(request, use_content=False).task


# ---------------------------------------------------------------- shape rules (no model)
@pytest.mark.parametrize("choice", ["auto", "required", None,
                                    {"type": "function", "function": {"name": "get_weather"}}])
def test_tools_with_a_live_tool_choice_are_tool_calls(choice):
    fields = {"tools": [TOOL]} | ({} if choice is None else {"tool_choice": choice})
    result = TaskClassifier().classify(req("Is it raining in Bergen?", **fields), use_content=False)
    assert result.task == "tool_call"
    assert any("tool" in r for r in result.reasons)


def test_tool_choice_none_leaves_the_decision_to_content():
    result = TaskClassifier().classify(req("Hi there", tools=[TOOL], tool_choice="none"),
                                       use_content=False)
    assert result.task == "chat"
    assert "shape rules only" in result.reasons
    assert any("tool_choice=none" in r for r in result.reasons)


def test_tool_call_outranks_response_format():
    r = req("Weather in Oslo as JSON", tools=[TOOL], tool_choice="required",
            response_format={"type": "json_object"})
    assert shape_task(r) == "tool_call"


def test_response_format_with_tool_choice_none_is_structured():
    r = req("Plan my week", tools=[TOOL], tool_choice="none", response_format=SCHEMA_FORMAT)
    assert shape_task(r) == "structured"


@pytest.mark.parametrize("kind", ["json_schema", "json_object"])
def test_json_response_formats_are_structured(kind):
    fmt = SCHEMA_FORMAT if kind == "json_schema" else {"type": "json_object"}
    result = TaskClassifier().classify(req("Write a python function", response_format=fmt),
                                       use_content=False)
    assert result.task == "structured"
    assert f"response_format {kind}" in result.reasons


def test_response_format_text_is_not_structured():
    assert shape_task(req("Tell me a story", response_format={"type": "text"})) == "chat"


@pytest.mark.parametrize("prompt", [
    "<|fim_prefix|>def add(a, b):\n<|fim_suffix|>\n    return c<|fim_middle|>",
    "<fim_prefix>const x = 1;<fim_suffix>}<fim_middle>",
    "<PRE> int main() { <SUF> } <MID>",
])
def test_fill_in_the_middle_markers_are_code(prompt):
    assert shape_task(req(prompt)) == "code"


def test_structured_outranks_fill_in_the_middle():
    assert shape_task(req("<fim_prefix>a<fim_suffix>b<fim_middle>",
                          response_format={"type": "json_object"})) == "structured"


def test_prediction_is_edit_for_prose_and_code_for_code():
    prose = req("Change Tuesday to Wednesday in this note: see you Tuesday at noon.",
                prediction={"type": "content", "content": "See you Tuesday at noon."})
    code = req("Rename x to total.", prediction={"type": "content",
                                                 "content": "def f(x):\n    return x + 1\n"})
    assert shape_task(prose) == "edit"
    assert shape_task(code) == "code"


def test_legacy_functions_count_as_tools():
    r = {"model": "auto", "messages": [{"role": "user", "content": "weather?"}],
         "functions": [TOOL["function"]], "function_call": "auto"}
    assert shape_task(r) == "tool_call"
    r["function_call"] = "none"
    assert shape_task(r) == "chat"


def test_stream_flag_is_carried_separately():
    result = TaskClassifier().classify(req("hi", stream=True), use_content=False)
    assert result.stream is True and result.task == "chat"
    assert TaskClassifier().classify(req("hi"), use_content=False).stream is False


def test_malformed_bodies_do_not_raise():
    clf = TaskClassifier()
    for body in ({}, {"messages": "oops"}, {"messages": [None, 3]}, {"tools": "x"},
                 {"messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]}):
        assert clf.classify(body, use_content=False).task in {"chat", "structured", "edit", "code", "tool_call"}


def test_shape_rules_decide_nothing_for_a_plain_turn():
    verdict = shape_rules(RequestPlan.of(req("What is a mortgage?")))
    assert verdict.task is None and verdict.prediction_text is None


# ---------------------------------------------------------------- content helpers
def test_instruction_window_drops_carried_material():
    text = "Fix this please:\n\n```python\nx = [1, 2\n```\n\n" + "Background. " * 40 + "\n\nThanks!"
    window = instruction_window(text)
    assert window.startswith("Fix this please:") and "[code]" in window
    assert window.endswith("Thanks!") and "Background" not in window


def test_last_turn_uses_the_last_user_message_and_earlier_context():
    r = {"messages": [{"role": "user", "content": "write a parser"},
                      {"role": "assistant", "content": "```python\ndef parse(s):\n    return s\n```"},
                      {"role": "user", "content": "now add tests"}]}
    turn = last_turn(RequestPlan.of(r))
    assert turn.text == "now add tests" and turn.has_prior_assistant and "def parse" in turn.prior


def test_features_only_fallback_rules():
    def task(text):
        return rules_only_task(last_turn(RequestPlan.of(req(text))))[0]

    assert task("Write a Go function that reverses a slice.") == "code"
    assert task('Proofread this:\n\n"Their going too the park tomorow and we was late."') == "edit"
    assert task("Extract the names and return only JSON with keys first and last.") == "structured"
    assert task("Why do cats purr?") == "chat"


def test_missing_head_falls_back_without_crashing(tmp_path):
    clf = TaskClassifier(head_path=str(tmp_path / "missing.npz"))
    clf.warmup()
    result = clf.classify(req("Write a Go function that reverses a slice."))
    assert result.task == "code"
    assert any("content model unavailable" in r for r in result.reasons)
    assert clf.content_error and "train_head" in clf.content_error


# ---------------------------------------------------------------- content head (MiniLM)
@pytest.fixture(scope="module")
def classifier() -> TaskClassifier:
    clf = TaskClassifier()
    clf.warmup()
    if clf.content_error:
        pytest.fail(f"content stage did not load: {clf.content_error}")
    return clf


CODE_SNIPPET = "```python\ndef mean(xs):\n    return sum(xs) / len(xs)\n```"
HAND_WRITTEN = [
    ("chat", req("In plain words, what does $ref do in a JSON Schema document?")),
    ("chat", req("Write a sonnet about SQL joins going wrong on a Friday.")),
    ("chat", req("Should I learn piano or guitar first as a 35-year-old beginner?")),
    ("chat", req(f"What does this function do?\n\n{CODE_SNIPPET}")),
    ("code", req("Write a Rust function that parses 'HH:MM' into minutes and returns a Result.")),
    ("code", req(f"This crashes on an empty list. Please fix it:\n\n{CODE_SNIPPET}")),
    ("code", {"messages": [
        {"role": "user", "content": "Give me a function that slugifies titles."},
        {"role": "assistant", "content": "```python\ndef slugify(t):\n    return t.lower().replace(' ', '-')\n```"},
        {"role": "user", "content": "Now make it strip accents as well."}]}),
    ("edit", req('Proofread this paragraph:\n\n"Their going to the libary tomorow to returns the books '
                 'witch we borrowed last month, and than we will have lunch."')),
    ("edit", req("Make this sound warmer and less corporate:\n\nYour ticket has been closed. "
                 "Further enquiries must be submitted through the portal.")),
    ("structured", req("From the note below, return only JSON with keys guest_name, nights and "
                       "room_type.\n\nHi, this is Marta Quinn, booking two nights in a double "
                       "room from the 4th.")),
    ("structured", req("List five Nordic capitals as a JSON array of objects with name and country.")),
]


@pytest.mark.parametrize("expected,request_body", HAND_WRITTEN,
                         ids=[f"{e}-{i}" for i, (e, _) in enumerate(HAND_WRITTEN)])
def test_content_head_on_hand_written_requests(classifier, expected, request_body):
    result = classifier.classify(request_body)
    assert result.task == expected, result.reasons
    assert result.confidence is not None and 0.0 < result.confidence <= 1.0
    assert any(r.startswith("content model: ") for r in result.reasons)


def test_a_failure_on_one_request_falls_back_for_that_request_only(classifier, monkeypatch):
    original = classifier._content.probabilities
    monkeypatch.setattr(classifier._content, "probabilities",
                        lambda turn: (_ for _ in ()).throw(RuntimeError("boom")))
    result = classifier.classify(req("Write a Go function that reverses a slice."))
    assert result.task == "code"
    assert any("failed on this request" in r for r in result.reasons)
    monkeypatch.setattr(classifier._content, "probabilities", original)
    assert classifier.content_error is None
    assert any(r.startswith("content model: ") for r in classifier.classify(req("hi")).reasons)


def test_prediction_with_content_picks_between_edit_and_code(classifier):
    prose = req("Swap every 'Q3' for 'Q4' in this memo:\n\nThe Q3 review is on Friday.",
                prediction={"type": "content", "content": "The Q3 review is on Friday."})
    assert classifier.classify(prose).task == "edit"


def test_concurrent_first_use_loads_once():
    clf = TaskClassifier()
    results: list[str] = []

    def work():
        results.append(clf.classify(req("Write a bash script that prints the date.")).task)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == ["code"] * 4 and clf.content_error is None


def test_get_classifier_is_a_singleton():
    assert get_classifier() is get_classifier()


def test_dev_set_accuracy_floor(classifier):
    path = default_dev_path()
    if not path.exists():
        pytest.skip(f"dev set not found at {path}")
    rows = [json.loads(line) for line in path.open() if line.strip()]
    result = evaluate(rows, classifier=classifier)
    assert result["accuracy"] >= DEV_ACCURACY_FLOOR, result["errors"]
    # every label keeps most of its requests
    assert all(acc >= 0.8 for acc, n in result["per_label"].values() if n), result["per_label"]


# --- short everyday turns (router/data/short_templates.py) --------------------------------

SHORT_CHAT_FAMILIES = {
    "greetings": ["Hey!", "hello :)", "Good afternoon.", "Hi, anyone there?", "yo what's up"],
    "thanks": ["Thanks a bunch.", "thank u", "Cheers, that did it.", "ok great", "Perfect!"],
    "one-line asks": ["Say good morning.", "Tell me a fact about Saturn.", "Give me one tip for sleeping better.",
                      "Name two rivers in Africa.", "Say hi to Bob."],
    "one-line questions": ["Why is grass green?", "How old is the universe?", "Who painted the Mona Lisa?",
                           "What's 15 divided by 3?", "Is it safe to eat raw eggs?"],
    "creative one-liners": ["write a haiku about coffee", "A short limerick about a frog.",
                            "Make up a knock-knock joke.", "Write one line of poetry about the rain."],
    "other languages": ["Bonsoir !", "¿Me cuentas un chiste?", "Guten Abend!", "Grazie!", "Спокойной ночи", "谢谢你"],
}


@pytest.mark.parametrize("family", sorted(SHORT_CHAT_FAMILIES))
def test_short_everyday_turns_route_to_chat(classifier, family):
    policy = load_policy(ROOT / "policies" / "default.yaml")  # with its min_confidence fallback
    routed = [policy.decide(body := req(text), classifier.classify(body), {}).task
              for text in SHORT_CHAT_FAMILIES[family]]
    assert routed.count("chat") >= len(routed) - 1, dict(zip(SHORT_CHAT_FAMILIES[family], routed))


@pytest.mark.parametrize("text,task", [
    ("Write a Go function that sums a slice.", "code"), ("python: parse a date string", "code"),
    ("Fix the typos: i relly liek it", "edit"), ("Translate to Spanish: see you tomorrow", "edit"),
])
def test_short_turns_that_ask_for_code_or_edits_still_get_them(classifier, text, task):
    assert classifier.classify(req(text)).task == task


#: asks for new text with a length or form ("in one short sentence") read like "tighten this
#: to one short sentence" to the embedding; with nothing to rewrite they are not edits
LENGTH_ASKS = ["Say hello in one short sentence.", "Describe the sea in three words.",
               "Greet my team in one line.", "Wish me luck in two sentences.",
               "Introduce yourself briefly, one sentence max.", "Say goodbye, but make it shorter than usual."]


@pytest.mark.parametrize("text", LENGTH_ASKS)
def test_length_asks_without_text_to_rewrite_are_never_edits(classifier, text):
    verdict = classifier.classify(req(text))
    assert verdict.task != "edit", verdict.reasons


@pytest.mark.parametrize("text,carries", [
    ("Say hello in one short sentence.", False), ("Translate good morning", False),
    ("Rewrite more politely: Do it now.", True), ('Make "see you soon, ok" warmer', True),
    ("Shorten this.\n\nThe meeting moved to Friday at noon in room 4.", True),
])
def test_text_to_rewrite_is_material_a_quote_or_lines(text, carries):
    from router.content import carries_text_to_rewrite
    assert carries_text_to_rewrite(last_turn(RequestPlan.of(req(text)))) is carries
    follow_up = {"model": "auto", "messages": [{"role": "user", "content": "Write a toast."},
                                               {"role": "assistant", "content": "To us!"},
                                               {"role": "user", "content": "Make it shorter."}]}
    assert carries_text_to_rewrite(last_turn(RequestPlan.of(follow_up)))  # the earlier answer is the text


def test_acknowledgement_after_code_is_chat(classifier):
    body = {"model": "auto", "messages": [
        {"role": "user", "content": "Write a Python function that adds two numbers."},
        {"role": "assistant", "content": "```python\ndef add(a, b):\n    return a + b\n```"},
        {"role": "user", "content": "Thanks, that helped."}]}
    assert classifier.classify(body).task == "chat"


def test_explained_reasons_name_the_runner_up(classifier):
    policy = load_policy(ROOT / "policies" / "default.yaml")
    decision = policy.decide(body := req("Tell me about the history of Rome."), classifier.classify(body), {})
    content = next(r for r in decision.reasons if r.startswith("task: content model:"))
    assert "runner-up" in content and decision.reasons[-1].startswith("route ")
    assert decision.confidence is not None and 0 < decision.confidence <= 1


def test_corpus_covers_short_turns_for_every_label():
    from router.data.make_train import build

    rows = build(150, seed=3)
    short = {label: 0 for label in ("chat", "edit", "code")}
    for row in rows:
        text = last_turn(RequestPlan.of(row["request"])).text
        if row["label"] in short and len(text) < 40:
            short[row["label"]] += 1
    assert short["chat"] >= 0.15 * 150  # greetings, thanks, one-liners
    assert short["code"] > 0 and short["edit"] > 0  # so that shortness alone decides nothing


def test_short_eval_set_is_not_in_the_training_corpus():
    """bench/data/route_short.jsonl measures phrasings the head never saw: none of its turns
    (case and punctuation aside) is a training turn, nor one the templates make elsewhere."""
    import re

    from router.data.make_train import build

    def norm(text: str) -> str:
        return re.sub(r"[\W_]+", " ", text.lower()).strip()

    corpus = [json.loads(line) for line in (ROOT / "router" / "data" / "train.jsonl").open()]
    trained = {norm(last_turn(RequestPlan.of(row["request"])).text) for row in corpus + build(1500, seed=11)}
    short = [json.loads(line) for line in (ROOT / "bench" / "data" / "route_short.jsonl").open()]
    leaked = [row["id"] for row in short if norm(last_turn(RequestPlan.of(row["request"])).text) in trained]
    assert not leaked
