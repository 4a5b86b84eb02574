"""Token sampling and acceptance rules for one canvas (one request, one block).

Every denoising step does, per request row:

1. ``scaled = constrained_logits / temperature`` (:func:`scale_logits`);
2. ``sampled = multinomial(softmax(top_p(scaled)))`` with the request's own
   ``torch.Generator`` (:func:`sample_tokens`; temperature 0 means argmax);
3. an :class:`AcceptanceRule` decides which positions take their sampled token;
4. the engine renoises undecided positions (mask id, or uniform noise for models like
   DiffusionGemma that denoise random tokens).

RNG use per step is exactly one ``multinomial`` over ``[C, V]`` followed (noise models
only) by one ``randint`` of ``C`` ids. DiffusionGemma's reference loop draws in the same
order, which is what lets tests compare whole outputs with the same seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Protocol

import torch

NEG_INF = float("-inf")


def temperature_at(step: int, max_steps: int, temperature: float, final_temperature: float | None) -> float:
    """Temperature for 0-based ``step``.

    With ``final_temperature`` set this is DiffusionGemma's linear schedule:
    ``t = t_min + (t_max - t_min) * remaining / max_steps`` where ``remaining`` counts
    down from ``max_steps`` at the first step to 1 at the last.
    """
    if final_temperature is None:
        return temperature
    remaining = max_steps - step
    return final_temperature + (temperature - final_temperature) * (remaining / max_steps)


def scale_logits(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    return logits if temperature <= 0 else logits / temperature


def top_p_filter(scaled: torch.Tensor, top_p: float) -> torch.Tensor:
    """Keep the smallest set of tokens whose probability reaches ``top_p`` (always >= 1)."""
    if top_p >= 1.0:
        return scaled
    sorted_logits, order = torch.sort(scaled, dim=-1, descending=True)
    cum = sorted_logits.softmax(-1).cumsum(-1)
    drop_sorted = (cum - sorted_logits.softmax(-1)) >= top_p  # mass before this token already enough
    drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
    return scaled.masked_fill(drop, NEG_INF)


def sample_tokens(
    scaled: torch.Tensor, temperature: float, top_p: float, generator: torch.Generator | None
) -> torch.Tensor:
    """One token per position from ``scaled`` logits ``[C, V]``."""
    if temperature <= 0:
        return scaled.argmax(-1)
    probs = torch.softmax(top_p_filter(scaled, top_p), dim=-1, dtype=torch.float32)
    return torch.multinomial(probs, num_samples=1, generator=generator).squeeze(-1)


def token_entropy(scaled: torch.Tensor) -> torch.Tensor:
    """Entropy per position; ``-inf`` logits (banned tokens) contribute 0."""
    logp = torch.log_softmax(scaled, dim=-1)
    logp_finite = logp.clamp(min=torch.finfo(logp.dtype).min)
    return -(logp_finite * logp.exp()).sum(-1)


def token_confidence(scaled: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """Probability of ``tokens`` under ``softmax(scaled)`` (LLaDA / Fast-dLLM confidence)."""
    return torch.softmax(scaled, dim=-1).gather(-1, tokens[:, None]).squeeze(-1)


@dataclass
class BlockState:
    """Denoising state of one canvas."""

    canvas: torch.Tensor  # LongTensor[C]: what the denoiser sees next
    decided: torch.Tensor  # BoolTensor[C]: positions holding accepted tokens
    fixed: torch.Tensor  # BoolTensor[C]: template-given tokens, never resampled
    max_steps: int
    step: int = 0  # forwards already applied to this block
    output: torch.Tensor | None = None  # the block's tokens once done
    done: bool = False
    history: list[torch.Tensor] = field(default_factory=list)  # stopping-criterion memory

    @property
    def steps_left(self) -> int:
        return self.max_steps - self.step


class AcceptanceRule(Protocol):
    #: True when accepted tokens never change again within the block
    monotone: bool

    def accept(self, block: BlockState, sampled: torch.Tensor, scaled: torch.Tensor) -> None:
        """Update ``block`` (canvas, decided, done, output) after one forward.

        Called before ``block.step`` is incremented; must set ``done`` by the last step.
        """
        ...


def _commit(block: BlockState, accept: torch.Tensor, sampled: torch.Tensor) -> None:
    block.canvas = torch.where(accept, sampled, block.canvas)
    block.decided = block.decided | accept
    if bool(block.decided.all()):
        block.done = True
        block.output = block.canvas.clone()


class ConfidenceThreshold:
    """Fast-dLLM parallel unmasking: accept every undecided position whose confidence is
    at least ``threshold``; always at least the most confident one, and everything left
    on the block's last allowed step."""

    monotone = True

    def __init__(self, threshold: float = 0.9) -> None:
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"threshold must be in (0, 1], got {threshold}")
        self.threshold = threshold

    def accept(self, block: BlockState, sampled: torch.Tensor, scaled: torch.Tensor) -> None:
        open_ = ~block.decided
        if not bool(open_.any()):
            _commit(block, open_, sampled)
            return
        if block.steps_left <= 1:
            _commit(block, open_, sampled)
            return
        conf = token_confidence(scaled, sampled).masked_fill(~open_, -1.0)
        accept = open_ & (conf >= self.threshold)
        accept[int(conf.argmax())] = True
        _commit(block, accept, sampled)


class LowConfidenceRemasking:
    """LLaDA: with ``s`` steps left and ``m`` undecided positions, accept the
    ``ceil(m / s)`` most confident ones and keep the rest masked. The block finishes in
    exactly its step budget (same per-step counts as LLaDA's even split)."""

    monotone = True

    def accept(self, block: BlockState, sampled: torch.Tensor, scaled: torch.Tensor) -> None:
        open_ = ~block.decided
        remaining = int(open_.sum())
        if remaining == 0:
            _commit(block, open_, sampled)
            return
        k = math.ceil(remaining / max(block.steps_left, 1))
        conf = token_confidence(scaled, sampled).masked_fill(~open_, -1.0)
        chosen = torch.topk(conf, k).indices
        accept = torch.zeros_like(open_)
        accept[chosen] = True
        _commit(block, accept, sampled)


class StableAndConfident:
    """DiffusionGemma's adaptive stop: the argmax canvas equals each of the previous
    ``stability_threshold`` argmax canvases and the mean token entropy is below
    ``confidence_threshold``."""

    def __init__(self, stability_threshold: int = 1, confidence_threshold: float = 0.005) -> None:
        self.stability_threshold = stability_threshold
        self.confidence_threshold = confidence_threshold

    def __call__(self, block: BlockState, argmax: torch.Tensor, entropy: torch.Tensor) -> bool:
        if self.stability_threshold == 0:
            stable = True
        else:
            stable = len(block.history) == self.stability_threshold and all(
                bool(torch.equal(h, argmax)) for h in block.history
            )
            block.history.append(argmax)
            del block.history[: -self.stability_threshold]
        confident = float(entropy.mean()) < self.confidence_threshold
        return stable and confident


class EntropyBound:
    """DiffusionGemma's EntropyBoundSampler acceptance: accept the ``k`` lowest-entropy
    positions such that ``sum(entropy_1..k) - max(entropy_1..k) <= bound``; all other
    positions are renoised. Accepted tokens may change on later steps (not monotone).
    The block's output is the argmax canvas of the last step, as in the reference.
    Fixed (template) positions count as zero entropy and keep their token."""

    monotone = False

    def __init__(self, bound: float = 0.1, stop: StableAndConfident | None = None) -> None:
        if bound <= 0:
            raise ValueError(f"entropy bound must be > 0, got {bound}")
        self.bound = bound
        self.stop = stop if stop is not None else StableAndConfident()

    def accept(self, block: BlockState, sampled: torch.Tensor, scaled: torch.Tensor) -> None:
        entropy = token_entropy(scaled).masked_fill(block.fixed, 0.0)
        sorted_h, order = torch.sort(entropy, dim=-1)
        selected_sorted = (torch.cumsum(sorted_h, -1) - sorted_h) <= self.bound
        accept = torch.zeros_like(selected_sorted).scatter(-1, order, selected_sorted) | block.fixed
        sampled = torch.where(block.fixed, block.canvas, sampled)
        block.canvas = torch.where(accept, sampled, block.canvas)
        block.decided = accept
        argmax = torch.where(block.fixed, block.canvas, scaled.argmax(-1))
        stop = self.stop(block, argmax, entropy)
        if stop or block.steps_left <= 1:
            block.done = True
        block.output = argmax


def make_rule(name: str, *, threshold: float, entropy_bound: float, stability_threshold: int,
              confidence_threshold: float) -> AcceptanceRule:
    if name == "threshold":
        return ConfidenceThreshold(threshold)
    if name == "low_confidence":
        return LowConfidenceRemasking()
    if name == "entropy_bound":
        return EntropyBound(entropy_bound, StableAndConfident(stability_threshold, confidence_threshold))
    raise ValueError(f"unknown rule {name!r}; use 'threshold', 'low_confidence' or 'entropy_bound'")
