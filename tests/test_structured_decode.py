"""Render → refill → repair → validate, with fake fillers and with the real engine on a tiny model."""

from __future__ import annotations

import json
import random

import pytest
import torch
from jsonschema import Draft202012Validator, FormatChecker

from diffusion_engine.structured.adapter import choose_terminator, to_canvas_template
from diffusion_engine.structured.decode import StructuredGenerator, fill_structured, refill
from diffusion_engine.structured.errors import StructuredOutputError
from diffusion_engine.structured.fillers import random_allowed_filling
from diffusion_engine.structured.layout import MASK, layout_for
from diffusion_engine.structured.tiny_tokenizer import tiny_tokenizer
from diffusion_engine.template import CanvasTemplate

SCHEMA = {"type": "object", "properties": {
    "age": {"type": "integer", "minimum": 10, "maximum": 20},
    "code": {"type": "string", "pattern": "^[a-c]{3}$"},
    "day": {"type": "string", "format": "date"},
    "ok": {"type": "boolean"}},
    "required": ["age", "code", "day", "ok"], "additionalProperties": False}


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer()


def valid(schema, value):
    return Draft202012Validator(schema, format_checker=FormatChecker()).is_valid(value)


class TextFiller:
    """Writes given texts into slots by pointer (a fake model); unspecified positions get the
    first allowed non-pad id. ``rounds`` lists one {pointer: text} dict per call."""

    def __init__(self, layout, rounds):
        self.layout, self.rounds, self.calls, self.templates = layout, rounds, 0, []

    def __call__(self, template: CanvasTemplate):
        self.templates.append(template)
        wanted = self.rounds[min(self.calls, len(self.rounds) - 1)]
        self.calls += 1
        out = template.tokens.clone()
        pad = self.layout.vocab.pad_id
        for slot in self.layout.skeleton.slots:
            positions = self.layout.slot_positions[slot.index]
            if bool(template.fixed[positions[0]]):
                continue
            text = wanted.get(slot.pointer)
            ids = self.layout.vocab.encode(text) if text is not None else []
            for k, pos in enumerate(positions):
                if k < len(ids):
                    out[pos] = ids[k]
                else:
                    mask = template.allowed[pos]
                    choices = mask.nonzero().flatten().tolist()
                    out[pos] = pad if (pad in choices and k) else next(c for c in choices if c != pad)
        return out


def test_template_adapter_marks_fixed_and_shares_masks(tok):
    layout = layout_for(SCHEMA, tok)
    tpl = to_canvas_template(layout)
    assert len(tpl) == len(layout)
    assert tpl.fixed.tolist() == [m is None for m in layout.allowed]
    assert bool((tpl.tokens[~tpl.fixed] == MASK).all())
    assert len(tpl.allowed.masks) == len({id(m) for m in layout.allowed if m is not None})
    # refill template: everything fixed except the reopened slot
    filled = random_allowed_filling(layout, random.Random(0))
    age = layout.skeleton.slots[0]
    re_tpl = to_canvas_template(layout, filled, [age])
    open_positions = (~re_tpl.fixed).nonzero().flatten().tolist()
    assert open_positions == layout.slot_positions[age.index]
    assert re_tpl.tokens[re_tpl.fixed].tolist() == [filled[i] for i in range(len(filled)) if bool(re_tpl.fixed[i])]


def test_bad_slots_are_refilled_then_valid(tok):
    layout = layout_for(SCHEMA, tok)
    filler = TextFiller(layout, [
        {"/properties/age": "99", "/properties/code": "abc", "/properties/day": "2024-13-40"},
        {"/properties/age": "15", "/properties/day": "2024-02-29", "/properties/code": "zzz"},
    ])
    result = fill_structured(layout, filler, max_rounds=2)
    assert result.rounds == 2 and result.valid
    assert result.value["age"] == 15 and result.value["day"] == "2024-02-29" and result.value["code"] == "abc"
    assert result.stats["first_round_bad_slots"] == 2 and result.stats["repaired_slots"] == 0
    # second call reopened exactly the two bad slots; the good 'code' stayed fixed
    reopened = (~filler.templates[1].fixed).nonzero().flatten().tolist()
    bad = [layout.slot_positions[s.index] for s in layout.skeleton.slots if s.pointer in
           ("/properties/age", "/properties/day")]
    assert reopened == sorted(p for ps in bad for p in ps)
    assert json.loads(result.text) == result.value


def test_persistently_bad_slots_are_repaired_deterministically(tok):
    layout = layout_for(SCHEMA, tok)
    filler = TextFiller(layout, [{"/properties/age": "7", "/properties/code": "xyz", "/properties/day": "1"}])
    result = fill_structured(layout, filler, max_rounds=2)
    assert filler.calls == 3 and result.rounds == 3
    assert result.stats["repaired_slots"] == 3
    assert result.value["age"] == 10 and result.value["code"] == "aaa" and result.value["day"] == "2000-01-01"
    assert valid(SCHEMA, result.value)
    again = fill_structured(layout, TextFiller(layout, [{"/properties/age": "7", "/properties/code": "xyz",
                                                         "/properties/day": "1"}]), max_rounds=0)
    assert again.value == result.value and again.rounds == 1


def test_refill_cannot_touch_fixed_positions(tok):
    layout = layout_for(SCHEMA, tok)
    filled = random_allowed_filling(layout, random.Random(3))
    slot = layout.skeleton.slots[1]

    def vandal(template):  # a broken filler that rewrites everything
        return torch.full((len(template),), 7, dtype=torch.long)

    out = refill(layout, filled, [slot], vandal)
    for i, (a, b) in enumerate(zip(filled, out)):
        if i not in layout.slot_positions[slot.index]:
            assert a == b


def test_unrepairable_document_raises_not_returns(tok):
    schema = {"type": "object", "properties": {"xs": {"type": "array", "items": {"enum": [1, 2]},
                                                      "minItems": 2, "maxItems": 2, "uniqueItems": True}},
              "required": ["xs"]}
    layout = layout_for(schema, tok)
    one = layout.vocab.encode("1")[0]

    def always_ones(template):
        out = template.tokens.clone()
        out[out == MASK] = one
        return out

    with pytest.raises(StructuredOutputError, match="does not satisfy the schema"):
        fill_structured(layout, always_ones)


def test_terminator_is_never_an_eos_id(tok):
    assert choose_terminator(tok, pad_token_id=0, eos_token_ids=[1]) == 0
    # SmolLM2-style: pad is also EOS -> fall back to an unused special token
    assert choose_terminator(tok, pad_token_id=0, eos_token_ids=[0, 1], mask_token_id=None) == 3


def test_structured_generator_with_engine_on_tiny_model(tok):
    from diffusion_engine.adapters.diffusion_gemma import DiffusionGemmaDenoiser
    from diffusion_engine.engine import DiffusionEngine, GenerationParams
    from diffusion_engine.testing import tiny_diffusion_gemma

    engine = DiffusionEngine(DiffusionGemmaDenoiser(tiny_diffusion_gemma(seed=0)))
    gen = StructuredGenerator(engine, tok)
    schema = {"type": "object", "properties": {
        "name": {"type": "string", "maxLength": 4}, "n": {"type": "integer", "minimum": 0, "maximum": 9},
        "tags": {"type": "array", "items": {"enum": ["a", "b"]}, "maxItems": 2}},
        "required": ["name", "n"], "additionalProperties": False}
    prompt = torch.tensor(tok.encode("give json", add_special_tokens=False))
    params = GenerationParams(seed=0, max_steps=4)
    result = gen.generate(prompt, schema, params)
    assert result.valid and valid(schema, json.loads(result.text))
    assert result.stats["denoiser_steps"] > 0
    assert gen.generate(prompt, schema, params).text == result.text  # seeded -> deterministic
