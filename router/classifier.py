"""Task classifier: label a chat-completion request chat | structured | edit | code | tool_call.

Shape rules decide first (``router.shape``); the content stage (``router.content``:
MiniLM embedding of the last user turn + hand-made features + a small trained head)
decides the rest. Precedence when several apply:
tool_call > structured (response_format) > code > edit > structured (asked in text) > chat.
The content head is trained on that final label, so its text-level precedence is learnt.
No generation model is loaded here.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any, Mapping

from router.content import ContentModel, ContentVerdict, Turn, last_turn, looks_like_code, rules_only_task
from router.shape import ShapeVerdict, shape_rules
from router.types import Classification

log = logging.getLogger(__name__)
#: below this tool-relevance probability a turn with tools on auto is left to the content
#: stage; kept low because the spec's default for tools on auto is a tool call.
TOOL_NEED_THRESHOLD = 0.1


class TaskClassifier:
    def __init__(self, head_path: str | None = None) -> None:
        self._content = ContentModel(Path(head_path) if head_path else None)
        self._content_error: str | None = None
        self._lock = threading.Lock()

    # ------------------------------------------------------------ public API
    def classify(self, request: Mapping[str, Any], *, use_content: bool = True) -> Classification:
        stream = bool(request.get("stream", False))
        try:
            shape = shape_rules(request)
        except Exception as exc:  # malformed bodies must not break routing
            log.warning("shape rules failed: %s", exc)
            return Classification("chat", stream, (f"shape rules failed ({type(exc).__name__})",))
        if not use_content:
            return self._shape_only(shape, stream)
        turn = last_turn(request)
        verdict = self._judge(turn, shape)
        if verdict is None:
            return self._features_only(shape, turn, stream)
        return self._decide(shape, turn, verdict, stream)

    def warmup(self) -> None:
        """Load the embedding model and head now (and report a failure in the log)."""
        self._judge(Turn("warm up", "", False, "user"), ShapeVerdict(None))

    # ------------------------------------------------------------ stages
    def _judge(self, turn: Turn, shape: ShapeVerdict) -> ContentVerdict | None:
        if self._content_error is not None:
            return None
        try:
            tools = shape.tool_texts if shape.tools_auto and turn.last_role != "tool" else ()
            return self._content.judge(turn, tools)
        except Exception as exc:  # e.g. model package missing: fall back, never crash
            with self._lock:
                if self._content_error is None:
                    self._content_error = f"{type(exc).__name__}: {exc}"
                    log.error("content stage unavailable, using features-only rules: %s",
                              self._content_error)
            return None

    def _shape_only(self, shape: ShapeVerdict, stream: bool) -> Classification:
        if shape.task is not None:
            return Classification(shape.task, stream, shape.reasons)
        if shape.tools_auto:
            return Classification("tool_call", stream, shape.reasons)
        if shape.prediction_text is not None:
            task = "code" if looks_like_code(shape.prediction_text) > 0.5 else "edit"
            return Classification(task, stream, (*shape.reasons, f"predicted text looks like {task}"))
        return Classification("chat", stream, (*shape.reasons, "shape rules only"))

    def _features_only(self, shape: ShapeVerdict, turn: Turn, stream: bool) -> Classification:
        note = f"content model unavailable ({self._content_error}); features-only rules"
        if shape.task is not None or shape.tools_auto:
            base = self._shape_only(shape, stream)
            return Classification(base.task, stream, (*base.reasons, note))
        task, why = rules_only_task(turn)
        if shape.prediction_text is not None and task not in ("code", "edit"):
            task = "code" if looks_like_code(shape.prediction_text) > 0.5 else "edit"
        return Classification(task, stream, (*shape.reasons, note, why))

    def _decide(self, shape: ShapeVerdict, turn: Turn, verdict: ContentVerdict,
                stream: bool) -> Classification:
        reasons = list(shape.reasons)
        if shape.tools_auto:
            if turn.last_role == "tool":
                reasons.append("last message is a tool result; the tool loop continues")
                return Classification("tool_call", stream, tuple(reasons))
            if verdict.tool_probability is not None:
                reasons.append(verdict.tool_reason or "")
                if verdict.tool_probability >= TOOL_NEED_THRESHOLD:
                    return Classification("tool_call", stream, tuple(reasons),
                                          confidence=verdict.tool_probability)
                reasons.append("turn needs none of the offered tools")
        if shape.task is not None:
            return Classification(shape.task, stream, tuple(reasons))
        probs = dict(verdict.probabilities)
        if shape.prediction_text is not None:
            # Predicted Outputs means the reply rewrites given text: code or prose edit.
            probs = {k: v for k, v in probs.items() if k in ("code", "edit")}
            total = sum(probs.values()) or 1.0
            probs = {k: v / total for k, v in probs.items()}
        task = max(probs, key=probs.get)
        reasons.append(f"content model: {task} (p={probs[task]:.2f})")
        return Classification(task, stream, tuple(reasons), confidence=probs[task])


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
