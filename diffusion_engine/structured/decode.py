"""Filled canvas → validated JSON: render, remask-and-refill bad slots, repair, validate.

``fill_structured`` is model-agnostic: it calls an injected ``fill(template) -> token ids``
(the diffusion engine in production, a fake filler in tests). Slots whose values break
their own constraints are remasked and refilled for ``max_rounds``; leftovers are repaired
deterministically; the whole document is then validated with Draft 2020-12 + formats.
Callers get a valid document or a ``StructuredOutputError`` -- never invalid JSON.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch

from ..template import CanvasTemplate
from .adapter import model_terminator, to_canvas_template
from .compiler import DEFAULT_OPTIONS, CompileOptions
from .errors import StructuredOutputError, UnsupportedSchemaError
from .layout import CanvasLayout, layout_for
from .render import Rendered, document_validator, render
from .skeleton import Slot
from .verified import VerifiedDocument, verified_constrained

FillFn = Callable[[CanvasTemplate], Sequence[int]]
#: rule 'verified': the AR document may use this many times the canvas length (+16 tokens)
RUNAWAY_FACTOR = 1.25


@dataclass
class StructuredResult:
    #: the JSON document (always valid for the schema when returned)
    text: str
    value: Any
    #: True: ``text`` validates against the schema (a failure raises instead of returning)
    valid: bool
    #: fill calls made (1 = no refill was needed)
    rounds: int
    #: counters: slots, canvas_tokens, refilled_slots, repaired_slots, normalized, seconds...
    stats: dict[str, Any] = field(default_factory=dict)


def refill(layout: CanvasLayout, filled: Sequence[int], bad_slots: Sequence[Slot], fill: FillFn) -> list[int]:
    """One refill round: keep everything, remask ``bad_slots``, let ``fill`` decide them again."""
    template = to_canvas_template(layout, filled, bad_slots)
    out = _fit(layout, template, fill(template))
    # the filler may only change open positions; enforce it so fixed structure cannot drift
    return [int(o) if not bool(template.fixed[i]) else int(template.tokens[i]) for i, o in enumerate(out)]


def fill_structured(layout: CanvasLayout, fill: FillFn, *, max_rounds: int = 2) -> StructuredResult:
    """Fill ``layout`` with ``fill``, refill bad slots up to ``max_rounds`` times, repair, validate."""
    started = time.perf_counter()
    template = to_canvas_template(layout)
    filled = _fit(layout, template, fill(template))
    rounds, refilled = 1, 0
    rendered = render(layout, filled)
    first_issues = len(rendered.issues)
    while rendered.issues and rounds <= max_rounds:
        bad = list({id(i.slot): i.slot for i in rendered.issues}.values())
        refilled += len(bad)
        filled = refill(layout, filled, bad, fill)
        rounds += 1
        rendered = render(layout, filled)
    repaired: Rendered | None = None
    if rendered.issues:
        repaired = render(layout, filled, repair=True)
        rendered = repaired
    errors = [f"{'/'.join(map(str, e.absolute_path)) or '/'}: {e.message}"
              for e in document_validator(layout).iter_errors(rendered.value)]
    if errors:
        raise StructuredOutputError(
            "the generated document does not satisfy the schema even after repair: " + "; ".join(errors[:3]),
            errors)
    stats = {
        "slots": len(layout.skeleton.slots),
        "canvas_tokens": len(layout),
        "first_round_bad_slots": first_issues,
        "refilled_slots": refilled,
        "repaired_slots": len(repaired.repaired) if repaired else 0,
        "repairs": [f"{i.slot.pointer}: {i.reason}" for i in (repaired.repaired if repaired else [])],
        "normalized": rendered.normalized,
        "seconds": time.perf_counter() - started,
    }
    return StructuredResult(rendered.text, rendered.value, True, rounds, stats)


def _fit(layout: CanvasLayout, template: CanvasTemplate, out: Sequence[int]) -> list[int]:
    """Filler output as exactly ``len(layout)`` ids; a short output leaves slots padded (absent)."""
    ids = [int(t) for t in (out.tolist() if isinstance(out, torch.Tensor) else out)]
    if len(ids) >= len(layout):
        return ids[: len(layout)]
    pad = layout.vocab.pad_id
    for i in range(len(ids), len(layout)):
        tok = int(template.tokens[i])
        ids.append(tok if tok >= 0 else pad)
    return ids


class StructuredGenerator:
    """Schema-constrained generation with the diffusion engine (one canvas, all slots jointly)."""

    def __init__(self, engine: Any, tokenizer: Any, *, options: CompileOptions = DEFAULT_OPTIONS,
                 max_refill_rounds: int = 2, skeleton_draft: bool = False) -> None:
        self.engine = engine
        self.tokenizer = tokenizer
        self.options = options
        self.max_refill_rounds = max_refill_rounds
        #: rule 'verified': draft the whole document with the diffusion skeleton first (else the
        #: skeleton is only built when the AR document fails, and drafts come from the prompt).
        #: Off by default: with the step-1300 adapter the draft costs more than the forwards it
        #: saves (extraction, 44 AR-finished tasks: 2.93 s with it, 2.39 s without; BENCHMARKS.md)
        self.skeleton_draft = skeleton_draft
        d = engine.denoiser
        self.vocab_size = int(d.vocab_size)
        self.pad_id = model_terminator(tokenizer, d)

    def layout(self, schema: Any) -> CanvasLayout:
        """Compiled canvas (raises ``UnsupportedSchemaError`` → HTTP 400)."""
        return layout_for(schema, self.tokenizer, options=self.options,
                          vocab_size=self.vocab_size, pad_id=self.pad_id)

    def generate(self, prompt_ids: Any, schema: Any, params: Any) -> StructuredResult:
        layout = self.layout(schema)
        if getattr(params, "rule", None) == "verified":
            return self._generate_verified(prompt_ids, schema, params, layout)
        return self._generate_joint(prompt_ids, params, layout)

    def _generate_joint(self, prompt_ids: Any, params: Any, layout: CanvasLayout,
                        max_rounds: int | None = None) -> StructuredResult:
        """Every slot denoised jointly, then refill / repair / validate."""
        calls = {"n": 0, "steps": 0}

        def fill(template: CanvasTemplate) -> list[int]:
            run_params = params
            if calls["n"] and getattr(params, "seed", None) is not None:
                # a refill with the same seed would often redraw the same bad value
                run_params = dataclasses.replace(params, seed=params.seed + calls["n"])
            calls["n"] += 1
            result = self.engine.generate(prompt_ids, run_params, template=template)
            calls["steps"] += getattr(result.stats, "steps", 0)
            return list(result.token_ids)

        rounds = self.max_refill_rounds if max_rounds is None else max_rounds
        out = fill_structured(layout, fill, max_rounds=rounds)
        out.stats["denoiser_steps"] = calls["steps"]
        return out

    def _generate_verified(self, prompt_ids: Any, schema: Any, params: Any, layout: CanvasLayout) -> StructuredResult:
        """Rule 'verified': AR + grammar decoding that keeps agreeing draft tokens
        (``verified.py``), drafting from the skeleton document (when ``skeleton_draft``) and
        the prompt; the skeleton document is the answer when the AR one runs out of budget
        or does not validate."""
        started = time.perf_counter()
        skeleton = self._skeleton_document(prompt_ids, params, layout) if self.skeleton_draft else None
        drafts = [self.tokenizer.encode(skeleton.text, add_special_tokens=False)] if skeleton else []
        # a document longer than the canvas allows is a runaway array: stop, answer with the skeleton
        # (finished extraction documents used at most 1.1x the canvas, BENCHMARKS.md)
        budget = min(params.max_tokens, int(RUNAWAY_FACTOR * len(layout)) + 16)
        generator = torch.Generator().manual_seed(params.seed) if params.seed is not None else None
        try:
            doc = verified_constrained(
                self.engine.denoiser, self.tokenizer, list(prompt_ids), schema, drafts, max_tokens=budget,
                draft_len=min(params.block_size or 8, 16), temperature=params.temperature, top_p=params.top_p,
                generator=generator, loop_guard=getattr(params, "loop_guard", True))
        except (StructuredOutputError, UnsupportedSchemaError) as exc:  # e.g. llguidance cannot compile it
            doc = VerifiedDocument(token_ids=[], complete=False, stats={"error": str(exc)})
        text = self.tokenizer.decode(doc.token_ids, skip_special_tokens=True)
        value = _valid_value(text, document_validator(layout)) if doc.complete else None
        if value is None:
            skeleton = skeleton or self._skeleton_document(prompt_ids, params, layout)
            result = skeleton
        else:
            result = StructuredResult(text, value, True, 1, {"slots": len(layout.skeleton.slots),
                                                             "canvas_tokens": len(layout)})
        result.stats.update({
            "verified": {"source": "ar" if value is not None else "skeleton", "complete": doc.complete,
                         "tokens": len(doc.token_ids), "forwards": doc.forwards, "proposed": doc.proposed,
                         "kept": doc.kept, "forced": doc.forced, "budget": budget,
                         "loop_cuts": doc.loop_cuts,
                         "skeleton_draft": self.skeleton_draft, **doc.stats},
            "denoiser_steps": (skeleton.stats["denoiser_steps"] if skeleton else 0) + doc.forwards,
            "seconds": time.perf_counter() - started,
        })
        return result

    def _skeleton_document(self, prompt_ids: Any, params: Any, layout: CanvasLayout) -> StructuredResult:
        """The whole canvas in one forward (every position decided at once), repaired: always valid."""
        one_shot = dataclasses.replace(params, rule="threshold", max_steps=1, block_size=len(layout))
        return self._generate_joint(prompt_ids, one_shot, layout, max_rounds=0)


def _valid_value(text: str, validator: Any) -> Any | None:
    """The parsed document when it is JSON valid for the schema, else None."""
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if validator.is_valid(value) else None
