"""Engine behaviour: stops, lengths, templates, cancellation, batching."""

import pytest
import torch

from diffusion_engine.adapters.diffusion_gemma import DiffusionGemmaDenoiser
from diffusion_engine.engine import DiffusionEngine, GenerationParams
from diffusion_engine.template import CanvasTemplate
from diffusion_engine.testing import TINY_VOCAB, tiny_diffusion_gemma

EOS, PAD, MASK_ID, V = 1, 0, 15, 16


class ScriptedDenoiser:
    """Mask model whose logits favour ``script[output_position]``, with seeded noise so
    confidences differ between positions."""

    mask_token_id = MASK_ID
    eos_token_ids = frozenset({EOS})
    pad_token_id = PAD
    block_size = 4
    vocab_size = V
    device = torch.device("cpu")

    def __init__(self, script):
        self.script = script
        self.forwards = 0

    def new_cache(self, prompt_ids):
        return {"prompt": int(prompt_ids.numel()), "len": int(prompt_ids.numel())}

    def commit(self, cache, token_ids):
        cache["len"] += int(token_ids.numel())
        return cache

    def canvas_logits(self, canvases, caches, suffix_ids=None):
        self.forwards += 1
        b, c = canvases.shape
        out = torch.zeros(b, c, V)
        for row, cache in enumerate(caches):
            for i in range(c):
                pos = cache["len"] - cache["prompt"] + i
                g = torch.Generator().manual_seed(pos)
                out[row, i] = torch.randn(V, generator=g)
                out[row, i, self.script[pos % len(self.script)]] += 6.0 + pos % 3
        return out


PROMPT = torch.tensor([2, 3])


def test_eos_ends_answer_and_no_further_blocks():
    den = ScriptedDenoiser([4, 5, 6, 7, 8, EOS, 9, 9, 9, 9, 9, 9])
    blocks = []
    res = DiffusionEngine(den).generate(PROMPT, GenerationParams(max_tokens=12), on_block=blocks.append)
    assert res.token_ids == [4, 5, 6, 7, 8]
    assert res.finish_reason == "stop" and res.stats.blocks == 2
    assert blocks == [[4, 5, 6, 7], [8]]
    assert res.stats.steps == den.forwards
    assert res.stats.tokens_per_forward == pytest.approx(5 / den.forwards)
    assert res.stats.time_to_first_block_s is not None and res.stats.tokens_per_s > 0


def test_max_tokens_and_trailing_pad():
    res = DiffusionEngine(ScriptedDenoiser([4, 5, 6, 7, 8, 9, 10, 11])).generate(PROMPT, GenerationParams(max_tokens=6))
    assert res.token_ids == [4, 5, 6, 7, 8, 9] and res.finish_reason == "length"
    res = DiffusionEngine(ScriptedDenoiser([4, 5, PAD, PAD])).generate(PROMPT, GenerationParams(max_tokens=4))
    assert res.token_ids == [4, 5]


@pytest.mark.parametrize("steps", [1, 2, 4])
def test_low_confidence_step_budget(steps):
    den = ScriptedDenoiser(list(range(4, 12)))
    res = DiffusionEngine(den).generate(PROMPT, GenerationParams(max_tokens=8, rule="low_confidence", max_steps=steps))
    assert res.stats.steps == steps * 2 and res.token_ids == list(range(4, 12))


def test_threshold_unmasks_confident_positions_in_parallel():
    den = ScriptedDenoiser(list(range(4, 12)))
    res = DiffusionEngine(den).generate(PROMPT, GenerationParams(max_tokens=8, rule="threshold", threshold=0.9))
    assert res.token_ids == list(range(4, 12)) and res.stats.steps < 8


def test_cancellation_via_should_stop():
    calls = {"n": 0}

    def should_stop():
        calls["n"] += 1
        return calls["n"] > 2

    den = ScriptedDenoiser(list(range(4, 12)))
    res = DiffusionEngine(den).generate(
        PROMPT, GenerationParams(max_tokens=8, rule="low_confidence"), should_stop=should_stop)
    assert res.finish_reason == "cancelled" and res.stats.steps == 2 == den.forwards


def test_template_eos_only_where_allowed():
    den = ScriptedDenoiser([4, 5, EOS, 7, 8, 9])
    tpl = CanvasTemplate.free(6, V)  # EOS banned everywhere: the template decides the length
    res = DiffusionEngine(den).generate(PROMPT, GenerationParams(), template=tpl)
    assert len(res.token_ids) == 6 and EOS not in res.token_ids and res.finish_reason == "stop"
    allow = torch.zeros(V, dtype=torch.bool)
    allow[[EOS, 7]] = True
    tpl.allowed[2] = allow  # this position may end the answer
    res = DiffusionEngine(den).generate(PROMPT, GenerationParams(), template=tpl)
    assert res.token_ids == [4, 5] and res.finish_reason == "stop"


@pytest.fixture(scope="module")
def gemma():
    return DiffusionGemmaDenoiser(tiny_diffusion_gemma(0))


@pytest.mark.parametrize("rule", ["threshold", "entropy_bound"])
def test_template_fixed_positions_never_change_and_allowed_respected(gemma, rule):
    n = 20  # not a multiple of the canvas: last block overflows and is cut
    digits = torch.zeros(TINY_VOCAB, dtype=torch.bool)
    digits[10:20] = True
    tpl = CanvasTemplate.from_segments([[30, 31, 32], (5, digits), 4, [33], (7, digits)], TINY_VOCAB)
    assert len(tpl) == n and len(tpl.allowed.masks) == 1  # one shared mask
    drafts = []
    engine = DiffusionEngine(gemma)
    params = GenerationParams(rule=rule, temperature=1.5, seed=7, max_steps=6)
    res = engine.generate(PROMPT, params, template=tpl, on_draft=lambda i, d: drafts.append((i, d.clone())))
    out = torch.tensor(res.token_ids)
    assert out.numel() == n
    assert torch.equal(out[tpl.fixed], tpl.tokens[tpl.fixed])
    constrained = tpl.allowed.index >= 0
    assert bool(digits[out[constrained]].all())
    for block_index, draft in drafts:
        start = block_index * gemma.block_size
        end = min(start + gemma.block_size, n)
        fixed = tpl.fixed[start:end]
        assert torch.equal(draft[: end - start][fixed], tpl.tokens[start:end][fixed])


def test_batched_steps_equal_unbatched(gemma):
    engine = DiffusionEngine(gemma)
    jobs = [
        (torch.tensor([2, 5, 6, 7, 8]), GenerationParams(max_tokens=16, rule="entropy_bound", temperature=0.8,
                                                          final_temperature=0.4, max_steps=10, seed=1)),
        (torch.tensor([2, 9]), GenerationParams(max_tokens=12, rule="threshold", temperature=0.9, seed=2)),
        (torch.tensor([2, 11, 12, 13]), GenerationParams(max_tokens=24, rule="low_confidence", temperature=1.0,
                                                         top_p=0.9, seed=3)),
    ]
    alone = [engine.generate(p, params).token_ids for p, params in jobs]
    runs = [engine.start(p, params) for p, params in jobs]
    while not all(r.finished for r in runs):
        engine.step(runs)
    assert [r.result().token_ids for r in runs] == alone


def test_seed_reproducible_and_seeds_differ(gemma):
    engine = DiffusionEngine(gemma)
    p = GenerationParams(max_tokens=16, temperature=1.0, seed=11, stop_on_eos=False)
    a, b = engine.generate(PROMPT, p), engine.generate(PROMPT, p)
    c = engine.generate(PROMPT, GenerationParams(max_tokens=16, temperature=1.0, seed=12, stop_on_eos=False))
    assert a.token_ids == b.token_ids != c.token_ids


def test_invalid_params_explain_the_fix(gemma):
    with pytest.raises(ValueError, match="top_p"):
        DiffusionEngine(gemma).generate(PROMPT, GenerationParams(top_p=0.0))
    with pytest.raises(ValueError, match="rule"):
        DiffusionEngine(gemma).generate(PROMPT, GenerationParams(rule="nope"))
