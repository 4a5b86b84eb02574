"""Content stage: cheap hand-made features + MiniLM embedding + a small trained head.

The features describe what the embedding of a short instruction window cannot see:
whether the turn carries code, a pasted passage, a diff, a format request, and what came
before (plain regex/counting work, microseconds). The head is a softmax regression over
[embedding, features] trained on the synthetic corpus in ``router/data`` by
``router/train_head.py``.
"""

from __future__ import annotations

import math
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from router.embedding import SentenceEmbedder, shared_embedder
from router.plan import RequestPlan, message_text

FENCE = re.compile(r"```")
FENCED_BLOCK = re.compile(r"```[^\n`]*\n.*?(?:```|\Z)", re.DOTALL)
CODE_LINE = re.compile(
    r"^\s*(?:def |class |import |from \S+ import|return\b|if\s*\(|for\s*\(|while\s*\(|"
    r"function\b|const |let |var |public |private |func |fn |package |#include|SELECT |"
    r"UPDATE |INSERT |CREATE |ALTER |WHERE |JOIN |@\w+|}\s*$|\w+\s*=\s*[^=]|.*[;{]\s*$)",
    re.IGNORECASE,
)
CODE_SYMBOLS = set("{}()[];=<>_`|&$\\")
DIFF_LINE = re.compile(r"^(?:@@ .* @@|[+-](?![+-]{2}|\s*$).*)$")
FORMAT_WORD = re.compile(r"\b(?:json|yaml|yml|csv|xml|toml|tsv)\b", re.IGNORECASE)
FORMAT_REQUEST = re.compile(
    r"\b(?:return|give|output|respond|reply|answer|convert|extract|format|put|turn|"
    r"produce|emit|list|as|into|in)\b[^.\n]{0,60}\b(?:json|yaml|csv|xml|toml)\b"
    r"|\b(?:json|yaml|csv|xml)\b(?! schema)[^.\n]{0,40}\b(?:only|with (?:the )?(?:keys|fields|columns)|"
    r"shape|structure|object|array)\b",
    re.IGNORECASE,
)
PLACEHOLDER = re.compile(r"\[[A-Z _]{3,}\]|\{\{[^}]*\}\}|_{4,}|\bTODO\b|\bFILL", re.UNICODE)
PROG_LANG = re.compile(
    r"\b(?:python|javascript|typescript|java|kotlin|golang|rust|ruby|php|swift|scala|bash|"
    r"shell|powershell|sql|postgres|mysql|sqlite|c\+\+|c#|\.net|react|vue|django|flask|"
    r"fastapi|pandas|numpy|linq|dockerfile|makefile|terraform|nginx|ansible|docker-compose|"
    r"kubernetes manifest|regex|html|css|lua|perl|haskell|elixir|r script)\b",
    re.IGNORECASE,
)
# Generic rewrite verbs in a few languages (edit) and build-something-runnable phrasing (code).
EDIT_VERB = re.compile(
    r"\b(?:rewrite|re-write|rephrase|reword|proofread|copy-?edit|shorten|condense|tighten|"
    r"redact|polish|paraphrase|translate|fix (?:the |my )?(?:grammar|spelling|typos|punctuation)|"
    r"correct (?:the )?(?:spelling|grammar|typos|errors|mistakes)|make (?:it|this|that) "
    r"(?:more|less|shorter|longer|sound)|change the tone|cut (?:it|this) down|"
    r"corrige|reformule|traduis|reescribe|corrige|traduce|riscrivi|correggi|traduci|"
    r"reescreva|corrija|traduza|korrigiere|umschreiben|übersetze|herschrijf|verbeter|"
    r"vertaal|исправь|перепиши|переведи)\w*",
    re.IGNORECASE,
)
CODE_VERB = re.compile(
    r"\b(?:write|implement|create|build|generate|give me|code|refactor|port|debug|fix)\b"
    r"[^.\n]{0,50}\b(?:function|script|class|method|query|regex|unit tests?|tests|endpoint|"
    r"component|dockerfile|migration|module|cli|program|one-liner|snippet|workflow|bug)\b"
    # nouns only: "fonctionne", "funktioniert", "funziona" are about how things work
    r"|\b(?:fonctions?|funci[oó]n|funciones|funzion[ei]|funç(?:ão|ões)|funktion(?:en)?|"
    r"функци[яюией])\b",
    re.IGNORECASE,
)

CREATIVE_FORM = re.compile(
    r"\b(?:poem|poetry|haiku|limerick|sonnet|story|stories|song|lyrics|joke|rap|riddle|toast|"
    r"essay|tongue twister|speech|ballad|fable|bedtime)\b",
    re.IGNORECASE,
)

FEATURE_NAMES: tuple[str, ...] = (
    "has_fence", "code_symbol_ratio", "code_line_ratio", "diff_lines", "format_word",
    "format_request", "pasted_passage", "log_length", "prior_code", "prior_assistant",
    "placeholder", "prog_lang", "asks_question", "non_ascii_ratio", "edit_verb", "code_verb",
    "creative_form", "prior_edit",
)


@dataclass(frozen=True)
class Turn:
    """The parts of a conversation the content stage looks at."""

    text: str  # the last user turn
    prior: str  # earlier user/assistant text (most recent last)
    has_prior_assistant: bool
    last_role: str
    #: the user's previous request, if any: "and in French?" after a translation is an edit
    prior_request: str = ""


def last_turn(plan: RequestPlan) -> Turn:
    messages = plan.messages
    if not messages and isinstance(plan.body.get("prompt"), str):
        return Turn(plan.body["prompt"], "", False, "user")
    last_user = max((i for i, m in enumerate(messages) if m.get("role") == "user"), default=-1)
    text = message_text(messages[last_user]) if last_user >= 0 else ""
    earlier = [m for m in messages[: max(last_user, 0)] if m.get("role") in ("user", "assistant")]
    prior = "\n".join(message_text(m) for m in earlier[-3:])
    earlier_requests = [m for m in earlier if m.get("role") == "user"]
    return Turn(
        text=text,
        prior=prior,
        has_prior_assistant=any(m.get("role") == "assistant" for m in earlier),
        last_role=str(messages[-1].get("role")) if messages else "user",
        prior_request=message_text(earlier_requests[-1]) if earlier_requests else "",
    )


def clip(text: str, keep: int = 8_000) -> str:
    """A huge paste says no more about the task than its first and last ``keep`` chars;
    clipping bounds the regex work per request."""
    return text if len(text) <= 2 * keep else text[:keep] + "\n\n" + text[-keep:]


def looks_like_code(text: str) -> float:
    """Fraction of non-empty lines that look like code (0..1)."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines:
        return 0.0
    return sum(1 for ln in lines if CODE_LINE.match(ln)) / len(lines)


def instruction_window(text: str) -> str:
    """What the embedder sees: the request, not the material it carries.

    Fenced code becomes ``[code]``; when the turn has several paragraphs, the first one
    (cut to 240 characters) and a short last one are kept and the middle becomes
    ``[text]``. A pasted passage says little about the task and would fill the short
    token window the latency budget allows.
    """
    text = FENCED_BLOCK.sub("\n\n[code]\n\n", clip(text)).strip()
    paragraphs = [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]
    if len(paragraphs) <= 1:
        return text or " "
    first, last = paragraphs[0], paragraphs[-1]
    kept = [first if len(first) <= 240 else first[:240] + " [text]"]
    for p in paragraphs[1:-1]:
        marker = "[code]" if p == "[code]" else "[text]"
        if kept[-1] != marker:
            kept.append(marker)
    tail = last if len(last) <= 200 else "[text]"
    if kept[-1] != tail:
        kept.append(tail)
    return " ".join(kept)


def _pasted_passage(text: str) -> float:
    paragraphs = [p for p in re.split(r"\n\s*\n", text) if p.strip()]
    if len(paragraphs) >= 2 and max(len(p) for p in paragraphs[1:]) > 80:
        return 1.0
    quoted = re.findall(r"[\"“«„「](.{60,}?)[\"”»“」]", text, re.DOTALL)
    return 1.0 if quoted else 0.0


QUOTED_TEXT = re.compile(r"[\"“«„「'‘](.{8,}?)[\"”»“」'’]", re.DOTALL)
TEXT_AFTER_COLON = re.compile(r":\s*\S.{2,}", re.DOTALL)


def carries_text_to_rewrite(turn: Turn) -> bool:
    """Whether the conversation holds text an edit could rewrite: an earlier answer, code,
    a pasted or quoted passage, a second line, or material after a colon ("Fix: me and him
    goes"). An edit rewrites given text, so without any there is nothing to edit: "Say hello
    in one short sentence." reads like "tighten this to one short sentence" to the embedding,
    but it asks for new text. Every edit request in the corpus and the dev set carries some."""
    text = clip(turn.text)
    if turn.has_prior_assistant or FENCE.search(text) or _pasted_passage(text):
        return True
    if sum(1 for line in text.splitlines() if line.strip()) >= 2:
        return True
    return bool(QUOTED_TEXT.search(text) or TEXT_AFTER_COLON.search(text))


def turn_features(turn: Turn) -> list[float]:
    """Material features (code, diff, passage, length) on the whole turn; wording
    features (format request, language named, verbs, question) on the instruction window
    so that e.g. a ```python fence tag does not read as "asks for Python"."""
    text = clip(turn.text)
    words = instruction_window(text)
    n = max(len(text), 1)
    lines = [ln for ln in text.splitlines() if ln.strip()]
    diff = sum(1 for ln in lines if DIFF_LINE.match(ln)) / len(lines) if len(lines) >= 3 else 0.0
    prior_code = 1.0 if (FENCE.search(turn.prior) or looks_like_code(turn.prior) > 0.4) else 0.0
    return [
        1.0 if FENCE.search(text) else 0.0,
        min(sum(1 for c in text if c in CODE_SYMBOLS) / n * 10, 3.0),
        looks_like_code(text),
        diff,
        1.0 if FORMAT_WORD.search(words) else 0.0,
        1.0 if FORMAT_REQUEST.search(words) else 0.0,
        _pasted_passage(text),
        math.log1p(len(text)) / 5,
        prior_code,
        1.0 if turn.has_prior_assistant else 0.0,
        1.0 if PLACEHOLDER.search(text) else 0.0,
        1.0 if PROG_LANG.search(words) else 0.0,
        1.0 if "?" in words[-80:] else 0.0,
        sum(1 for c in text if ord(c) > 127) / n,
        1.0 if EDIT_VERB.search(words) else 0.0,
        1.0 if CODE_VERB.search(words) else 0.0,
        # a poem about a bug is not a bug fix: creative forms outweigh code words
        1.0 if CREATIVE_FORM.search(words[:200]) else 0.0,
        # the conversation's state: a short follow-up to a rewrite asks for another rewrite
        1.0 if EDIT_VERB.search(instruction_window(clip(turn.prior_request))[:300]) else 0.0,
    ]


def rules_only_task(turn: Turn) -> tuple[str, str]:
    """Features-only fallback used when the embedding model cannot be loaded."""
    f = dict(zip(FEATURE_NAMES, turn_features(turn)))
    carries_code = f["has_fence"] or f["code_line_ratio"] > 0.5
    if f["creative_form"] and not carries_code:
        return "chat", "features: creative writing"
    if f["code_verb"] or (carries_code and not f["edit_verb"]) or (f["prior_code"] and f["prog_lang"]):
        return "code", "features: code request or code carried"
    if f["edit_verb"] and carries_text_to_rewrite(turn):
        return "edit", "features: rewrite verb"
    if f["format_request"]:
        return "structured", "features: output format requested in text"
    return "chat", "features: nothing specific"


# ---------------------------------------------------------------- the trained head
CONTENT_LABELS: tuple[str, ...] = ("chat", "structured", "edit", "code")
DEFAULT_HEAD_PATH = Path(__file__).resolve().parent / "content_head.npz"
EMBED_CACHE_SIZE = 512


def design_matrix(embedding: np.ndarray, features: np.ndarray, embed_scale: float,
                  feature_mean: np.ndarray, feature_std: np.ndarray) -> np.ndarray:
    """[embedding * scale, standardised features], the head's input (rows or one row)."""
    scaled = (np.asarray(features, dtype=np.float32) - feature_mean) / feature_std
    return np.concatenate([embedding * embed_scale, scaled], axis=-1).astype(np.float32)


@dataclass(frozen=True)
class ContentHead:
    """Softmax regression over [embedding, standardised features]; weights come from
    ``router/train_head.py``."""

    weights: np.ndarray  # (384 + n_features, n_labels)
    bias: np.ndarray  # (n_labels,)
    feature_mean: np.ndarray
    feature_std: np.ndarray
    #: unit-length embeddings are scaled up to weigh against the standardised features
    #: under one L2 penalty (chosen by leave-one-template-family-out accuracy)
    embed_scale: float
    labels: tuple[str, ...] = CONTENT_LABELS
    #: divides the logits so probabilities match held-out accuracy (fit by train_head)
    temperature: float = 1.0

    @classmethod
    def load(cls, path: str | Path | None = None) -> "ContentHead":
        path = Path(path or DEFAULT_HEAD_PATH)
        if not path.exists():
            raise FileNotFoundError(
                f"content head {path} is missing; train it with `python -m router.train_head`")
        with np.load(path, allow_pickle=False) as z:
            names = tuple(str(x) for x in z["feature_names"])
            if names != FEATURE_NAMES:
                raise ValueError(f"{path} was trained on features {names}, code has "
                                 f"{FEATURE_NAMES}; retrain with `python -m router.train_head`")
            return cls(weights=z["weights"].astype(np.float32), bias=z["bias"].astype(np.float32),
                       feature_mean=z["feature_mean"], feature_std=z["feature_std"],
                       embed_scale=float(z["embed_scale"]),
                       labels=tuple(str(x) for x in z["labels"]),
                       temperature=float(z["temperature"]) if "temperature" in z.files else 1.0)

    def design(self, embedding: np.ndarray, features: np.ndarray) -> np.ndarray:
        return design_matrix(embedding, features, self.embed_scale, self.feature_mean,
                             self.feature_std)

    def probabilities(self, embedding: np.ndarray, features: Sequence[float]) -> np.ndarray:
        logits = self.design(embedding, np.asarray(features, dtype=np.float32)) @ self.weights + self.bias
        logits = (logits - logits.max()) / self.temperature
        p = np.exp(logits)
        return p / p.sum()


class ContentModel:
    """Embedding + head. Loads lazily; ``load`` raises with the fix when it cannot."""

    def __init__(self, head_path: str | Path | None = None,
                 embedder: SentenceEmbedder | None = None) -> None:
        self._head_path = head_path
        self._embedder = embedder
        self._head: ContentHead | None = None
        self._lock = threading.Lock()
        # identical instruction windows recur (retries, templated agent prompts)
        self._cache: dict[str, np.ndarray] = {}

    @property
    def loaded(self) -> bool:
        return self._head is not None

    def load(self) -> None:
        if self._head is not None:
            return
        with self._lock:
            if self._head is None:
                head = ContentHead.load(self._head_path)
                embedder = self._embedder or shared_embedder()
                embedder.warmup()
                self._embedder = embedder
                self._head = head

    def probabilities(self, turn: Turn) -> dict[str, float]:
        """Probability of each content label for the conversation's last user turn."""
        self.load()
        assert self._head is not None and self._embedder is not None
        window = instruction_window(turn.text)
        with self._lock:
            vec = self._cache.get(window)
        if vec is None:
            vec = self._embedder.encode([window])[0]
            with self._lock:
                self._cache[window] = vec
                if len(self._cache) > EMBED_CACHE_SIZE:
                    self._cache.pop(next(iter(self._cache)))
        probs = self._head.probabilities(vec, turn_features(turn))
        return {label: float(p) for label, p in zip(self._head.labels, probs)}
