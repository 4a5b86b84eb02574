"""bf16 linears with oneDNN-packed weights (diffusion_engine.packed_linear)."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from diffusion_engine.packed_linear import can_pack, pack_linears, packed_count, unpack_linears

needs_bf16 = pytest.mark.skipif(
    not can_pack(torch.zeros(1, dtype=torch.bfloat16)), reason="this CPU's oneDNN has no bf16 support"
)


def tiny_mlp(dtype: torch.dtype) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 96), nn.SiLU(), nn.Linear(96, 32, bias=False)).to(dtype)


def test_float32_models_are_left_alone():
    model = tiny_mlp(torch.float32)
    assert pack_linears(model) == 0 and packed_count(model) == 0


@needs_bf16
@pytest.mark.parametrize("rows", [1, 5, 17])
def test_packed_forward_computes_what_the_plain_one_does(rows):
    model = tiny_mlp(torch.bfloat16)
    x = torch.randn(1, rows, 64, dtype=torch.bfloat16)
    with torch.inference_mode():
        plain = model(x)
        assert pack_linears(model) == 2
        assert pack_linears(model) == 0  # idempotent: already packed layers are skipped
        packed = model(x)
    assert packed.shape == plain.shape
    torch.testing.assert_close(packed, plain, rtol=1e-2, atol=1e-2)


@needs_bf16
def test_copies_repack_from_their_own_weights():
    model = tiny_mlp(torch.bfloat16)
    pack_linears(model)
    clone = copy.deepcopy(model)  # oneDNN's packed tensors cannot be copied: dropped, then re-packed
    assert packed_count(clone) == 2
    with torch.no_grad():
        clone[0].weight.mul_(-1)
        x = torch.randn(3, 64, dtype=torch.bfloat16)
        # the copy packs its own (negated) weight, not the original's
        torch.testing.assert_close(clone[0](x), -model[0](x) + 2 * model[0].bias, rtol=2e-2, atol=2e-2)
    assert unpack_linears(clone) == 2 and packed_count(clone) == 0


@needs_bf16
def test_training_falls_back_to_the_differentiable_weight():
    model = tiny_mlp(torch.bfloat16)
    pack_linears(model)
    x = torch.randn(4, 64, dtype=torch.bfloat16, requires_grad=True)
    model(x).float().sum().backward()
    assert x.grad is not None and model[0].weight.grad is not None
    assert torch.isfinite(model[0].weight.grad.float()).all()
