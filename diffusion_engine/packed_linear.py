"""Linear layers with their weights packed once for oneDNN.

Why, bf16: a plain bf16 ``F.linear`` on CPU hands oneDNN a row-major weight, which oneDNN
reorders into its blocked (AMX) layout on every call, ~210 times per SmolLM2 forward. Packing
each weight once (``torch.ops.mkldnn._reorder_linear_weight``, what inductor's CPU freezing
pass does) and calling ``torch.ops.mkldnn._linear_pointwise`` saves that: on a 2-core AMX CPU
(``python -m bench.forward_cost``, 200 cached tokens) 1/8/64-token forwards take 64.9/65.2/116.3
ms packed against 67.4/70.3/130.3 ms plain (float32: 57.7/94.7/202.2 ms), and the ``verified``
rule's structured outputs e025-e040 took 28.8 s packed against 33.0 s plain (40.4 s float32).

Why, float32 on non-Intel CPUs: torch's float32 ``F.linear`` goes to MKL, whose GEMM for a few
rows is slow off Intel. On a 2-core AMD EPYC (Zen 3) a 576->1536 linear takes 0.09 ms for 1
row but 0.32 ms for 2 (oneDNN packed: 0.22), and the 49k-vocabulary head 19 ms for 2 rows
(oneDNN packed: 4). Whole SmolLM2 forwards of 2-8 new tokens (the ``verified`` rule's checks)
drop from 137-154 ms to 99-103 ms. For one row MKL's GEMV is the faster one on the decoder's
weights (576x1536: 0.08 against 0.10 ms) but not on large ones (576x8192: 1.08 against 0.75 ms;
the 49k-vocabulary head: 9.0 against 7.0 ms), so one-row float32 inputs keep ``F.linear`` below
:data:`ONE_ROW_PACKED_FROM` weight elements: an AR step then takes 3-4 ms less than with every
one-row input on ``F.linear`` (55-61 against 59-63 ms, three runs), and ~85 ms with none. On
Intel, MKL's float32 GEMM is the tuned path and ``auto`` leaves float32 alone.

``TANDEM_PACKED_LINEARS`` = ``auto`` (default: bf16 where oneDNN has bf16, float32 on
non-Intel CPUs), ``on`` (every bf16/float32 weight oneDNN can take) or ``off``.

The packed path is for inference only: with autograd recording (training) a layer falls back
to ``F.linear`` on its own weight, which it keeps (the packed copy costs as much memory again
as the weights). The packed copy is taken at packing time: the base weights of a served
model never change (adapters are separate LoRA modules), so nothing re-packs.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

#: how many rows (tokens) oneDNN should expect when choosing the packed layout: the
#: ``verified`` rule's checks and the diffusion canvases carry 2-33 tokens
ROWS_HINT = 8
#: float32 weights with at least this many elements run packed for one row too (see above)
ONE_ROW_PACKED_FROM = 4_000_000
#: values of ``TANDEM_PACKED_LINEARS``
MODES = ("auto", "on", "off")


def packing_mode(name: str | None = None) -> str:
    """``TANDEM_PACKED_LINEARS`` (or ``name``), checked."""
    name = os.environ.get("TANDEM_PACKED_LINEARS", "auto") if name is None else name
    if name not in MODES:
        raise ValueError(f"TANDEM_PACKED_LINEARS={name!r}: use {', '.join(MODES)}")
    return name


def cpu_vendor(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """``vendor_id`` of the first CPU (``GenuineIntel``, ``AuthenticAMD``...), or "" if unknown."""
    try:
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("vendor_id"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return ""


def can_pack(weight: torch.Tensor, mode: str | None = None, vendor: str | None = None) -> bool:
    """Whether ``weight`` should run packed for oneDNN on this CPU (see the module docstring)."""
    mode = packing_mode(mode)
    if mode == "off" or weight.device.type != "cpu" or not torch.backends.mkldnn.is_available():
        return False
    if weight.dtype == torch.bfloat16:
        return torch.ops.mkldnn._is_mkldnn_bf16_supported()
    if weight.dtype == torch.float32:
        return mode == "on" or (vendor if vendor is not None else cpu_vendor()) not in ("GenuineIntel", "")
    return False


class PackedForward:
    """Replacement ``forward`` of one ``nn.Linear``: the packed weight when no gradient is
    wanted, the module's own weight otherwise (and for one float32 row of a weight smaller than
    :data:`ONE_ROW_PACKED_FROM`, where MKL's GEMV wins).

    A copy (``copy.deepcopy``, pickling) drops the packed tensor, which oneDNN cannot copy,
    and packs again from the copied weight on its first call.
    """

    def __init__(self, linear: nn.Linear, rows_hint: int = ROWS_HINT):
        self.linear, self.rows_hint = linear, rows_hint
        self.packed: torch.Tensor | None = self._pack()
        #: one row goes to MKL's GEMV: float32 weights below ONE_ROW_PACKED_FROM (decided once)
        self.one_row_gemv = (linear.weight.dtype == torch.float32
                             and linear.weight.numel() < ONE_ROW_PACKED_FROM)

    def _pack(self) -> torch.Tensor:
        return torch.ops.mkldnn._reorder_linear_weight(self.linear.weight.detach(), self.rows_hint)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "packed": None}

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        linear = self.linear
        wants_grad = torch.is_grad_enabled() and (x.requires_grad or linear.weight.requires_grad)
        gemv = self.one_row_gemv and x.numel() == x.shape[-1]
        if wants_grad or gemv or x.dtype != linear.weight.dtype or x.device.type != "cpu":
            return F.linear(x, linear.weight, linear.bias)
        if self.packed is None:
            self.packed = self._pack()
        bias = linear.bias.detach() if linear.bias is not None else None
        return torch.ops.mkldnn._linear_pointwise(x, self.packed, bias, "none", [], "")


def pack_linears(model: nn.Module, rows_hint: int = ROWS_HINT, mode: str | None = None) -> int:
    """Pack every ``nn.Linear`` of ``model`` that :func:`can_pack` accepts; returns how many.

    Idempotent: a packed layer is skipped. ``mode`` overrides ``TANDEM_PACKED_LINEARS``.
    """
    mode, vendor = packing_mode(mode), cpu_vendor()
    count = 0
    for module in model.modules():
        if type(module) is not nn.Linear or is_packed(module):
            continue
        if can_pack(module.weight, mode, vendor):
            module.forward = PackedForward(module, rows_hint)
            count += 1
    return count


def unpack_linears(model: nn.Module) -> int:
    """Undo :func:`pack_linears` (plain ``F.linear`` again); returns how many layers."""
    count = 0
    for module in model.modules():
        if is_packed(module):
            del module.forward
            count += 1
    return count


def is_packed(module: nn.Module) -> bool:
    """Whether ``module`` runs through a :class:`PackedForward` (set on the instance)."""
    return isinstance(module.__dict__.get("forward"), PackedForward)


def packed_count(model: nn.Module) -> int:
    """How many linears of ``model`` run packed."""
    return sum(is_packed(m) for m in model.modules())
