"""Verified structured output: AR + grammar decides, drafts only save forwards.

A tiny random Llama (float64, so equality is exact) over the real SmolLM2 tokenizer,
because llguidance needs a real tokenizer to compile grammars.
"""

from __future__ import annotations

import json

import pytest
import torch
from jsonschema import Draft202012Validator

from diffusion_engine.engine import DiffusionEngine, GenerationParams
from diffusion_engine.structured.ar_constraint import JsonSchemaLogitsMask
from diffusion_engine.structured.decode import StructuredGenerator
from diffusion_engine.structured.tokenizer_source import smollm2_tokenizer
from diffusion_engine.lookup import DraftLookup
from diffusion_engine.structured.verified import verified_constrained
from diffusion_engine.testing import tiny_block_denoiser

PERSON = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 12},
                                           "age": {"type": "integer", "minimum": 0, "maximum": 120},
                                           "ok": {"type": "boolean"}},
          "required": ["name", "age", "ok"], "additionalProperties": False}
TAGS = {"type": "object", "properties": {"tags": {"type": "array", "items": {"enum": ["red", "green"]},
                                                  "minItems": 1, "maxItems": 3}},
        "required": ["tags"], "additionalProperties": False}


@pytest.fixture(scope="module")
def tok():
    return smollm2_tokenizer()


@pytest.fixture(scope="module")
def denoiser(tok):
    return tiny_block_denoiser(len(tok), block_size=8, mask_token_id=16, eos_token_ids=(2, 0))


def reference(denoiser, tok, prompt, schema, max_tokens):
    """AR + grammar, greedy, one full forward per token (no cache, no drafts)."""
    mask = JsonSchemaLogitsMask(tok, schema, vocab_size=denoiser.vocab_size)
    out: list[int] = []
    with denoiser.adapter_off() as model:
        while len(out) < max_tokens:
            logits = model(input_ids=torch.tensor([prompt + out])).logits[0, -1]
            choice = int(mask.apply(logits).argmax())
            if choice == mask.eos_id and mask.is_accepting():
                break
            mask.consume(choice)
            out.append(choice)
            if mask.is_stopped():
                break
    return out


@pytest.mark.parametrize("schema", [PERSON, TAGS])
@pytest.mark.parametrize("use_draft", [False, True])
def test_output_is_exactly_ar_with_the_grammar(denoiser, tok, schema, use_draft):
    prompt = tok.encode("Alice is 31 and ok. Reply with JSON:", add_special_tokens=False)
    drafts = [tok.encode('{"name": "Alice", "age": 31, "ok": true}', add_special_tokens=False)] if use_draft else []
    doc = verified_constrained(denoiser, tok, prompt, schema, drafts, max_tokens=48, draft_len=6, loop_guard=False)
    assert doc.token_ids == reference(denoiser, tok, prompt, schema, 48)
    # the grammar's forced tokens and the lookups save forwards: fewer forwards than tokens
    assert doc.forwards < len(doc.token_ids)
    if doc.complete:
        assert Draft202012Validator(schema).is_valid(json.loads(tok.decode(doc.token_ids)))


def test_lookup_continues_the_latest_match_and_starts_at_the_first_source():
    look = DraftLookup([[1, 2, 3, 9, 2, 3, 7, 8]], lead_with_first=True)
    assert look.propose([], 3) == [1, 2, 3]
    assert look.propose([5, 2, 3], 2) == [9, 2]  # first occurrence after the cursor
    assert look.propose([2, 3], 2) == [7, 8]  # the cursor moved past the first "2 3"
    assert look.propose([42], 2) == []  # nothing matches
    assert DraftLookup([]).propose([1], 4) == []


@pytest.mark.parametrize("skeleton_draft", [True, False])
def test_generator_rule_verified_is_valid_and_reports_its_source(denoiser, tok, skeleton_draft):
    gen = StructuredGenerator(DiffusionEngine(denoiser), tok, skeleton_draft=skeleton_draft)
    prompt = tok.encode("Alice is 31 and ok. Reply with JSON:", add_special_tokens=False)
    params = GenerationParams(max_tokens=200, rule="verified")
    result = gen.generate(prompt, PERSON, params)
    assert result.valid and Draft202012Validator(PERSON).is_valid(result.value)
    info = result.stats["verified"]
    # the tiny model finishes this document inside the budget, so the answer is the AR one
    assert info["source"] == "ar" and info["complete"] and info["forwards"] >= 1
    assert json.loads(result.text) == result.value
    expected = reference(denoiser, tok, prompt, PERSON, info["budget"])
    assert result.text == tok.decode(expected, skip_special_tokens=True)


@pytest.mark.parametrize("skeleton_draft", [True, False])
def test_a_runaway_ar_document_falls_back_to_the_skeleton(denoiser, tok, skeleton_draft):
    gen = StructuredGenerator(DiffusionEngine(denoiser), tok, skeleton_draft=skeleton_draft)
    prompt = tok.encode("JSON please:", add_special_tokens=False)
    result = gen.generate(prompt, PERSON, GenerationParams(max_tokens=4, rule="verified"))  # 4 tokens cannot finish
    assert result.stats["verified"]["source"] == "skeleton" and not result.stats["verified"]["complete"]
    assert result.valid and Draft202012Validator(PERSON).is_valid(json.loads(result.text))


@pytest.mark.parametrize("use_draft", [False, True])
def test_loop_guard_cuts_a_repeated_item_and_is_exact_elsewhere(denoiser, tok, use_draft):
    """The tiny model repeats an enum tag; the guard closes the array before the repeat,
    and every other token is still the AR + grammar choice."""
    prompt = tok.encode("Alice is 31 and ok. Reply with JSON:", add_special_tokens=False)
    drafts = [tok.encode('{"tags": ["red", "red", "red"]}', add_special_tokens=False)] if use_draft else []
    ref = json.loads(tok.decode(reference(denoiser, tok, prompt, TAGS, 48)))["tags"]
    first_repeat = next(i for i, tag in enumerate(ref) if tag in ref[:i])  # the tiny model does repeat
    doc = verified_constrained(denoiser, tok, prompt, TAGS, drafts, max_tokens=48, draft_len=6)
    assert doc.complete and doc.loop_cuts == ["repeated array item"]
    value = json.loads(tok.decode(doc.token_ids))
    assert Draft202012Validator(TAGS).is_valid(value) and value["tags"] == ref[:first_repeat]


def test_loop_guard_never_makes_a_cut_the_grammar_refuses(denoiser, tok):
    at_least_two = {**TAGS, "properties": {"tags": {**TAGS["properties"]["tags"], "minItems": 2}}}
    prompt = tok.encode("Alice is 31 and ok. Reply with JSON:", add_special_tokens=False)
    doc = verified_constrained(denoiser, tok, prompt, at_least_two, [], max_tokens=48, draft_len=6)
    value = json.loads(tok.decode(doc.token_ids))
    assert Draft202012Validator(at_least_two).is_valid(value) and len(value["tags"]) >= 2


def test_a_copied_value_is_closed_at_its_first_punctuation(tok):
    from diffusion_engine.structured.verified import value_ends

    schema = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
              "required": ["name", "age"], "additionalProperties": False}
    mask = JsonSchemaLogitsMask(tok, schema)
    for t in tok.encode('{"name": "', add_special_tokens=False):
        mask.consume(t)
    ends = value_ends(tok)
    guess = tok.encode("Tomas Reyes, 52, visited", add_special_tokens=False)
    closed = ends.close(mask.matcher, guess)
    assert tok.decode(closed) == 'Tomas Reyes",'  # the grammar then forces ' "age": '
    mask.matcher.rollback(len(closed))
    assert ends.close(mask.matcher, tok.encode("Tomas Reyes", add_special_tokens=False)) is None  # no boundary
    age = JsonSchemaLogitsMask(tok, schema)
    for t in tok.encode('{"name": "T", "age": ', add_special_tokens=False):
        age.consume(t)
    assert ends.close(age.matcher, tok.encode("52, visited", add_special_tokens=False)) is None  # not a string


def test_text_lookup_continues_a_copied_value_from_its_first_characters(tok):
    from diffusion_engine.lookup import TextLookup
    from diffusion_engine.structured.verified import CopiedValues

    source = "PT: Tomas Reyes, 52, seen by Dr. Tanaka. Tomasz is his brother."
    look = TextLookup([source], tok)
    assert tok.decode(look.propose("T", 4)) == "omas Reyes,"  # at a word start only: not PT's "T"
    assert tok.decode(look.propose("Tomas", 3)).startswith("z is")  # the cursor moved past the first match
    assert look.propose("xyz", 3) == [] and look.propose("", 3) == []
    copied = CopiedValues(tok, [source])
    inside = tok.encode('{"name": "To', add_special_tokens=False)
    assert tok.decode(copied.propose(inside, 3)).startswith("mas Reyes")
    assert copied.propose(tok.encode('{"name": "To"', add_special_tokens=False), 3) == []  # not in a string
    total = CopiedValues(tok, ["Invoice 2024-0187. Total due: $412.50 (USD)."])
    assert tok.decode(total.propose(tok.encode('{"total": 4', add_special_tokens=False), 5)).startswith("12.50")


def test_a_repetition_the_schema_will_not_let_us_cut_is_given_up(tok):
    """A looping string that must match a pattern cannot be closed early: the guard refuses to
    cut, and after ``max_refusals`` rounds calls the document hopeless (the skeleton answers)."""
    from diffusion_engine.structured.verified import LoopGuard

    schema = {"type": "object", "properties": {"mail": {"type": "string", "pattern": "^[a-z]+@[a-z]+$"}},
              "required": ["mail"], "additionalProperties": False}
    mask = JsonSchemaLogitsMask(tok, schema)
    guard = LoopGuard(tok, max_refusals=2)
    out: list[int] = []
    for text in ('{"mail": "', "abcdefgh" * 3, "abcd", "efgh"):
        for t in tok.encode(text, add_special_tokens=False):
            mask.consume(t)
            out.append(t)
        before = list(out)
        assert guard.cut(mask, out) is None and out == before  # refused: nothing changes
        if guard.hopeless:
            break
    assert guard.hopeless and len(guard.refused) == 2
    # the matcher was restored: the document can still go on
    assert mask.try_consume_all(tok.encode("@b", add_special_tokens=False))


def test_check_logits_match_the_full_head_on_few_and_many_allowed_tokens(denoiser, tok):
    from diffusion_engine.structured.verified import CheckLogits

    cache = denoiser.verifier_cache(torch.tensor(tok.encode("Alice is 31.", add_special_tokens=False)))
    hidden = denoiser.verify_hidden(cache, torch.tensor(tok.encode(' {"name', add_special_tokens=False)))
    full = denoiser.ar_head(hidden)
    check = CheckLogits(denoiser, hidden)
    few = torch.zeros(full.shape[-1], dtype=torch.bool)
    few[[5, 17, 400]] = True
    many = torch.rand(full.shape[-1], generator=torch.Generator().manual_seed(0)) < 0.5
    for i, allowed in ((0, few), (1, many), (len(hidden) - 1, few)):
        got = check.masked(i, allowed)
        want = full[i].masked_fill(~allowed, float("-inf"))
        assert torch.equal(torch.isinf(got), torch.isinf(want))
        assert torch.allclose(got[allowed], want[allowed], atol=1e-9)
        assert int(got.argmax()) == int(want.argmax())


def test_output_lookup_continues_the_latest_earlier_match_of_the_document_itself():
    from diffusion_engine.lookup import OutputLookup

    emitted = [7, 1, 2, 3, 4, 5, 9, 1, 2, 3, 6, 6, 9, 1, 2, 3]
    own = OutputLookup(emitted)
    assert own.propose(emitted, 4) == [6, 6, 9, 1]  # a full 3-token tail: the latest match, up to k
    assert own.propose(emitted, 1) == [6]
    assert own.propose([*emitted, 8, 9], 4) == [1]  # a 1-token tail says little: one token
    assert own.propose([*emitted, 42, 42], 4) == []  # the draft itself is no source: only emitted tokens
    assert OutputLookup([]).propose([1, 2], 3) == [] and OutputLookup([4]).propose([4], 3) == []


def test_a_draft_the_grammar_refuses_gives_way_to_the_next_source(tok):
    """The prompt's ``"b": "x"`` cannot start an integer; the document's own ``": `` can."""
    from diffusion_engine.lookup import OutputLookup
    from diffusion_engine.structured.verified import propose

    schema = {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
              "required": ["a", "b"], "additionalProperties": False}
    mask = JsonSchemaLogitsMask(tok, schema)
    emitted = tok.encode('{"a": 31, "b":', add_special_tokens=False)
    for t in emitted:
        mask.consume(t)
    prompt_lookup = DraftLookup([tok.encode('"b": "x"', add_special_tokens=False)])
    assert tok.decode(prompt_lookup.propose(emitted, 3)).startswith(' "x')
    alone, _ = propose(mask, DraftLookup([tok.encode('"b": "x"', add_special_tokens=False)]), emitted, 4)
    assert alone == []
    proposal, forced = propose(mask, prompt_lookup, emitted, 4, own=OutputLookup(emitted))
    assert tok.decode(proposal).startswith(" ") and forced == 0
    assert mask.try_consume_all(proposal)  # grammar-valid, and the matcher was rolled back before


def test_loop_guard_false_in_the_params_keeps_exact_ar_decoding(denoiser, tok):
    """``engine: {loop_guard: false}`` in a policy reaches the decoder as GenerationParams.loop_guard."""
    gen = StructuredGenerator(DiffusionEngine(denoiser), tok)
    prompt = tok.encode("Alice is 31 and ok. Reply with JSON:", add_special_tokens=False)
    guarded = gen.generate(prompt, TAGS, GenerationParams(max_tokens=48, rule="verified"))
    exact = gen.generate(prompt, TAGS, GenerationParams(max_tokens=48, rule="verified", loop_guard=False))
    assert guarded.stats["verified"]["loop_cuts"] == ["repeated array item"]
    assert exact.stats["verified"]["loop_cuts"] == [] and exact.stats["verified"]["source"] == "ar"
    assert exact.text == tok.decode(reference(denoiser, tok, prompt, TAGS, 48), skip_special_tokens=True)


def test_a_document_repeating_itself_is_drafted_from_itself_before_the_prompt(tok):
    """``1.1.1.1.`` matches the document's own ``. 1 .`` (3 tokens), the prompt's ``14.4`` only on
    ``.``: the longer match goes first."""
    from diffusion_engine.lookup import OutputLookup
    from diffusion_engine.structured.verified import propose

    schema = {"type": "object", "properties": {"v": {"type": "string"}}, "required": ["v"],
              "additionalProperties": False}
    mask = JsonSchemaLogitsMask(tok, schema)
    emitted = tok.encode('{"v": "1.1.1.1.', add_special_tokens=False)
    for t in emitted:
        mask.consume(t)
    prompt = tok.encode("Notely 14.4 on a Mac", add_special_tokens=False)
    alone, _ = propose(mask, DraftLookup([prompt]), emitted, 3)
    assert tok.decode(alone).startswith("4")
    both, _ = propose(mask, DraftLookup([prompt]), emitted, 3, own=OutputLookup(emitted))
    assert tok.decode(both) == "1.1"


def test_a_value_after_the_first_key_is_opened_in_the_same_proposal(tok):
    """Nothing to look up at ``{"name":`` yet: ``ValueStarts`` proposes the `` "`` of a string
    (the grammar cannot force it: `` "Al`` could be one token), and the `` `` of a number where
    the grammar refuses the quote."""
    from diffusion_engine.structured.verified import propose, value_starts

    starts = value_starts(tok)
    mask = JsonSchemaLogitsMask(tok, PERSON)
    emitted = tok.encode('{"name":', add_special_tokens=False)
    for t in emitted:
        mask.consume(t)
    assert propose(mask, DraftLookup([]), emitted, 4)[0] == []
    assert tok.decode(propose(mask, DraftLookup([]), emitted, 4, starts=starts)[0]) == ' "'
    quote, space = starts.starts
    assert tok.decode([quote]) == ' "' and tok.decode([space]) == " "
    assert starts.candidates(tok.encode('{"age":', add_special_tokens=False)) == [[quote], [space]]
    assert starts.candidates(tok.encode('{"age": 4', add_special_tokens=False)) == []  # not after a colon
