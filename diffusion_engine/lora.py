"""A tiny LoRA: low-rank adapters on ``nn.Linear`` layers that can be switched off.

Why hand-written: ``peft`` is not installed and we need one property it does not give
us cheaply: the adapter must be *off by default* and switched on only inside a
context, per thread/task, so that one resident base model serves the AR path
(adapter off, bit-identical to the base) and the diffusion path (adapter on) at the
same time. The switch is a ``ContextVar``, so a request handled in another thread or
asyncio task never sees this one's setting.

The base ``nn.Linear`` is kept as a child module and never modified; the adapter
weights live in fp32 (optimiser master copy) and are cast to the activation dtype in
forward.
"""

from __future__ import annotations

import contextlib
import math
from contextvars import ContextVar
from typing import Iterable, Iterator

import torch
from torch import nn


class LoRALinear(nn.Module):
    """``base(x) + scale * B(A(x))`` when its ``LoRASet`` is active, else ``base(x)``."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float, active: ContextVar[bool]):
        super().__init__()
        self.base = base
        self.rank = rank
        self.scale = alpha / rank
        self._active = active
        self.lora_a = nn.Parameter(torch.empty(rank, base.in_features, dtype=torch.float32))
        self.lora_b = nn.Parameter(torch.zeros(base.out_features, rank, dtype=torch.float32))
        # Kaiming-uniform A and zero B: the adapted model starts exactly at the base.
        nn.init.kaiming_uniform_(self.lora_a, a=math.sqrt(5))

    @property
    def in_features(self) -> int:
        return self.base.in_features

    @property
    def out_features(self) -> int:
        return self.base.out_features

    @property
    def weight(self) -> torch.Tensor:  # some HF code peeks at `.weight.dtype`
        return self.base.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.base(x)
        if not self._active.get():
            return out
        a = self.lora_a.to(x.dtype)
        b = self.lora_b.to(x.dtype)
        return out + (x @ a.t() @ b.t()) * self.scale


class LoRASet:
    """All LoRA layers injected into one model, with one on/off switch."""

    def __init__(self, model: nn.Module, rank: int, alpha: float, targets: Iterable[str]):
        self.rank = rank
        self.alpha = alpha
        self.targets = tuple(targets)
        self._active: ContextVar[bool] = ContextVar(f"lora_active_{id(self)}", default=False)
        self.layers: dict[str, LoRALinear] = {}
        for name, module in list(model.named_modules()):
            for child_name, child in list(module.named_children()):
                if child_name in self.targets and isinstance(child, nn.Linear):
                    wrapped = LoRALinear(child, rank, alpha, self._active)
                    wrapped.to(device=child.weight.device)
                    setattr(module, child_name, wrapped)
                    full = f"{name}.{child_name}" if name else child_name
                    self.layers[full] = wrapped
        if not self.layers:
            raise ValueError(
                f"no nn.Linear named any of {self.targets} in the model; "
                "check the target names against model.named_modules()"
            )

    @property
    def active(self) -> bool:
        return self._active.get()

    @contextlib.contextmanager
    def enabled(self, on: bool = True) -> Iterator[None]:
        """Switch the adapter on (or off) for code run inside this context."""
        token = self._active.set(on)
        try:
            yield
        finally:
            self._active.reset(token)

    def parameters(self) -> list[nn.Parameter]:
        return [p for layer in self.layers.values() for p in (layer.lora_a, layer.lora_b)]

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def state_dict(self) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        for name, layer in self.layers.items():
            out[f"{name}.lora_a"] = layer.lora_a.detach()
            out[f"{name}.lora_b"] = layer.lora_b.detach()
        return out

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        expected = {f"{n}.{p}" for n in self.layers for p in ("lora_a", "lora_b")}
        missing = expected - state.keys()
        if missing:
            raise KeyError(
                f"adapter file lacks {len(missing)} LoRA tensors (e.g. {sorted(missing)[0]}); "
                "it was trained with other targets or another base model"
            )
        with torch.no_grad():
            for name, layer in self.layers.items():
                a, b = state[f"{name}.lora_a"], state[f"{name}.lora_b"]
                if a.shape != layer.lora_a.shape or b.shape != layer.lora_b.shape:
                    raise ValueError(
                        f"{name}: adapter rank/shape {tuple(a.shape)} does not match "
                        f"{tuple(layer.lora_a.shape)}; set lora_rank in the adapter config to match"
                    )
                layer.lora_a.copy_(a.float())
                layer.lora_b.copy_(b.float())
