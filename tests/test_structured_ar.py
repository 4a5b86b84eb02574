"""llguidance constraint on SmolLM2's tokenizer: random logits must still give valid JSON."""

from __future__ import annotations

import json

import pytest
import torch
from jsonschema import Draft202012Validator, FormatChecker

from diffusion_engine.structured.ar_constraint import (
    JsonSchemaLogitsMask, constrained_generate, constrained_sample, llguidance_error,
)
from diffusion_engine.structured.errors import OutputTruncatedError
from diffusion_engine.structured.tokenizer_source import smollm2_tokenizer

SCHEMAS = [
    {"type": "object", "properties": {"name": {"type": "string", "maxLength": 8},
                                      "age": {"type": "integer", "minimum": 0, "maximum": 120},
                                      "ok": {"type": "boolean"}},
     "required": ["name", "age", "ok"], "additionalProperties": False},
    {"type": "object", "properties": {"tags": {"type": "array", "items": {"enum": ["red", "green"]},
                                               "minItems": 1, "maxItems": 3},
                                      "note": {"type": ["string", "null"], "maxLength": 5}},
     "required": ["tags", "note"], "additionalProperties": False},
    {"$defs": {"p": {"type": "object", "properties": {"x": {"type": "number"}}, "required": ["x"],
                     "additionalProperties": False}},
     "type": "array", "items": {"$ref": "#/$defs/p"}, "maxItems": 2},
    {"anyOf": [{"type": "integer"}, {"type": "object", "properties": {"id": {"const": "k"}},
                                     "required": ["id"], "additionalProperties": False}]},
]


@pytest.fixture(scope="module")
def tok():
    return smollm2_tokenizer()


def random_logits(vocab, seed):
    g = torch.Generator().manual_seed(seed)
    return lambda _tokens: torch.randn(vocab, generator=g) * 3


@pytest.mark.parametrize("index", range(len(SCHEMAS)))
def test_random_logits_give_schema_valid_json(tok, index):
    schema = SCHEMAS[index]
    for seed in range(3):
        mask = JsonSchemaLogitsMask(tok, schema)
        tokens = constrained_sample(mask, random_logits(len(tok), seed), max_tokens=400, temperature=1.0,
                                    generator=torch.Generator().manual_seed(seed))
        value = json.loads(tok.decode(tokens))
        assert Draft202012Validator(schema, format_checker=FormatChecker()).is_valid(value), value


def test_mask_is_tight_at_the_start(tok):
    mask = JsonSchemaLogitsMask(tok, SCHEMAS[0]).allowed_mask()
    allowed = [tok.decode([i]) for i in mask.nonzero().flatten().tolist()]
    assert allowed and all(t.startswith("{") for t in allowed)
    assert mask.shape == (len(tok),) and mask.dtype == torch.bool


def test_json_object_mode_accepts_any_object(tok):
    mask = JsonSchemaLogitsMask(tok, None)
    base = random_logits(len(tok), 7)
    closing = torch.tensor([tok.convert_tokens_to_ids(t) for t in ['"', "}", "]"]] + [mask.eos_id])

    def biased(tokens):  # open-ended grammar: lean toward closing so random text ends
        logits = base(tokens)
        logits[closing] += 6.0
        return logits

    tokens = constrained_sample(mask, biased, max_tokens=300, temperature=0.7,
                                generator=torch.Generator().manual_seed(7))
    assert isinstance(json.loads(tok.decode(tokens)), dict)


def test_cap_mid_document_raises(tok):
    schema = {"type": "object", "properties": {"s": {"type": "string", "minLength": 50}}, "required": ["s"]}
    with pytest.raises(OutputTruncatedError, match="max_tokens=5"):
        constrained_sample(JsonSchemaLogitsMask(tok, schema), random_logits(len(tok), 0), max_tokens=5)


def test_llguidance_reports_unsupported(tok):
    assert llguidance_error(tok, SCHEMAS[0]) is None
    assert llguidance_error(tok, {"type": "object", "properties": {"a": {"$ref": "#/nope"}}}) is not None


def test_constrained_generate_with_a_tiny_model(tok):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=16, intermediate_size=32,
                                         num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
                                         max_position_embeddings=512)).eval()
    prompt = tok.encode("Give me JSON:", add_special_tokens=False)
    text = constrained_generate(model, tok, prompt, SCHEMAS[0], max_tokens=200, temperature=1.0, seed=3)
    assert Draft202012Validator(SCHEMAS[0]).is_valid(json.loads(text))
    assert constrained_generate(model, tok, prompt, SCHEMAS[0], max_tokens=200, temperature=1.0, seed=3) == text
    with pytest.raises(OutputTruncatedError) as info:
        constrained_generate(model, tok, prompt, SCHEMAS[0], max_tokens=3, temperature=1.0, seed=3)
    assert info.value.partial_text.startswith("{")
