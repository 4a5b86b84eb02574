"""Block-diffusion generation over any :class:`~diffusion_engine.denoiser.Denoiser`.

Text is produced in blocks ("canvases") of ``block_size`` positions. Inside a block all
positions are refined in parallel; finished blocks are committed to the denoiser's cache
so the prompt and earlier blocks are encoded once. The work is split so the same code
serves one request (:meth:`DiffusionEngine.generate`) and many (``scheduler.py``):

* :meth:`DiffusionEngine.start` encodes the prompt and returns a :class:`GenerationRun`;
* :meth:`DiffusionEngine.step` runs ONE batched denoiser forward for any set of runs
  (grouped by canvas length) and advances each by one denoising step.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Literal, Sequence

import torch

from .denoiser import Denoiser
from .sampling import (
    BlockState,
    make_rule,
    sample_tokens,
    scale_logits,
    temperature_at,
)
from .template import MASK, CanvasTemplate
from .verified import DrafterGate, VerifiedDrafting, first_stop

Rule = Literal["threshold", "low_confidence", "entropy_bound", "verified"]
FinishReason = Literal["stop", "length", "cancelled"]

#: default per-block step budget of the entropy-bound rule (DiffusionGemma's default)
ENTROPY_BOUND_MAX_STEPS = 48


@dataclass
class GenerationParams:
    max_tokens: int = 256
    #: 0 = greedy. With ``final_temperature`` set, the start of a linear per-block schedule
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    #: canvas length; None = the denoiser's trained ``block_size``
    block_size: int | None = None
    rule: Rule = "threshold"
    #: confidence threshold of the 'threshold' rule (Fast-dLLM)
    threshold: float = 0.9
    #: forwards per block; None = block_size (threshold/low_confidence) or 48 (entropy_bound)
    max_steps: int | None = None
    #: temperature at the last step (DiffusionGemma's t_min); None = constant temperature
    final_temperature: float | None = None
    entropy_bound: float = 0.1
    stability_threshold: int = 1
    confidence_threshold: float = 0.005
    #: EOS ends the answer (ignored with a template: the template decides)
    stop_on_eos: bool = True
    #: rule 'verified', structured outputs: cut a runaway repetition (an array item repeated,
    #: a looping string) and close the value (``structured/loops.py``); False = exactly AR +
    #: constrained decoding, which may run to the token budget and answer with the skeleton
    loop_guard: bool = True
    #: rule 'verified', free text: let the adapter draft where no lookup matches, while its drafts
    #: pay (``verified.DrafterGate``); False drafts from lookups only (prompt, answer so far).
    #: With the step-1300 adapter lookups alone are faster on every measured set (BENCHMARKS.md)
    adapter_drafts: bool = True

    def validate(self) -> None:
        if self.max_tokens <= 0:
            raise ValueError(f"max_tokens must be > 0, got {self.max_tokens}")
        if self.temperature < 0 or (self.final_temperature is not None and self.final_temperature < 0):
            raise ValueError("temperature must be >= 0")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.max_steps is not None and self.max_steps <= 0:
            raise ValueError(f"max_steps must be > 0, got {self.max_steps}")


@dataclass
class GenerationStats:
    steps: int = 0  # denoiser forwards that included this request
    tokens_per_forward: float = 0.0
    time_to_first_block_s: float | None = None
    tokens_per_s: float = 0.0
    blocks: int = 0
    #: rule 'verified' only: draft positions offered to the AR verifier, and kept by it
    drafted: int = 0
    draft_accepted: int = 0


@dataclass
class GenerationResult:
    token_ids: list[int]
    finish_reason: FinishReason
    stats: GenerationStats


BlockCallback = Callable[[list[int]], None]
DraftCallback = Callable[[int, torch.Tensor], None]  # (block index, current best canvas)


@dataclass(eq=False)
class GenerationRun:
    """State of one request; advanced by :meth:`DiffusionEngine.step`."""

    params: GenerationParams
    template: CanvasTemplate | None
    cache: object
    suffix_ids: torch.Tensor | None
    generator: torch.Generator
    block_size: int
    max_steps: int
    target_len: int  # tokens to produce at most
    rule: object
    on_block: BlockCallback | None = None
    on_draft: DraftCallback | None = None
    should_stop: Callable[[], bool] | None = None
    tokens: list[int] = field(default_factory=list)
    block: BlockState | None = None
    block_start: int = 0
    allowed_block: torch.Tensor | None = None  # BoolTensor[C, V] or None
    eos_stops: torch.Tensor | None = None  # BoolTensor[C]: EOS here ends the answer
    prev_logits: torch.Tensor | None = None  # self-conditioning input
    finish_reason: FinishReason | None = None
    cancelled: bool = False
    stats: GenerationStats = field(default_factory=GenerationStats)
    started_at: float = field(default_factory=time.perf_counter)

    @property
    def finished(self) -> bool:
        return self.finish_reason is not None

    def cancel(self) -> None:
        """Thread-safe request to stop; honoured before the run's next forward."""
        self.cancelled = True

    def result(self) -> GenerationResult:
        if self.finish_reason is None:
            raise RuntimeError("run is not finished; keep calling DiffusionEngine.step")
        return GenerationResult(list(self.tokens), self.finish_reason, self.stats)


class DiffusionEngine:
    def __init__(self, denoiser: Denoiser) -> None:
        self.denoiser = denoiser
        self.eos_ids = torch.tensor(sorted(denoiser.eos_token_ids), dtype=torch.long)
        self._self_conditioning = bool(getattr(denoiser, "uses_self_conditioning", False))
        # the mask id is an input marker, never an answer
        self._banned_id = denoiser.mask_token_id
        # adapters memoise batch layouts; one step at a time keeps sync generate() and a
        # BatchScheduler on the same engine safe (for throughput, use the scheduler)
        self._lock = threading.RLock()

    # ---------------------------------------------------------------- public API
    def generate(
        self,
        prompt_ids: torch.Tensor | Sequence[int],
        params: GenerationParams,
        template: CanvasTemplate | None = None,
        suffix_ids: torch.Tensor | Sequence[int] | None = None,
        on_block: BlockCallback | None = None,
        should_stop: Callable[[], bool] | None = None,
        on_draft: DraftCallback | None = None,
    ) -> GenerationResult:
        run = self.start(prompt_ids, params, template, suffix_ids, on_block, should_stop, on_draft)
        while not run.finished:
            self.step([run])
        return run.result()

    @torch.inference_mode()
    def start(
        self,
        prompt_ids: torch.Tensor | Sequence[int],
        params: GenerationParams,
        template: CanvasTemplate | None = None,
        suffix_ids: torch.Tensor | Sequence[int] | None = None,
        on_block: BlockCallback | None = None,
        should_stop: Callable[[], bool] | None = None,
        on_draft: DraftCallback | None = None,
    ) -> GenerationRun:
        params.validate()
        d = self.denoiser
        prompt = torch.as_tensor(prompt_ids, dtype=torch.long).flatten().to(d.device)
        suffix = None
        if suffix_ids is not None and len(suffix_ids) > 0:
            suffix = torch.as_tensor(suffix_ids, dtype=torch.long).flatten().to(d.device)
        block_size = params.block_size or d.block_size
        default_steps = ENTROPY_BOUND_MAX_STEPS if params.rule == "entropy_bound" else block_size
        generator = torch.Generator(device=d.device)
        generator.manual_seed(params.seed if params.seed is not None else int(torch.seed() % (2**63)))
        if template is not None and template.allowed.vocab_size != d.vocab_size:
            raise ValueError(
                f"template built for vocab {template.allowed.vocab_size}, model has {d.vocab_size}"
            )
        verified = params.rule == "verified"
        if verified and (template is not None or suffix is not None):
            raise ValueError("rule 'verified' drafts free text only; use another rule for templates and infill")
        with self._lock:
            cache = d.new_cache(prompt)
            gate = DrafterGate() if params.adapter_drafts else None  # None: lookup drafts only
            rule = VerifiedDrafting(d, prompt, block_size, gate=gate) if verified else make_rule(
                params.rule,
                threshold=params.threshold,
                entropy_bound=params.entropy_bound,
                stability_threshold=params.stability_threshold,
                confidence_threshold=params.confidence_threshold,
            )
        run = GenerationRun(
            params=params,
            template=template,
            cache=cache,
            suffix_ids=suffix,
            generator=generator,
            block_size=block_size,
            max_steps=params.max_steps or default_steps,
            target_len=len(template) if template is not None else params.max_tokens,
            rule=rule,
            on_block=on_block,
            on_draft=on_draft,
            should_stop=should_stop,
        )
        if not verified:
            self._open_block(run)
        return run

    @torch.inference_mode()
    def step(self, runs: Sequence[GenerationRun]) -> None:
        """One denoising step for every unfinished run (one forward per canvas length)."""
        active: list[GenerationRun] = []
        for run in runs:
            if run.finished:
                continue
            if run.cancelled or (run.should_stop is not None and run.should_stop()):
                self._finish(run, "cancelled")
                continue
            active.append(run)
        groups: dict[int, list[GenerationRun]] = {}
        verified: list[GenerationRun] = []
        for run in active:
            if isinstance(run.rule, VerifiedDrafting):
                verified.append(run)
            else:
                groups.setdefault(run.block_size, []).append(run)
        with self._lock:
            for group in groups.values():
                self._step_group(group)
            for run in verified:
                self._verified_round(run)

    # ---------------------------------------------------------------- internals
    def _step_group(self, group: list[GenerationRun]) -> None:
        canvases = torch.stack([r.block.canvas for r in group])
        kwargs = {}
        if self._self_conditioning:
            kwargs["self_conditioning"] = [r.prev_logits for r in group]
        suffix = [r.suffix_ids for r in group]
        logits = self.denoiser.canvas_logits(
            canvases, [r.cache for r in group], suffix if any(s is not None for s in suffix) else None, **kwargs
        )
        for row, run in enumerate(group):
            self._advance(run, logits[row])

    def _advance(self, run: GenerationRun, logits: torch.Tensor) -> None:
        block, params = run.block, run.params
        if run.allowed_block is not None:
            logits = logits.masked_fill(~run.allowed_block, float("-inf"))
        if self._banned_id is not None:
            logits = logits.clone() if run.allowed_block is None else logits
            logits[:, self._banned_id] = float("-inf")
        temp = temperature_at(block.step, block.max_steps, params.temperature, params.final_temperature)
        scaled = scale_logits(logits, temp)
        sampled = sample_tokens(scaled, temp, params.top_p, run.generator)
        run.rule.accept(block, sampled, scaled)
        self._renoise(run)
        block.step += 1
        run.stats.steps += 1
        if self._self_conditioning:
            run.prev_logits = scaled
        if run.on_draft is not None:
            draft = block.output if block.output is not None else block.canvas
            run.on_draft(run.stats.blocks, draft)
        if not block.done and run.rule.monotone:
            self._maybe_end_at_eos(run)
        if block.done:
            self._finish_block(run)

    def _verified_round(self, run: GenerationRun) -> None:
        """One draft-and-verify round (see :mod:`diffusion_engine.verified`)."""
        done = run.rule.round(run, room=run.target_len - len(run.tokens))
        stats = run.stats
        stats.steps += done.forwards
        stats.drafted += done.drafted
        stats.draft_accepted += done.accepted
        stop_at = first_stop(done.tokens, self.denoiser.eos_token_ids) if run.params.stop_on_eos else None
        self._emit_block(run, done.tokens if stop_at is None else done.tokens[:stop_at], hit_eos=stop_at is not None)

    def _renoise(self, run: GenerationRun) -> None:
        """Undecided, non-fixed positions go back to mask (or to fresh uniform noise)."""
        block = run.block
        reopen = ~block.decided & ~block.fixed
        mask_id = self.denoiser.mask_token_id
        if mask_id is None:
            # always draw, so RNG use per step does not depend on how many were accepted
            noise = torch.randint(0, self.denoiser.vocab_size, block.canvas.shape,
                                  generator=run.generator, device=block.canvas.device)
            block.canvas = torch.where(reopen, noise, block.canvas)
        elif bool(reopen.any()):
            block.canvas = block.canvas.masked_fill(reopen, mask_id)

    def _maybe_end_at_eos(self, run: GenerationRun) -> None:
        """Monotone rules: once an EOS is accepted and everything before it is decided,
        the rest of the block cannot change the answer, so stop spending forwards on it."""
        block = run.block
        hits = torch.isin(block.canvas, self.eos_ids.to(block.canvas.device)) & block.decided & run.eos_stops
        if not bool(hits.any()):
            return
        first = int(torch.nonzero(hits)[0])
        if bool(block.decided[:first].all()):
            block.done = True
            block.output = block.canvas.clone()

    def _open_block(self, run: GenerationRun) -> None:
        d, c = self.denoiser, run.block_size
        start = run.block_start = len(run.tokens)
        end = min(start + c, run.target_len)
        n = end - start
        tokens = torch.full((c,), MASK, dtype=torch.long)
        fixed = torch.zeros(c, dtype=torch.bool)
        eos_stops = torch.zeros(c, dtype=torch.bool)
        allowed = None
        tpl = run.template
        if tpl is None:
            eos_stops[:n] = run.params.stop_on_eos
        else:
            tokens[:n] = tpl.tokens[start:end]
            fixed[:n] = tpl.fixed[start:end]
            allowed = torch.ones((c, d.vocab_size), dtype=torch.bool)
            block_allowed = tpl.allowed.block_mask(start, end, torch.device("cpu"))
            if block_allowed is not None:
                allowed[:n] = block_allowed
            eos = self.eos_ids
            constrained = tpl.allowed.index[start:end] >= 0
            # EOS may appear (and then stops) only where the template allows it
            free_ok = torch.full((n,), tpl.allow_eos, dtype=torch.bool) | constrained
            eos_stops[:n] = ~fixed[:n] & free_ok & allowed[:n][:, eos].any(-1)
            ban = ~fixed[:n] & ~free_ok
            allowed[:n][ban.nonzero().flatten()[:, None], eos[None, :]] = False
            allowed = allowed.to(d.device)
        needs_value = tokens == MASK
        canvas = tokens.clone()
        if d.mask_token_id is None:
            # drawn even when the template gives every initial token, so RNG use per
            # block never depends on the template (DiffusionGemma's loop draws it too)
            noise = torch.randint(0, d.vocab_size, (c,), generator=run.generator, device=d.device)
            canvas = torch.where(needs_value.to(d.device), noise, canvas.to(d.device))
        elif bool(needs_value.any()):
            canvas[needs_value] = d.mask_token_id
        run.block = BlockState(
            canvas=canvas.to(d.device),
            decided=fixed.clone().to(d.device),
            fixed=fixed.to(d.device),
            max_steps=run.max_steps,
        )
        run.allowed_block = allowed
        run.eos_stops = eos_stops.to(d.device)
        run.prev_logits = None

    def _finish_block(self, run: GenerationRun) -> None:
        block = run.block
        output = block.output if block.output is not None else block.canvas
        valid = min(run.block_size, run.target_len - run.block_start)
        out = output[:valid]
        is_eos = torch.isin(out, self.eos_ids.to(out.device)) & run.eos_stops[:valid]
        hit_eos = bool(is_eos.any())
        if hit_eos:
            out = out[: int(torch.nonzero(is_eos)[0])]
        if not self._emit_block(run, [int(t) for t in out.tolist()], hit_eos):
            run.cache = self.denoiser.commit(run.cache, output)
            self._open_block(run)

    def _emit_block(self, run: GenerationRun, new_tokens: list[int], hit_eos: bool) -> bool:
        """Append a finished block's tokens, report it, and finish the run at EOS or at its
        length; True when the run is finished."""
        run.tokens.extend(new_tokens)
        run.stats.blocks += 1
        if run.stats.time_to_first_block_s is None:
            run.stats.time_to_first_block_s = time.perf_counter() - run.started_at
        if run.on_block is not None:
            run.on_block(new_tokens)
        if hit_eos:
            self._finish(run, "stop")
        elif len(run.tokens) >= run.target_len:
            self._finish(run, "stop" if run.template is not None else "length")
        return run.finished

    def _finish(self, run: GenerationRun, reason: FinishReason) -> None:
        pad = self.denoiser.pad_token_id
        if run.template is None:
            while run.tokens and run.tokens[-1] == pad and pad not in self.denoiser.eos_token_ids:
                run.tokens.pop()
        run.finish_reason = reason
        run.block = None
        run.prev_logits = None
        elapsed = time.perf_counter() - run.started_at
        stats = run.stats
        stats.tokens_per_forward = len(run.tokens) / stats.steps if stats.steps else 0.0
        stats.tokens_per_s = len(run.tokens) / elapsed if elapsed > 0 else 0.0
