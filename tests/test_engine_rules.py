"""Acceptance rules and sampling helpers, checked on synthetic logits (no model)."""

import pytest
import torch

from diffusion_engine.sampling import (
    BlockState,
    ConfidenceThreshold,
    EntropyBound,
    LowConfidenceRemasking,
    StableAndConfident,
    sample_tokens,
    temperature_at,
    token_confidence,
    top_p_filter,
)

C, V = 12, 40


def _block(max_steps: int) -> BlockState:
    return BlockState(
        canvas=torch.full((C,), -5, dtype=torch.long),
        decided=torch.zeros(C, dtype=torch.bool),
        fixed=torch.zeros(C, dtype=torch.bool),
        max_steps=max_steps,
    )


def _run(rule, max_steps: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    block = _block(max_steps)
    snapshots = []
    while not block.done:
        logits = torch.randn(C, V, generator=g) * 3
        sampled = sample_tokens(logits, 1.0, 1.0, g)
        before = (block.canvas.clone(), block.decided.clone())
        rule.accept(block, sampled, logits)
        block.step += 1
        snapshots.append((before, block.canvas.clone(), block.decided.clone()))
        assert block.step <= max_steps
    return block, snapshots


@pytest.mark.parametrize("steps", [1, 3, 5, 12])
def test_low_confidence_uses_exact_budget_and_llada_split(steps):
    block, snaps = _run(LowConfidenceRemasking(), steps)
    assert block.step == steps and bool(block.decided.all())
    counts = [int(after_dec.sum() - before[1].sum()) for before, _, after_dec in snaps]
    base, extra = divmod(C, steps)
    assert counts == [base + 1] * extra + [base] * (steps - extra)


@pytest.mark.parametrize("rule", [LowConfidenceRemasking(), ConfidenceThreshold(0.9), ConfidenceThreshold(0.2)])
def test_monotone_rules_never_revert_accepted_tokens(rule):
    _, snaps = _run(rule, 6, seed=3)
    for (before_canvas, before_dec), after_canvas, after_dec in snaps:
        assert bool(after_dec[before_dec].all())
        assert torch.equal(after_canvas[before_dec], before_canvas[before_dec])


def test_threshold_accepts_all_confident_and_at_least_one():
    block = _block(10)
    logits = torch.full((C, V), -10.0)
    logits[:3, 7] = 10.0  # three confident positions
    sampled = logits.argmax(-1)
    ConfidenceThreshold(0.9).accept(block, sampled, logits)
    assert block.decided[:3].all() and int(block.decided.sum()) == 3
    flat = torch.zeros(C, V)  # nobody confident: still exactly one accepted
    block2 = _block(10)
    ConfidenceThreshold(0.9).accept(block2, flat.argmax(-1), flat)
    assert int(block2.decided.sum()) == 1


def test_threshold_finishes_on_last_allowed_step():
    block, _ = _run(ConfidenceThreshold(0.999), 4)
    assert block.done and block.step == 4 and bool(block.decided.all())


def test_entropy_bound_matches_transformers_sampler():
    from transformers.models.diffusion_gemma.generation_diffusion_gemma import (
        EntropyBoundSampler,
        EntropyBoundSamplerConfig,
    )

    g = torch.Generator().manual_seed(0)
    for trial in range(20):
        logits = torch.randn(1, C, V, generator=g) * (1 + trial)
        current = torch.randint(0, V, (1, C), generator=g)
        sampled = torch.randint(0, V, (1, C), generator=g)
        ref = EntropyBoundSampler(EntropyBoundSamplerConfig(entropy_bound=0.5), C, V, 48)
        expected = ref.accept_canvas(current, sampled, logits, cur_step=1)
        block = _block(48)
        block.canvas = current[0].clone()
        EntropyBound(0.5).accept(block, sampled[0], logits[0])
        assert torch.equal(block.canvas, expected[0])
        assert torch.equal(block.decided, ref.accepted_token_mask[0])


def test_stable_and_confident_matches_transformers():
    from transformers.models.diffusion_gemma.generation_diffusion_gemma import StableAndConfidentStoppingCriteria

    for stability in (0, 1, 2):
        ref = StableAndConfidentStoppingCriteria(stability, 0.5)
        ours = StableAndConfident(stability, 0.5)
        block = _block(48)
        peaked = torch.full((C, V), -20.0)
        peaked[:, 4] = 20.0
        seq = [torch.randn(C, V), peaked, peaked, peaked, torch.randn(C, V), peaked, peaked]
        for logits in seq:
            argmax = logits.argmax(-1)
            from diffusion_engine.sampling import token_entropy

            expected = bool(ref(argmax[None], logits[None])[0])
            assert ours(block, argmax, token_entropy(logits)) == expected


def test_temperature_schedule_matches_transformers():
    from transformers.models.diffusion_gemma.generation_diffusion_gemma import (
        LinearTemperatureScheduleLogitsProcessor,
    )

    proc = LinearTemperatureScheduleLogitsProcessor(t_min=0.4, t_max=0.8, max_denoising_steps=10)
    x = torch.ones(1, 3)
    for step in range(10):
        cur_step = 10 - step
        expected = 1.0 / float(proc(None, x, cur_step)[0, 0])
        assert temperature_at(step, 10, 0.8, 0.4) == pytest.approx(expected)
    assert temperature_at(3, 10, 0.7, None) == 0.7


def test_top_p_keeps_smallest_nucleus():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    kept = torch.isfinite(top_p_filter(logits, 0.7))
    assert kept.tolist() == [[True, True, False, False]]
    assert torch.isfinite(top_p_filter(logits, 0.01)).sum() == 1  # never empty


def test_sampling_is_seeded_per_generator_and_greedy_at_zero():
    logits = torch.randn(C, V)
    a = sample_tokens(logits, 1.0, 0.9, torch.Generator().manual_seed(5))
    b = sample_tokens(logits, 1.0, 0.9, torch.Generator().manual_seed(5))
    assert torch.equal(a, b)
    assert torch.equal(sample_tokens(logits, 0.0, 1.0, None), logits.argmax(-1))
    conf = token_confidence(logits, logits.argmax(-1))
    assert torch.allclose(conf, logits.softmax(-1).max(-1).values)
