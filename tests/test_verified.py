"""The 'verified' rule: the adapter drafts, the AR base (adapter off) decides.

Tiny random Llama in float64 (``tiny_block_denoiser``) so "identical to AR greedy" is exact.
"""

from __future__ import annotations

import pytest
import torch

from diffusion_engine.adapters.diffusion_gemma import DiffusionGemmaDenoiser
from diffusion_engine.adapters.smollm2_block import SmolLM2BlockDenoiser
from diffusion_engine.engine import DiffusionEngine, GenerationParams
from diffusion_engine.template import CanvasTemplate
from diffusion_engine.testing import tiny_block_denoiser, tiny_diffusion_gemma
from diffusion_engine.verified import DraftVerifier

MASK, EOS = 5, 2


def tiny_denoiser(seed: int = 0, lora_scale: float = 0.05) -> SmolLM2BlockDenoiser:
    return tiny_block_denoiser(48, mask_token_id=MASK, eos_token_ids=(EOS,), seed=seed, lora_scale=lora_scale)


def ar_greedy(denoiser: SmolLM2BlockDenoiser, prompt: list[int], n: int, stop: int | None = EOS) -> list[int]:
    """Reference: full-sequence greedy decoding with the adapter off, no cache."""
    ids = list(prompt)
    with denoiser.adapter_off() as model:
        for _ in range(n):
            nxt = int(model(input_ids=torch.tensor([ids])).logits[0, -1].argmax())
            if nxt == stop:
                break
            ids.append(nxt)
    return ids[len(prompt):]


def test_the_smollm2_denoiser_offers_a_verifier():
    assert isinstance(tiny_denoiser(), DraftVerifier)


@pytest.mark.parametrize("seed,lora_scale", [(0, 0.0), (1, 0.05), (2, 0.5)])
def test_greedy_output_is_ar_greedy_token_for_token(seed, lora_scale):
    d = tiny_denoiser(seed, lora_scale)
    prompt = [7, 8, 9, 10, 11]
    params = GenerationParams(max_tokens=24, rule="verified", stop_on_eos=False)
    out = DiffusionEngine(d).generate(prompt, params)
    assert out.token_ids == ar_greedy(d, prompt, 24, stop=None)
    stats = out.stats
    assert stats.draft_accepted <= stats.drafted
    # forwards: one verify per round, plus one draft for every round that drafted
    assert stats.blocks <= stats.steps <= 2 * stats.blocks
    assert out.finish_reason == "length"


def test_stats_count_rounds_and_accepted_drafts():
    d = tiny_denoiser(3, 0.0)  # adapter = base: the first draft position always agrees
    out = DiffusionEngine(d).generate([7, 8, 9], GenerationParams(max_tokens=16, rule="verified", stop_on_eos=False))
    s = out.stats
    assert s.draft_accepted >= 1  # the first round drafts with the adapter and keeps at least d_1
    assert len(out.token_ids) == 16 == s.draft_accepted + s.blocks  # kept drafts + one AR token per round


def test_the_gate_stops_adapter_drafts_that_do_not_pay_and_probes_again():
    from diffusion_engine.verified import DrafterGate

    gate = DrafterGate(min_kept=3.0, probe_every=64)
    assert gate.wanted(0)  # no adapter round yet: try it
    gate.record(0, emitted=1)
    assert not gate.wanted(2) and not gate.wanted(64)
    assert gate.wanted(65)  # a probe, 64 tokens after the last adapter round
    gate.record(8, emitted=65)  # an easy stretch: mean 4 >= 3
    assert gate.wanted(66)
    always = DrafterGate(min_kept=0.0)
    always.record(0, emitted=1)
    assert always.wanted(2)


@pytest.mark.parametrize("min_kept", [3.0, 0.0])
def test_bad_drafts_cost_one_drafter_forward_not_one_per_round(min_kept):
    """A random adapter's drafts are rarely kept: after its first round the gate closes and
    the rounds a lookup does not cover are single AR forwards (``min_kept=0``: the adapter
    drafts each of them). The output is AR greedy either way."""
    from diffusion_engine.verified import DrafterGate

    d = tiny_denoiser(2, 0.5)
    prompt = [7, 8, 9, 10, 11]
    engine = DiffusionEngine(d)
    run = engine.start(prompt, GenerationParams(max_tokens=40, rule="verified", stop_on_eos=False))
    run.rule.gate = gate = DrafterGate(min_kept=min_kept)
    adapter_rounds = []
    record = gate.record
    gate.record = lambda kept, emitted: (adapter_rounds.append(kept), record(kept, emitted))
    while not run.finished:
        engine.step([run])
    out = run.result()
    assert out.token_ids == ar_greedy(d, prompt, 40, stop=None)
    assert out.stats.steps - out.stats.blocks == len(adapter_rounds)  # one drafter forward per adapter round
    if min_kept:
        assert len(adapter_rounds) == 1 and adapter_rounds[0] < min_kept
    else:
        assert len(adapter_rounds) >= 2


def test_eos_ends_the_answer_like_ar():
    d = tiny_denoiser(4, 0.05)
    prompt = [12, 13, 14]
    reference = ar_greedy(d, prompt, 40)
    stop = next(t for t in reference[3:] if t not in (MASK,))  # a token the greedy path emits
    d.eos_token_ids = frozenset({stop})
    out = DiffusionEngine(d).generate(prompt, GenerationParams(max_tokens=40, rule="verified"))
    assert out.token_ids == ar_greedy(d, prompt, 40, stop=stop)
    assert out.finish_reason == "stop"


def test_sampling_is_seeded_and_stays_in_budget():
    d = tiny_denoiser(5, 0.05)
    params = GenerationParams(max_tokens=10, rule="verified", temperature=1.0, seed=11, stop_on_eos=False)
    a = DiffusionEngine(d).generate([7, 8], params)
    b = DiffusionEngine(d).generate([7, 8], params)
    assert a.token_ids == b.token_ids and len(a.token_ids) == 10


def test_blocks_stream_through_on_block():
    d = tiny_denoiser(6, 0.05)
    seen: list[int] = []
    out = DiffusionEngine(d).generate([7, 8, 9], GenerationParams(max_tokens=12, rule="verified", stop_on_eos=False),
                                      on_block=seen.extend)
    assert seen == out.token_ids


def test_clear_errors_for_models_without_a_verifier_and_for_templates():
    with pytest.raises(ValueError, match="cannot"):
        DiffusionEngine(DiffusionGemmaDenoiser(tiny_diffusion_gemma())).generate([1, 2, 3], GenerationParams(max_tokens=4, rule="verified"))
    d = tiny_denoiser()
    with pytest.raises(ValueError, match="free text only"):
        DiffusionEngine(d).generate([7, 8], GenerationParams(max_tokens=4, rule="verified"),
                                    template=CanvasTemplate.free(4, d.vocab_size))


def test_prompt_lookup_drafts_answers_that_copy_the_prompt():
    d = tiny_denoiser(7, 0.05)
    head = [7, 8, 9, 10]
    answer = ar_greedy(d, head, 12, stop=None)
    prompt = head + answer + [11] + head  # the prompt already holds what AR will say next
    params = GenerationParams(max_tokens=12, rule="verified", stop_on_eos=False)
    out = DiffusionEngine(d).generate(prompt, params)
    assert out.token_ids == ar_greedy(d, prompt, 12, stop=None)
    # rounds drafted by lookup cost one forward (verify only), adapter rounds two
    assert out.stats.steps <= out.stats.blocks + 1


def test_a_lookup_shorter_than_the_canvas_is_verified_as_is():
    d = tiny_denoiser(8, 0.05)
    # the tiny model repeats the prompt's last token; the tail "10 10 10" is found in the
    # prompt one token before its end, so the lookup proposes 1 token (accepted), not block_size
    prompt = [7, 8, 10, 10, 10, 10]
    params = GenerationParams(max_tokens=10, rule="verified", block_size=8, stop_on_eos=False)
    out = DiffusionEngine(d).generate(prompt, params)
    assert out.token_ids == ar_greedy(d, prompt, 10, stop=None)
    assert 0 < out.stats.drafted < 8 * out.stats.blocks


def test_without_adapter_drafts_only_lookups_draft():
    """``adapter_drafts=False``: the adapter never drafts (no drafter forward at all; a round is
    a lookup's check or one AR step), and the output is AR greedy."""
    d = tiny_denoiser(1, 0.05)
    prompt = [7, 8, 9, 10, 11, 7, 8, 9, 10, 11]  # repeated, so the answer may copy it
    drafter_calls = []
    draft = d.draft_logits
    d.draft_logits = lambda *a, **k: (drafter_calls.append(1), draft(*a, **k))[1]
    params = GenerationParams(max_tokens=30, rule="verified", stop_on_eos=False, adapter_drafts=False)
    out = DiffusionEngine(d).generate(prompt, params)
    assert out.token_ids == ar_greedy(d, prompt, 30, stop=None)
    assert drafter_calls == [] and out.stats.steps == out.stats.blocks  # one verify forward per round
    with_adapter = DiffusionEngine(d).generate(prompt, GenerationParams(max_tokens=30, rule="verified",
                                                                       stop_on_eos=False))
    assert drafter_calls and with_adapter.token_ids == out.token_ids
