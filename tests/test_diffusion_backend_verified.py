"""The diffusion backend with ``engine: {rule: verified}`` over a tiny random SmolLM2-style
denoiser with the real SmolLM2 tokenizer (llguidance needs a real one): text, structured
outputs, tool calls, and the requests the rule hands to the default rule (prediction, infill)."""

from __future__ import annotations

import asyncio
import json

import jsonschema
import pytest

from gateway.backends.diffusion import DiffusionBackend
from router.plan import RequestPlan
from router.policy import BackendSpec

SCHEMA = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 8},
                                           "ok": {"type": "boolean"}},
          "required": ["name", "ok"], "additionalProperties": False}


@pytest.fixture(scope="module")
def backend():
    import torch

    from diffusion_engine.structured.tokenizer_source import smollm2_tokenizer
    from diffusion_engine.testing import tiny_block_denoiser

    tok = smollm2_tokenizer()
    spec = BackendSpec(name="tiny-verified", kind="diffusion", model="embedded/smollm2-diffusion", api_base=None,
                       api_key=None, timeout_s=60, max_retries=0, params={},
                       engine={"rule": "verified", "block_size": 4})
    tiny = DiffusionBackend(spec)
    tiny.attach(tiny_block_denoiser(len(tok), mask_token_id=16, eos_token_ids=(2, 0), dtype=torch.float32), tok)
    return tiny


def body(**extra) -> RequestPlan:
    return RequestPlan.of({"model": "diffusion", "messages": [{"role": "user", "content": "hello"}], "seed": 7, **extra})


def test_text_reports_drafts_kept_by_the_verifier(backend):
    result = asyncio.run(backend.complete(body(max_tokens=10)))
    usage = result["usage"]
    assert 0 < usage["completion_tokens"] <= 10
    tandem = usage["tandem"]
    assert tandem["drafted"] >= tandem["draft_accepted"] >= 0 and tandem["blocks"] >= 1
    # a round emits its kept drafts plus one verifier token
    assert usage["completion_tokens"] <= tandem["draft_accepted"] + tandem["blocks"]


def test_stream_matches_plain(backend):
    plain = asyncio.run(backend.complete(body(max_tokens=10)))["choices"][0]["message"]["content"]

    async def run():
        return [c async for c in backend.stream(body(max_tokens=10))]

    chunks = asyncio.run(run())
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"]) == plain


def test_json_schema_is_valid_and_says_who_wrote_it(backend):
    from gateway import metrics

    def documents(source):
        return metrics.REGISTRY.get_sample_value("tandem_structured_documents_total",
                                                 {"backend": "tiny-verified", "source": source}) or 0.0

    before = {s: documents(s) for s in ("ar", "skeleton")}
    fmt = {"type": "json_schema", "json_schema": {"name": "p", "strict": True, "schema": SCHEMA}}
    result = asyncio.run(backend.complete(body(response_format=fmt, max_tokens=120)))
    jsonschema.validate(json.loads(result["choices"][0]["message"]["content"]), SCHEMA)
    verified = result["usage"]["tandem"]["structured"]["verified"]
    assert verified["source"] in ("ar", "skeleton") and verified["forwards"] >= 1
    assert isinstance(verified["loop_cuts"], list)
    assert documents(verified["source"]) - before[verified["source"]] == 1


def test_tool_call_is_valid(backend):
    tools = [{"type": "function", "function": {"name": "get_time", "parameters": {
        "type": "object", "properties": {"zone": {"enum": ["utc", "cet"]}}, "required": ["zone"],
        "additionalProperties": False}}}]
    result = asyncio.run(backend.complete(body(tools=tools, tool_choice="required", max_tokens=120)))
    call = result["choices"][0]["message"]["tool_calls"][0]
    assert call["function"]["name"] == "get_time"
    assert json.loads(call["function"]["arguments"])["zone"] in ("utc", "cet")


def test_infill_falls_back_to_the_default_rule(backend):
    fim = "<|fim_prefix|>def f(x):\n<|fim_suffix|>\n    return y<|fim_middle|>"
    result = asyncio.run(backend.complete(body(max_tokens=12, messages=[{"role": "user", "content": fim}])))
    tandem = result["usage"]["tandem"]
    assert tandem["steps"] >= 1 and tandem["drafted"] == 0  # denoised, not draft-and-verify


def test_prediction_is_drafted_from_and_verified(backend):
    # the predicted document is in the prompt: lookups draft from it, the AR base verifies
    result = asyncio.run(backend.complete(body(max_tokens=12, prediction={"type": "content",
                                                                          "content": "the cat sat on the mat"})))
    assert result["usage"]["tandem"]["drafted"] > 0


def test_draft_outcomes_are_counted_in_metrics(backend):
    from gateway import metrics

    def count(outcome):
        return metrics.REGISTRY.get_sample_value("tandem_diffusion_draft_tokens_total",
                                                 {"backend": "tiny-verified", "outcome": outcome}) or 0.0

    before = count("kept") + count("rejected")
    result = asyncio.run(backend.complete(body(max_tokens=10)))
    after = count("kept") + count("rejected")
    assert after - before == result["usage"]["tandem"]["drafted"] > 0
