"""Linears with oneDNN-packed weights (diffusion_engine.packed_linear): bf16, and float32 off Intel."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from diffusion_engine.packed_linear import (
    can_pack,
    cpu_vendor,
    pack_linears,
    packed_count,
    packing_mode,
    unpack_linears,
)

needs_bf16 = pytest.mark.skipif(
    not can_pack(torch.zeros(1, dtype=torch.bfloat16)), reason="this CPU's oneDNN has no bf16 support"
)


def tiny_mlp(dtype: torch.dtype) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 96), nn.SiLU(), nn.Linear(96, 32, bias=False)).to(dtype)


needs_onednn = pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="torch built without oneDNN")


def test_float32_packing_follows_the_mode_and_the_cpu_vendor(monkeypatch):
    weight = torch.zeros(4, 4)
    # MKL's float32 GEMM is the tuned path on Intel; elsewhere oneDNN's packed one is faster
    assert not can_pack(weight, "auto", vendor="GenuineIntel")
    assert not can_pack(weight, "auto", vendor="")  # unknown CPU: leave float32 alone
    assert not can_pack(weight, "off", vendor="AuthenticAMD")
    assert not can_pack(weight.to(torch.float16), "on")
    if torch.backends.mkldnn.is_available():
        assert can_pack(weight, "auto", vendor="AuthenticAMD") and can_pack(weight, "on", vendor="GenuineIntel")
    model = tiny_mlp(torch.float32)
    monkeypatch.setenv("TANDEM_PACKED_LINEARS", "off")
    assert pack_linears(model) == 0 and packed_count(model) == 0
    monkeypatch.setenv("TANDEM_PACKED_LINEARS", "fast")
    with pytest.raises(ValueError, match="TANDEM_PACKED_LINEARS='fast': use auto, on, off"):
        packing_mode()


def test_cpu_vendor_reads_cpuinfo(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\n")
    assert cpu_vendor(info) == "AuthenticAMD"
    assert cpu_vendor(tmp_path / "missing") == ""


@needs_onednn
@pytest.mark.parametrize("rows", [1, 2, 5, 17])
def test_packed_float32_computes_what_the_plain_one_does(rows):
    model = tiny_mlp(torch.float32)
    x = torch.randn(1, rows, 64)
    with torch.inference_mode():
        plain = model(x)
        assert pack_linears(model, mode="on") == 2
        packed = model(x)  # one row goes to F.linear (MKL's GEMV is faster), more rows to oneDNN
    torch.testing.assert_close(packed, plain, rtol=1e-5, atol=1e-5)


@needs_onednn
def test_one_float32_row_runs_packed_on_large_weights(monkeypatch):
    from diffusion_engine import packed_linear

    monkeypatch.setattr(packed_linear, "ONE_ROW_PACKED_FROM", 1)  # every weight counts as large
    model = tiny_mlp(torch.float32)
    x = torch.randn(1, 64)
    with torch.inference_mode():
        plain = model(x)
        pack_linears(model, mode="on")
        packed = model(x)
    torch.testing.assert_close(packed, plain, rtol=1e-5, atol=1e-5)


@needs_onednn
def test_float32_training_falls_back_to_the_differentiable_weight():
    model = tiny_mlp(torch.float32)
    pack_linears(model, mode="on")
    x = torch.randn(4, 64, requires_grad=True)
    model(x).sum().backward()
    assert x.grad is not None and model[0].weight.grad is not None


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
