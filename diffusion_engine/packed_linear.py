"""bf16 linear layers with their weights packed once for oneDNN.

Why: a plain bf16 ``F.linear`` on CPU hands oneDNN a row-major weight, which oneDNN reorders
into its blocked (AMX) layout on every call, ~210 times per SmolLM2 forward. Packing each
weight once (``torch.ops.mkldnn._reorder_linear_weight``, what inductor's CPU freezing pass
does) and calling ``torch.ops.mkldnn._linear_pointwise`` saves that: on this 2-core AMX CPU
(``python -m bench.forward_cost``, 200 cached tokens) 1/8/64-token forwards take 64.9/65.2/116.3
ms packed against 67.4/70.3/130.3 ms plain (float32: 57.7/94.7/202.2 ms), and the ``verified``
rule's structured outputs e025-e040 took 28.8 s packed against 33.0 s plain (40.4 s float32).

The packed path is for inference only: with autograd recording (training) a layer falls back
to ``F.linear`` on its own weight, which it keeps (the packed copy costs as much memory again
as the bf16 weights). The packed copy is taken at packing time: the base weights of a served
model never change (adapters are separate LoRA modules), so nothing re-packs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

#: how many rows (tokens) oneDNN should expect when choosing the packed layout: the
#: ``verified`` rule's checks and the diffusion canvases carry 2-33 tokens
ROWS_HINT = 8


def can_pack(weight: torch.Tensor) -> bool:
    """Whether this CPU's oneDNN can run ``weight`` packed (bf16 on CPU with bf16 support)."""
    return (
        weight.dtype == torch.bfloat16
        and weight.device.type == "cpu"
        and torch.backends.mkldnn.is_available()
        and torch.ops.mkldnn._is_mkldnn_bf16_supported()
    )


class PackedForward:
    """Replacement ``forward`` of one ``nn.Linear``: the packed weight when no gradient is
    wanted, the module's own weight otherwise.

    A copy (``copy.deepcopy``, pickling) drops the packed tensor, which oneDNN cannot copy,
    and packs again from the copied weight on its first call.
    """

    def __init__(self, linear: nn.Linear, rows_hint: int = ROWS_HINT):
        self.linear, self.rows_hint = linear, rows_hint
        self.packed: torch.Tensor | None = self._pack()

    def _pack(self) -> torch.Tensor:
        return torch.ops.mkldnn._reorder_linear_weight(self.linear.weight.detach(), self.rows_hint)

    def __getstate__(self) -> dict:
        return {"linear": self.linear, "rows_hint": self.rows_hint, "packed": None}

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        linear = self.linear
        wants_grad = torch.is_grad_enabled() and (x.requires_grad or linear.weight.requires_grad)
        if wants_grad or x.dtype != torch.bfloat16 or x.device.type != "cpu":
            return F.linear(x, linear.weight, linear.bias)
        if self.packed is None:
            self.packed = self._pack()
        bias = linear.bias.detach() if linear.bias is not None else None
        return torch.ops.mkldnn._linear_pointwise(x, self.packed, bias, "none", [], "")


def pack_linears(model: nn.Module, rows_hint: int = ROWS_HINT) -> int:
    """Pack every bf16 ``nn.Linear`` of ``model`` that oneDNN can run; returns how many.

    Idempotent: a packed layer is skipped. Layers of other dtypes or devices are left as
    they are, so calling this on a float32 model is a no-op.
    """
    count = 0
    for module in model.modules():
        if type(module) is not nn.Linear or is_packed(module):
            continue
        if can_pack(module.weight):
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
