"""Task classifier: label a chat-completion request chat | structured | edit | code | tool_call.

Shape rules decide first (``router.shape``); the content stage (``router.content``:
MiniLM embedding of the last user turn + hand-made features + a small trained head)
decides the rest. Precedence when several apply:
tool_call > structured (response_format) > code > edit > structured (asked in text) > chat.
The content head is trained on that final label, so its text-level precedence is learnt.
No generation model is loaded here.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from pathlib import Path
from typing import Any, Mapping

from router.content import (ContentModel, Turn, carries_text_to_rewrite, last_turn, looks_like_code,
                            rules_only_task)
from router.embedding import shared_embedder
from router.plan import RequestPlan
from router.shape import ShapeVerdict, shape_rules
from router.tool_use import decide_tool_use
from router.types import Classification

log = logging.getLogger(__name__)


class TaskClassifier:
    def __init__(self, head_path: str | None = None) -> None:
        self._content = ContentModel(Path(head_path) if head_path else None)
        self._content_error: str | None = None
        self._lock = threading.Lock()

    # ------------------------------------------------------------ public API
    def classify(self, request: RequestPlan | Mapping[str, Any], *, use_content: bool = True) -> Classification:
        """The task of a request: its plan (the gateway's), or a body, planned here."""
        try:
            plan = request if isinstance(request, RequestPlan) else RequestPlan.of(request)
            stream = plan.stream
            tool_use = self._tool_use(plan)
            shape = shape_rules(plan, tool_use)
        except Exception as exc:  # malformed bodies must not break routing
            log.warning("shape rules failed: %s", exc)
            stream = isinstance(request, Mapping) and request.get("stream") is True
            return Classification("chat", stream, (f"shape rules failed ({type(exc).__name__})",))
        return dataclasses.replace(self._classify(plan, shape, stream, use_content), tool_use=tool_use)

    def _tool_use(self, plan: RequestPlan):
        # the sentence embedder sharpens tool relevance ("is it raining" ~ get_weather);
        # without it (failed to load) word overlap alone decides
        if self._content_error is None:
            try:
                return decide_tool_use(plan, shared_embedder())
            except Exception as exc:
                log.warning("tool relevance without the embedder: %s", type(exc).__name__)
        return decide_tool_use(plan)

    def _classify(self, plan: RequestPlan, shape: ShapeVerdict, stream: bool,
                  use_content: bool) -> Classification:
        if not use_content or shape.task is not None or shape.prediction_text:
            # Shape decided. With Predicted Outputs the reply rewrites the predicted text,
            # so what that text is (code or prose) decides between code and edit.
            return self._shape_only(shape, stream)
        turn = last_turn(plan)
        probs, why_not = self._content_probabilities(turn)
        if probs is None:
            return self._features_only(shape, turn, stream, why_not or "content model unavailable")
        reasons = list(shape.reasons)
        if shape.prediction_text is not None:  # empty prediction: content picks edit or code
            probs = {k: v for k, v in probs.items() if k in ("code", "edit")}
        elif "edit" in probs and not carries_text_to_rewrite(turn):
            if probs["edit"] >= sorted(probs.values())[-2]:  # it would have won or come second
                reasons.append(f"no text to rewrite (no earlier answer, passage, quote or code): "
                               f"not edit (head gave p={probs['edit']:.2f})")
            # the others keep their own probabilities: ruling edit out says nothing about
            # how sure the head is of the rest, and min_confidence must still see its doubt
            probs = {k: v for k, v in probs.items() if k != "edit"}
        (task, p), *rest = sorted(probs.items(), key=lambda kv: -kv[1])
        runner_up = f", runner-up {rest[0][0]} (p={rest[0][1]:.2f})" if rest else ""
        reasons = (*reasons, f"content model: {task} (p={p:.2f}){runner_up}")
        return Classification(task, stream, reasons, confidence=p)

    def warmup(self) -> None:
        """Load the embedding model and head now (a failure is logged, not raised)."""
        self._content_probabilities(Turn("warm up", "", False, "user"))

    @property
    def content_error(self) -> str | None:
        """Why the content stage is unavailable (None while it works)."""
        return self._content_error

    # ------------------------------------------------------------ stages
    def _content_probabilities(self, turn: Turn) -> tuple[dict[str, float] | None, str | None]:
        """(probabilities, None) or (None, why the content stage gave nothing)."""
        if self._content_error is not None:
            return None, f"content model unavailable ({self._content_error})"
        try:
            return self._content.probabilities(turn), None
        except Exception as exc:  # fall back to features, never fail the request
            error = f"{type(exc).__name__}: {exc}"
            if self._content.loaded:  # a one-off failure on this input
                log.warning("content model failed on one request: %s", error)
                return None, f"content model failed on this request ({error})"
            with self._lock:  # loading failed: stop retrying it on every request
                if self._content_error is None:
                    self._content_error = error
                    log.error("content stage unavailable, using features-only rules: %s", error)
            return None, f"content model unavailable ({error})"

    def _shape_only(self, shape: ShapeVerdict, stream: bool) -> Classification:
        if shape.task is not None:
            return Classification(shape.task, stream, shape.reasons)
        if shape.prediction_text is not None:
            task = "code" if _is_code(shape.prediction_text) else "edit"
            return Classification(task, stream, (*shape.reasons, f"predicted text looks like {task}"))
        return Classification("chat", stream, (*shape.reasons, "shape rules only"))

    def _features_only(self, shape: ShapeVerdict, turn: Turn, stream: bool,
                       why_not: str) -> Classification:
        note = f"{why_not}; features-only rules"
        task, why = rules_only_task(turn)
        if shape.prediction_text is not None and task not in ("code", "edit"):
            task = "code" if _is_code(shape.prediction_text) else "edit"
        return Classification(task, stream, (*shape.reasons, note, why))


def _is_code(text: str) -> bool:
    return "```" in text or looks_like_code(text) >= 0.4


_singleton: TaskClassifier | None = None
_singleton_lock = threading.Lock()


def get_classifier() -> TaskClassifier:
    """The process-wide classifier (the embedding model loads on first use or warmup)."""
    global _singleton
    if _singleton is None:
        with _singleton_lock:
            if _singleton is None:
                _singleton = TaskClassifier()
    return _singleton
