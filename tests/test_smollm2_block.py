"""Block-diffusion adapter for SmolLM2: masks, token shift, LoRA switch, loss, training loop.

All on a tiny random Llama (no real weights, no training beyond a few steps).
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

from diffusion_engine.adapters.smollm2_block import (
    AdapterConfig,
    BlockDiffusionLM,
    SmolLM2BlockDenoiser,
    load_adapter,
    save_adapter,
)
from diffusion_engine.denoiser import Denoiser
from diffusion_engine.training.adapt import train
from diffusion_engine.training.layout import Example, pack
from diffusion_engine.training.objective import masked_diffusion_loss

MASK, PAD, BS = 5, 0, 4


def tiny_llama(seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, head_dim=8, max_position_embeddings=256,
                      tie_word_embeddings=True)
    cfg._attn_implementation = "sdpa"
    return LlamaForCausalLM(cfg).eval()


def tiny_lm(seed: int = 0, randomize_lora: bool = True) -> BlockDiffusionLM:
    lm = BlockDiffusionLM(tiny_llama(seed), AdapterConfig(block_size=BS, mask_token_id=MASK, pad_token_id=PAD,
                                                          eos_token_ids=(2,), lora_rank=4, lora_alpha=8.0))
    if randomize_lora:  # B starts at zero (adapter = identity); make it do something
        g = torch.Generator().manual_seed(seed + 1)
        with torch.no_grad():
            for p in lm.lora.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    return lm


def test_training_mask_is_causal_context_plus_bidirectional_block():
    ex = Example(prompt_ids=(10, 11, 12), answer_ids=(20, 21, 22, 23, 24))  # answer pads to 8 = 2 blocks
    m1 = torch.tensor([1, 0, 1, 0, 0, 1, 1, 0], dtype=torch.bool)
    b = pack([ex], BS, MASK, PAD, torch.Generator(), copy1_masks=[m1])
    p, a = 3, 8
    assert b.length == p + 3 * a
    assert b.attention_mask.shape == (1, 1, b.length, b.length)
    m = b.attention_mask[0, 0]
    clean = m[: p + a, : p + a]
    assert torch.equal(clean, torch.tril(torch.ones(p + a, p + a, dtype=torch.bool)))
    assert not m[: p + a, p + a :].any()  # clean tokens never see noisy copies
    c1 = p + a  # first noisy copy
    # a token of answer block 1 in copy 1 sees prompt + clean block 0, and its own block only
    row = m[c1 + 5]
    assert row[: p + BS].all() and not row[p + BS : p + a].any()
    assert row[c1 + 4 : c1 + 8].all() and not row[c1 : c1 + 4].any()
    assert not row[c1 + a :].any()  # nor the other copy
    # block 0 sees only the prompt from the clean stream
    assert m[c1 + 1, :p].all() and not m[c1 + 1, p : p + a].any()
    # positions of noisy copies repeat the clean answer's positions
    assert torch.equal(b.position_ids[0, c1 : c1 + a], torch.arange(p, p + a))
    # inputs: copy 1 masked where m1, copy 2 on the complement; the clean answer is padded
    # with PAD, and pads are masked in both noisy copies (and never targets)
    answer = torch.tensor([20, 21, 22, 23, 24, PAD, PAD, PAD])
    pad = answer == PAD
    assert torch.equal(b.input_ids[0, p : p + a], answer)
    assert torch.equal(b.input_ids[0, c1 : c1 + a], torch.where(m1 | pad, MASK, answer))
    assert torch.equal(b.input_ids[0, c1 + a :], torch.where(~m1 | pad, MASK, answer))
    assert sorted(b.targets.tolist()) == [20, 21, 22, 23, 24]
    legacy = pack([ex], BS, MASK, PAD, torch.Generator(), copy1_masks=[m1], supervise_padding=True)
    assert sorted(legacy.targets.tolist()) == [PAD] * 3 + [20, 21, 22, 23, 24]
    assert torch.equal(legacy.input_ids[0, c1 : c1 + a], torch.where(m1, MASK, answer))


def test_loss_targets_are_exactly_the_masked_positions_with_token_shift():
    ex = Example(prompt_ids=(10, 11, 12), answer_ids=(20, 21, 22, 23, 24, 25, 26, 27))
    m1 = torch.tensor([1, 0, 1, 0, 1, 1, 0, 0], dtype=torch.bool)
    b = pack([ex], BS, MASK, PAD, torch.Generator(), copy1_masks=[m1])
    p, a = 3, 8
    c1, c2 = p + a, p + 2 * a
    # complementary masks: every answer token is a target exactly once
    assert sorted(b.targets.tolist()) == list(range(20, 28))
    assert int(b.targets.numel()) == a
    pairs = dict(zip(b.source_index.tolist(), b.targets.tolist()))
    # block starts are predicted by the last clean token before the block
    assert pairs[p - 1] == 20 and pairs[p + BS - 1] == 24
    # inside a block, the hidden state at u-1 of the same copy predicts u
    assert pairs[c2 + 0] == 21 and pairs[c1 + 1] == 22 and pairs[c2 + 2] == 23
    # every target sits at a position masked in the copy its source belongs to
    ids = b.input_ids[0]
    for src, tgt in pairs.items():
        u = tgt - 20
        copy_start = c1 if (src >= c1 and src < c2) or (src < c1 and bool(m1[u])) else c2
        assert ids[copy_start + u] == MASK


def test_adapter_off_is_bit_identical_to_base():
    base = tiny_llama(3)
    reference = copy.deepcopy(base)
    lm = BlockDiffusionLM(base, AdapterConfig(block_size=BS, mask_token_id=MASK, pad_token_id=PAD, lora_rank=4))
    with torch.no_grad():
        for p in lm.lora.parameters():
            p.add_(0.5)
    ids = torch.randint(0, 64, (2, 9), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want = reference(ids).logits
        assert torch.equal(base(ids).logits, want)  # off by default
        with lm.adapter_off() as model:
            assert torch.equal(model(ids).logits, want)
        with lm.lora.enabled():
            assert not torch.allclose(base(ids).logits, want)


def test_denoiser_matches_training_layout_and_shift():
    lm = tiny_lm(seed=1)
    den = SmolLM2BlockDenoiser(lm)
    assert isinstance(den, Denoiser)
    prompt, answer = (7, 8, 9, 10, 11), (20, 21, 22, 23, 30, 31, 32, 33)
    m1 = torch.tensor([1, 1, 0, 1, 0, 1, 1, 1], dtype=torch.bool)
    b = pack([Example(prompt, answer)], BS, MASK, PAD, torch.Generator(), copy1_masks=[m1])
    with torch.no_grad():
        hidden = lm.hidden_states(b.input_ids, b.attention_mask, b.position_ids)
        train_logits = lm.logits(hidden[0, b.source_index])
    p, a = len(prompt), len(answer)
    copy1 = b.input_ids[0, p + a : p + 2 * a]
    cache = den.new_cache(torch.tensor(prompt))
    block0 = den.canvas_logits(copy1[None, :BS], [cache])[0]
    cache = den.commit(cache, torch.tensor(answer[:BS]))
    block1 = den.canvas_logits(copy1[None, BS:], [cache])[0]
    infer = torch.cat([block0, block1])
    for k, (src, tgt) in enumerate(zip(b.source_index.tolist(), b.targets.tolist())):
        u = answer.index(tgt)
        if src < p + a and not bool(m1[u]):
            continue  # block start supervised in copy 2; covered by copy-1 rows below
        if p + 2 * a <= src:
            continue
        torch.testing.assert_close(infer[u], train_logits[k], atol=1e-4, rtol=1e-4)
    # token shift: canvas position 0 is the prediction after the last committed token
    with torch.no_grad(), lm.lora.enabled():
        ar = lm.model(torch.tensor([prompt])).logits[0, -1].float()
    torch.testing.assert_close(block0[0], ar, atol=1e-4, rtol=1e-4)


def test_batched_rows_with_different_context_lengths_match_single_rows():
    den = SmolLM2BlockDenoiser(tiny_lm(seed=2))
    c1, c2 = den.new_cache(torch.tensor([3, 4, 5])), den.new_cache(torch.tensor([6, 7, 8, 9, 10, 11]))
    canv = torch.tensor([[MASK, 12, MASK, MASK], [13, MASK, MASK, 14]])
    both = den.canvas_logits(canv, [c1, c2], [None, torch.tensor([15, 16])])
    one = den.canvas_logits(canv[:1], [c1])
    two = den.canvas_logits(canv[1:], [c2], [torch.tensor([15, 16])])
    torch.testing.assert_close(both, torch.cat([one, two]), atol=1e-5, rtol=1e-5)
    assert c1.length == 3 and c2.length == 6  # canvas_logits never grows a cache
    assert both.dtype == torch.float32 and both.shape == (2, 4, 64)


def _examples(n: int, seed: int = 0) -> list[Example]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        p = torch.randint(6, 64, (int(torch.randint(2, 6, (1,), generator=g)),), generator=g)
        start = int(torch.randint(6, 40, (1,), generator=g))
        out.append(Example(tuple(p.tolist()), tuple(range(start, start + 6)) + (2,)))  # learnable: counting
    return out


def _cfg(steps: int, every: int = 10) -> dict:
    return {"seed": 7, "train": {"tokens_per_step": 120, "max_steps": steps, "lr": 2e-2, "warmup_steps": 1,
                                  "min_lr_ratio": 1.0, "weight_decay": 0.0, "grad_clip": 1.0,
                                  "checkpoint_every": every, "keep_checkpoints": 2, "log_every": 100}}


def test_two_training_steps_reduce_loss(tmp_path: Path):
    lm = tiny_lm(seed=4, randomize_lora=False)
    examples = _examples(6)
    probe = pack(examples, BS, MASK, PAD, torch.Generator().manual_seed(0))
    with torch.no_grad():
        before = float(masked_diffusion_loss(lm, probe))
    train(lm, examples, _cfg(2), tmp_path, resume=False, show_progress=False)
    with torch.no_grad():
        after = float(masked_diffusion_loss(lm, probe))
    assert after < before - 0.05, (before, after)


def test_checkpoint_resume_matches_uninterrupted_run(tmp_path: Path):
    examples = _examples(8)
    straight = tiny_lm(seed=5, randomize_lora=False)
    train(straight, examples, _cfg(3), tmp_path / "a", resume=False, show_progress=False)
    first = tiny_lm(seed=5, randomize_lora=False)
    train(first, examples, _cfg(2, every=1), tmp_path / "b", resume=False, show_progress=False)
    resumed = tiny_lm(seed=5, randomize_lora=False)
    totals = train(resumed, examples, _cfg(3, every=1), tmp_path / "b", resume=True, show_progress=False)
    assert totals["step"] == 3
    for k, v in straight.adapter_state_dict().items():
        torch.testing.assert_close(resumed.adapter_state_dict()[k], v, atol=1e-6, rtol=1e-5)
    # the exported adapter reloads into a fresh base
    save_adapter(resumed, tmp_path / "export")
    cfg, state = load_adapter(tmp_path / "export")
    assert cfg.lora_rank == 4 and cfg.mask_token_id == MASK
    fresh = BlockDiffusionLM(tiny_llama(5), cfg)
    fresh.load_adapter_state(state)
    torch.testing.assert_close(fresh.mask_embedding, resumed.mask_embedding, atol=1e-2, rtol=1e-2)


def test_warm_start_continues_an_exported_adapter(tmp_path: Path):
    examples = _examples(6)
    first = tiny_lm(seed=6, randomize_lora=False)
    train(first, examples, _cfg(2), tmp_path / "phase1", resume=False, show_progress=False)
    save_adapter(first, tmp_path / "export")
    probe = pack(examples, BS, MASK, PAD, torch.Generator().manual_seed(0))
    cfg = _cfg(0)
    cfg["train"]["init_adapter"] = str(tmp_path / "export")
    second = tiny_lm(seed=6, randomize_lora=False)  # same base, fresh (identity) adapter
    with torch.no_grad():
        cold = float(masked_diffusion_loss(second, probe))
    train(second, examples, cfg, tmp_path / "phase2", resume=False, show_progress=False)
    with torch.no_grad():
        warm, trained = float(masked_diffusion_loss(second, probe)), float(masked_diffusion_loss(first, probe))
    assert warm == pytest.approx(trained, abs=0.05) and warm < cold - 0.05, (cold, warm, trained)
    other = BlockDiffusionLM(tiny_llama(6), AdapterConfig(block_size=BS, mask_token_id=MASK, pad_token_id=PAD,
                                                          lora_rank=8, lora_alpha=8.0))
    with pytest.raises(ValueError, match="lora_rank=4"):
        train(other, examples, cfg, tmp_path / "phase3", resume=False, show_progress=False)


def test_resume_without_checkpoint_says_how_to_fix(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="without --resume"):
        train(tiny_lm(), _examples(2), _cfg(1), tmp_path, resume=True, show_progress=False)


def test_synthetic_route_data_is_deterministic_and_correct():
    import json
    import random

    import jsonschema

    from diffusion_engine.training.data import make_code_pairs, make_edit_pairs, make_json_pairs

    a, b = make_json_pairs(20, random.Random(3)), make_json_pairs(20, random.Random(3))
    assert a == b
    for pair in a:
        schema = json.loads(pair.instruction.split("\n")[1])
        record = json.loads(pair.answer)
        jsonschema.validate(record, schema)
        assert list(record) == schema["required"]
        for value in record.values():  # every extracted value is in the text
            assert str(value).lower() in pair.instruction.lower() or isinstance(value, bool)
    from diffusion_engine.training.data import make_instructions

    base, fresh = make_instructions(10_000, random.Random(0)), make_instructions(10_000, random.Random(0), "fresh")
    assert len(set(fresh)) == len(fresh) > len(base) and not set(base) & set(fresh)
    with pytest.raises(ValueError, match="distill_pool"):
        make_instructions(1, random.Random(0), "extended")
    for pair in make_code_pairs(5, random.Random(0)):
        assert "<MISSING>" in pair.instruction and pair.answer.strip()
        assert pair.answer not in pair.instruction  # the span was really cut out
    edits = make_edit_pairs(["The quick fox is happy to help the big dog today."] * 8, 8, random.Random(1))
    assert edits and all(e.answer != e.instruction.split("\n", 1)[1] or e.source != "edit" for e in edits)


def test_embedded_dtype_comes_from_the_environment(monkeypatch, tmp_path):
    from diffusion_engine import embedded

    monkeypatch.setenv("TANDEM_EMBEDDED_DTYPE", "float32")
    assert embedded.embedded_dtype() == torch.float32
    monkeypatch.setenv("TANDEM_EMBEDDED_DTYPE", "bfloat16")
    assert embedded.embedded_dtype() == torch.bfloat16
    monkeypatch.setenv("TANDEM_EMBEDDED_DTYPE", "fp16")
    with pytest.raises(ValueError, match="use auto, float32, bfloat16"):
        embedded.embedded_dtype()
    # auto (the default): bf16 only where the CPU has native bf16 matrix math
    monkeypatch.delenv("TANDEM_EMBEDDED_DTYPE")
    amx, plain = tmp_path / "amx", tmp_path / "plain"
    amx.write_text("flags\t\t: fpu sse2 avx512f amx_bf16 amx_tile\n")
    plain.write_text("flags\t\t: fpu sse2 avx2\n")
    assert embedded.cpu_has_bf16(amx) and not embedded.cpu_has_bf16(plain)
    assert not embedded.cpu_has_bf16(tmp_path / "missing")
    monkeypatch.setattr(embedded, "cpu_has_bf16", lambda: False)
    assert embedded.embedded_dtype() == torch.float32
    monkeypatch.setattr(embedded, "cpu_has_bf16", lambda: True)
    assert embedded.embedded_dtype() == torch.bfloat16
    # a name given (CLI flag, training config) overrides the environment; errors name where it came from
    monkeypatch.setenv("TANDEM_EMBEDDED_DTYPE", "bfloat16")
    assert embedded.embedded_dtype("float32") == torch.float32
    assert embedded.embedded_dtype("auto") == torch.bfloat16
    with pytest.raises(ValueError, match=r"phase3.yaml: dtype='float16': use auto"):
        embedded.embedded_dtype("float16", source="phase3.yaml: dtype")


def test_certainty_term_is_the_entropy_of_correct_predictions():
    from diffusion_engine.training.objective import diffusion_loss_parts

    lm = tiny_lm(seed=8)
    probe = pack(_examples(6), BS, MASK, PAD, torch.Generator().manual_seed(0))
    with torch.no_grad():
        plain = diffusion_loss_parts(lm, probe)
        forced = diffusion_loss_parts(lm, probe, certainty_weight=0.5, certainty_temperature=2.0)
        assert float(plain.total) == pytest.approx(float(masked_diffusion_loss(lm, probe)))
        assert float(plain.certainty) == 0.0
        hidden = lm.hidden_states(probe.input_ids, probe.attention_mask, probe.position_ids)
        logits = lm.logits(hidden[0, probe.source_index])
        right = logits.argmax(-1) == probe.targets
        assert 0 < int(right.sum()) < len(right)  # a mix, so the selection matters
        p = torch.softmax(logits[right] / 2.0, -1)
        entropy = float(-(p * p.log()).sum(-1).mean())
    assert float(forced.certainty) == pytest.approx(entropy, rel=1e-4)
    assert float(forced.total) == pytest.approx(float(plain.cross_entropy) + 0.5 * entropy, rel=1e-4)


def test_certainty_gradient_lowers_the_entropy_of_correct_predictions():
    """A step down the certainty term alone makes the right predictions surer (the sign and the
    gradient path through the LoRA weights and the mask embedding)."""
    from diffusion_engine.training.objective import diffusion_loss_parts

    lm = tiny_lm(seed=8)
    probe = pack(_examples(6), BS, MASK, PAD, torch.Generator().manual_seed(0))

    def entropy_at(right=None):
        hidden = lm.hidden_states(probe.input_ids, probe.attention_mask, probe.position_ids)
        logits = lm.logits(hidden[0, probe.source_index])
        right = logits.argmax(-1) == probe.targets if right is None else right
        p = torch.softmax(logits[right], -1)
        return float(-(p * p.log()).sum(-1).mean()), right

    with torch.no_grad():
        before, right = entropy_at()
    assert bool(right.any())
    opt = torch.optim.SGD(lm.trainable_parameters(), lr=0.1)
    for _ in range(3):  # small steps: the set of right predictions stays the same
        diffusion_loss_parts(lm, probe, certainty_weight=1.0).certainty.backward()
        opt.step()
        opt.zero_grad()
    with torch.no_grad():
        after, _ = entropy_at(right)
    # a tiny random model predicts almost uniformly (ln 64 = 4.16), so the change is small but signed
    assert after < before - 5e-4, (before, after)


def test_bad_certainty_settings_say_how_to_fix(tmp_path: Path):
    cfg = _cfg(1)
    cfg["train"]["certainty_temperature"] = 0
    with pytest.raises(ValueError, match="temperature > 0"):
        train(tiny_lm(seed=3), _examples(2), cfg, tmp_path, resume=False, show_progress=False)
