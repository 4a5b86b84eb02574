"""DiffusionGemma adapter and engine measured against transformers' own implementation
(same tiny random weights)."""

import pytest
import torch

from diffusion_engine.adapters.diffusion_gemma import DiffusionGemmaDenoiser
from diffusion_engine.engine import DiffusionEngine, GenerationParams
from diffusion_engine.template import CanvasTemplate
from diffusion_engine.testing import TINY_CANVAS, TINY_VOCAB, tiny_diffusion_gemma

PROMPT = torch.tensor([2, 5, 6, 7, 8])


@pytest.fixture(scope="module")
def model():
    return tiny_diffusion_gemma(0)


@pytest.fixture(scope="module")
def denoiser(model):
    return DiffusionGemmaDenoiser(model)


def _reference_logits(model, prefix, canvas, sc=None):
    from transformers import DynamicCache

    with torch.no_grad():
        return model(
            input_ids=prefix[None],
            decoder_input_ids=canvas[None],
            cache=DynamicCache(config=model.config.text_config),
            self_conditioning_logits=None if sc is None else sc[None],
        ).logits[0]


def test_adapter_logits_equal_transformers_forward(model, denoiser):
    g = torch.Generator().manual_seed(1)
    other = torch.tensor([2, 9, 10])
    canvases = torch.randint(0, TINY_VOCAB, (2, TINY_CANVAS), generator=g)
    sc = torch.randn(TINY_CANVAS, TINY_VOCAB, generator=g)
    caches = [denoiser.new_cache(PROMPT), denoiser.new_cache(other)]
    single = denoiser.canvas_logits(canvases[:1], caches[:1], self_conditioning=[sc])[0]
    torch.testing.assert_close(single, _reference_logits(model, PROMPT, canvases[0], sc), atol=1e-5, rtol=1e-5)
    # batched rows with different prefix lengths, one row without self-conditioning
    batched = denoiser.canvas_logits(canvases, caches, self_conditioning=[sc, None])
    torch.testing.assert_close(batched[0], _reference_logits(model, PROMPT, canvases[0], sc), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(batched[1], _reference_logits(model, other, canvases[1]), atol=1e-5, rtol=1e-5)


def test_lean_path_equals_module_path(model, denoiser):
    """The lean decoder (fused projections, dense experts) against the same adapter
    calling transformers' decoder layers module by module."""
    modules = DiffusionGemmaDenoiser(model, fast=False)
    assert denoiser._lean is not None and modules._lean is None
    g = torch.Generator().manual_seed(5)
    canvases = torch.randint(0, TINY_VOCAB, (3, TINY_CANVAS), generator=g)
    sc = torch.randn(TINY_CANVAS, TINY_VOCAB, generator=g)
    prompts = [PROMPT, torch.tensor([2, 9, 10]), torch.arange(2, 40)]
    caches = [denoiser.new_cache(p) for p in prompts]
    lean = denoiser.canvas_logits(canvases, caches, self_conditioning=[None, sc, sc])
    slow = modules.canvas_logits(canvases, caches, self_conditioning=[None, sc, sc])
    torch.testing.assert_close(lean, slow, atol=1e-5, rtol=1e-5)


def test_committed_blocks_give_same_logits_as_encoding_everything(model, denoiser):
    g = torch.Generator().manual_seed(2)
    block1 = torch.randint(0, TINY_VOCAB, (TINY_CANVAS,), generator=g)
    block2 = torch.randint(0, TINY_VOCAB, (TINY_CANVAS,), generator=g)
    canvas = torch.randint(0, TINY_VOCAB, (1, TINY_CANVAS), generator=g)
    cached = denoiser.commit(denoiser.commit(denoiser.new_cache(PROMPT), block1), block2)
    whole = denoiser.new_cache(torch.cat([PROMPT, block1, block2]))
    assert cached.length == whole.length == PROMPT.numel() + 2 * TINY_CANVAS
    torch.testing.assert_close(
        denoiser.canvas_logits(canvas, [cached]), denoiser.canvas_logits(canvas, [whole]), atol=1e-5, rtol=1e-5
    )
    uncached = _reference_logits(model, torch.cat([PROMPT, block1, block2]), canvas[0])
    torch.testing.assert_close(denoiser.canvas_logits(canvas, [cached])[0], uncached, atol=1e-5, rtol=1e-5)


def _eos_cut(ids, eos=1):
    return ids[: ids.index(eos)] if eos in ids else ids


@pytest.mark.parametrize("seed", [0, 1])
def test_whole_output_matches_transformers_generate(model, denoiser, seed):
    """Both draw, in order: randint(C) for a block's initial canvas, then per step one
    multinomial over [C, V] and one randint(C) for renoising - ours from the request's
    generator, transformers' from the global one, seeded the same. Differences by design:
    we cut the answer at the first EOS (transformers keeps going to the canvas end when
    no pad id is configured) and cut to max_tokens."""
    engine = DiffusionEngine(denoiser)
    n = 3 * TINY_CANVAS
    torch.manual_seed(seed)
    ref = model.generate(PROMPT[None], max_new_tokens=n, t_min=0.4, t_max=0.8, max_denoising_steps=20)
    ours = engine.generate(PROMPT, GenerationParams(
        max_tokens=n, rule="entropy_bound", temperature=0.8, final_temperature=0.4, max_steps=20, seed=seed))
    expected = _eos_cut(ref.sequences[0, PROMPT.numel():].tolist())
    assert ours.token_ids == expected
    if len(expected) == n:
        assert ours.stats.tokens_per_forward == pytest.approx(float(ref.tokens_per_forward[0]))


def test_explicit_initial_canvas_matches_decoder_input_ids(model, denoiser):
    """The first canvas is passed explicitly (transformers: ``decoder_input_ids``; ours: a
    template whose first-block tokens are non-fixed initial values). The second block's
    canvas is random in both, drawn from the same-seeded stream. transformers draws a
    random first canvas even when ``decoder_input_ids`` is given (the ``pop`` default is
    evaluated eagerly); our engine likewise always draws a block's noise, so the streams
    stay aligned."""
    engine = DiffusionEngine(denoiser)
    canvas = torch.randint(0, TINY_VOCAB, (TINY_CANVAS,), generator=torch.Generator().manual_seed(9))
    torch.manual_seed(4)
    ref = model.generate(PROMPT[None], max_new_tokens=2 * TINY_CANVAS, decoder_input_ids=canvas[None].clone())
    template = CanvasTemplate.free(2 * TINY_CANVAS, TINY_VOCAB, allow_eos=True)
    template.tokens[:TINY_CANVAS] = canvas
    ours = engine.generate(PROMPT, GenerationParams(
        rule="entropy_bound", temperature=0.8, final_temperature=0.4, max_steps=48, seed=4), template=template)
    assert ours.token_ids == _eos_cut(ref.sequences[0, PROMPT.numel():].tolist())


def test_suffix_is_attended(denoiser):
    canvas = torch.randint(0, TINY_VOCAB, (1, TINY_CANVAS), generator=torch.Generator().manual_seed(3))
    cache = denoiser.new_cache(PROMPT)
    plain = denoiser.canvas_logits(canvas, [cache])
    with_suffix = denoiser.canvas_logits(canvas, [cache], [torch.tensor([40, 41, 42])])
    other_suffix = denoiser.canvas_logits(canvas, [cache], [torch.tensor([50, 51, 52])])
    assert not torch.allclose(plain, with_suffix) and not torch.allclose(with_suffix, other_suffix)
    # the suffix never leaks into the committed prefix
    torch.testing.assert_close(denoiser.canvas_logits(canvas, [cache]), plain)
    engine = DiffusionEngine(denoiser)
    params = GenerationParams(max_tokens=TINY_CANVAS, temperature=0.7, seed=1, stop_on_eos=False)
    a = engine.generate(PROMPT, params, suffix_ids=[40, 41, 42])
    b = engine.generate(PROMPT, params, suffix_ids=[40, 41, 42])
    assert a.token_ids == b.token_ids and len(a.token_ids) == TINY_CANVAS


def test_batch_layout_memo_follows_cache_changes(denoiser):
    """The stacked KV of a batch is memoised; new requests with equal prefix lengths, or
    a commit, must not reuse a stale layout."""
    canvases = torch.randint(0, TINY_VOCAB, (2, TINY_CANVAS), generator=torch.Generator().manual_seed(8))
    first = [denoiser.new_cache(torch.tensor([2, 5, 6])), denoiser.new_cache(torch.tensor([2, 7]))]
    denoiser.canvas_logits(canvases, first)
    second = [denoiser.new_cache(torch.tensor([2, 40, 41])), denoiser.new_cache(torch.tensor([2, 42]))]
    for caches in (second, [second[0], denoiser.commit(second[1], torch.tensor([9, 9]))]):
        batched = denoiser.canvas_logits(canvases, caches)
        for i in range(2):
            alone = denoiser.canvas_logits(canvases[i : i + 1], caches[i : i + 1])[0]
            torch.testing.assert_close(batched[i], alone, atol=1e-5, rtol=1e-5)
