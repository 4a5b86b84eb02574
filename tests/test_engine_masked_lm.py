"""Generic masked-diffusion adapter on tiny random checkpoints saved to disk."""

import pytest
import torch

from diffusion_engine.adapters.masked_lm import MaskedLMDenoiser
from diffusion_engine.engine import DiffusionEngine, GenerationParams

MASK_ID = 3


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    from transformers import BertConfig, BertForMaskedLM, LlamaConfig, LlamaForCausalLM

    root = tmp_path_factory.mktemp("ckpt")
    torch.manual_seed(0)
    bert = BertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                      intermediate_size=64, max_position_embeddings=128, pad_token_id=0, eos_token_id=1)
    bert.mask_token_id = MASK_ID
    BertForMaskedLM(bert).save_pretrained(root / "bert")
    llama = LlamaConfig(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        num_key_value_heads=1, intermediate_size=64, max_position_embeddings=128,
                        pad_token_id=0, eos_token_id=1)
    llama.mask_token_id = MASK_ID
    LlamaForCausalLM(llama).save_pretrained(root / "llama")
    return root


@pytest.fixture(scope="module", params=[("bert", False), ("llama", True)], ids=["masked-lm", "ar-shift"])
def denoiser(request, checkpoints):
    name, shift = request.param
    return MaskedLMDenoiser.from_pretrained(checkpoints / name, block_size=4, shift=shift)


def test_loads_ids_from_config(denoiser):
    assert denoiser.mask_token_id == MASK_ID and denoiser.eos_token_ids == {1} and denoiser.vocab_size == 64


def test_attention_over_canvas_is_bidirectional(denoiser):
    cache = denoiser.new_cache(torch.tensor([5, 6, 7]))
    a = torch.tensor([[MASK_ID] * 4])
    b = a.clone()
    b[0, 3] = 20  # change the LAST canvas token
    la, lb = denoiser.canvas_logits(a, [cache]), denoiser.canvas_logits(b, [cache])
    assert not torch.allclose(la[0, 0], lb[0, 0])  # the FIRST position sees it


def test_batched_logits_equal_unbatched(denoiser):
    caches = [denoiser.new_cache(torch.tensor([5, 6, 7])), denoiser.new_cache(torch.tensor([8, 9]))]
    canvases = torch.tensor([[MASK_ID, 10, MASK_ID, MASK_ID], [11, MASK_ID, MASK_ID, 12]])
    suffix = [None, torch.tensor([30, 31])]
    batched = denoiser.canvas_logits(canvases, caches, suffix)
    for i in range(2):
        alone = denoiser.canvas_logits(canvases[i : i + 1], caches[i : i + 1], suffix[i : i + 1])
        torch.testing.assert_close(batched[i], alone[0], atol=1e-5, rtol=1e-5)


def test_committed_prefix_equals_longer_prompt(denoiser):
    canvas = torch.tensor([[MASK_ID] * 4])
    committed = denoiser.commit(denoiser.new_cache(torch.tensor([5, 6])), torch.tensor([7, 8, 9, 10]))
    whole = denoiser.new_cache(torch.tensor([5, 6, 7, 8, 9, 10]))
    torch.testing.assert_close(denoiser.canvas_logits(canvas, [committed]), denoiser.canvas_logits(canvas, [whole]))


@pytest.mark.parametrize("rule", ["threshold", "low_confidence"])
def test_decided_tokens_never_revert_and_mask_never_emitted(denoiser, rule):
    drafts = []
    engine = DiffusionEngine(denoiser)
    res = engine.generate(torch.tensor([5, 6, 7]), GenerationParams(max_tokens=12, rule=rule, temperature=1.0, seed=3,
                                                                     stop_on_eos=False),
                          on_draft=lambda i, d: drafts.append((i, d.clone())))
    assert len(res.token_ids) == 12 and MASK_ID not in res.token_ids
    for (i0, prev), (i1, cur) in zip(drafts, drafts[1:]):
        if i0 == i1:
            decided = prev != MASK_ID
            assert torch.equal(cur[decided], prev[decided])


def test_infill_suffix_is_attended(denoiser):
    cache = denoiser.new_cache(torch.tensor([5, 6]))
    canvas = torch.tensor([[MASK_ID] * 4])
    plain = denoiser.canvas_logits(canvas, [cache])
    a = denoiser.canvas_logits(canvas, [cache], [torch.tensor([20, 21])])
    b = denoiser.canvas_logits(canvas, [cache], [torch.tensor([40, 41])])
    assert not torch.allclose(plain, a) and not torch.allclose(a, b)
    res = DiffusionEngine(denoiser).generate([5, 6], GenerationParams(max_tokens=8, seed=0, stop_on_eos=False),
                                             suffix_ids=[20, 21])
    assert res.stats.blocks == 2 and 0 < len(res.token_ids) <= 8  # trailing pad ids are dropped


def test_missing_checkpoint_says_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="local checkpoint"):
        MaskedLMDenoiser.from_pretrained(tmp_path / "nope")
