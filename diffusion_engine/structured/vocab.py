"""Token classes of one tokenizer, computed once and cached.

Each class is an allowed-token mask (``torch.BoolTensor[vocab_size]``) shared by
reference between every canvas position that uses it, so a canvas of thousands of
positions holds a handful of tensors.
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Iterable

import torch

_DIGITS = frozenset("0123456789")
#: printable ASCII a JSON string may hold raw (no quote, no backslash)
_SAFE_ASCII = "".join(chr(o) for o in range(32, 127) if chr(o) not in '"\\')
#: labels of CHOICE options, one single-character token each
CHOICE_LABELS = "0123456789abcdefghijklmnopqrstuvwxyz"


_per_tokenizer_lock = threading.Lock()
_per_tokenizer: dict[tuple[str, int], tuple[Any, Any]] = {}


def per_tokenizer(name: str, tokenizer: Any, build: Callable[[Any], Any]) -> Any:
    """``build(tokenizer)``, computed once per tokenizer object and ``name`` (a tokenizer is
    not hashable; its ``id()`` is checked against the object itself, since ids are reused)."""
    key = (name, id(tokenizer))
    with _per_tokenizer_lock:
        hit = _per_tokenizer.get(key)
        if hit is not None and hit[0] is tokenizer:
            return hit[1]
    value = build(tokenizer)
    with _per_tokenizer_lock:
        _per_tokenizer[key] = (tokenizer, value)
    return value


def token_texts(tokenizer: Any) -> list[str]:
    """Decoded text of every token id of ``tokenizer``, special tokens included (one pass,
    ~0.3 s for 49k tokens, shared by everything that scans the vocabulary). Do not modify.
    Token by token: ``batch_decode`` gives the same texts in twice the time."""
    return per_tokenizer("token_texts", tokenizer, lambda t: [
        t.decode([i], skip_special_tokens=False) for i in range(len(t))])


def tokenizer_id(tokenizer: Any) -> str:
    """Identity of a tokenizer's vocabulary (cache key across instances of the same files)."""
    name = getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__
    return f"{name}:{len(tokenizer)}:{id(tokenizer) if not name else ''}"


class SlotVocab:
    """Allowed-token sets for slot positions, for one tokenizer."""

    def __init__(self, tokenizer: Any, vocab_size: int | None = None, pad_id: int | None = None) -> None:
        self.tokenizer = tokenizer
        self.vocab_size = int(vocab_size or len(tokenizer))
        if pad_id is None:
            pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        if pad_id is None:
            raise ValueError("tokenizer has neither a pad nor an eos token; pass pad_id explicitly")
        self.pad_id = int(pad_id)
        # special and added tokens (chat markers, the mask token...) never appear in values
        specials = set(getattr(tokenizer, "all_special_ids", []) or [])
        specials |= set(getattr(tokenizer, "added_tokens_decoder", {}) or {})
        n = len(tokenizer)
        raw = token_texts(tokenizer)
        #: decoded text of each token; "" for special tokens and ids past the tokenizer
        self.texts: list[str] = [("" if i in specials else t) for i, t in enumerate(raw)]
        self.texts += [""] * max(0, self.vocab_size - n)
        self._masks: dict[Any, torch.Tensor] = {}
        self._lock = threading.Lock()
        self._by_text: dict[str, int] = {}
        self._encoded: dict[str, list[int]] = {}
        for i, text in enumerate(self.texts):
            if text and text not in self._by_text:
                self._by_text[text] = i
        self.null_id = self.single_token("null")
        self._char_table()  # one pass over the vocabulary now; every mask after is vectorised
        self._warm()

    def _warm(self) -> None:
        """Build the masks nearly every schema uses, so per-schema layout stays in milliseconds."""
        for null in (False, True):
            self.string_mask(None, pad=True, null=null)
            for integer in (False, True):
                for negative in (False, True):
                    self.number_mask(first=True, integer=integer, negative=negative, pad=False, null=null)
        for integer in (False, True):
            self.number_mask(first=False, integer=integer, negative=False, pad=True, null=False)
        from .formats import FORMATS

        for charset, _example in FORMATS.values():
            self.string_mask(charset, pad=True, null=False)

    # ------------------------------------------------------------------ tokens
    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=False))

    def encode_cached(self, text: str) -> list[int]:
        """``encode`` memoised: skeleton runs (``", "``, ``"name": ``...) repeat across schemas."""
        hit = self._encoded.get(text)
        if hit is None:
            hit = self.encode(text)
            if len(self._encoded) < 200_000:
                self._encoded[text] = hit
        return hit

    def decode(self, ids: Iterable[int]) -> str:
        return self.tokenizer.decode([int(i) for i in ids], skip_special_tokens=False)

    def single_token(self, text: str) -> int | None:
        """Id of a token whose text is exactly ``text`` (preferring the tokenizer's own encoding)."""
        ids = self.encode(text)
        if len(ids) == 1 and self.texts[ids[0]] == text:
            return ids[0]
        return self._by_text.get(text)

    # ------------------------------------------------------------------ masks
    def mask(self, key: Any, build: Callable[[], torch.Tensor]) -> torch.Tensor:
        with self._lock:
            hit = self._masks.get(key)
            if hit is None:
                hit = build()
                hit.requires_grad_(False)
                self._masks[key] = hit
            return hit

    def ids_mask(self, ids: Iterable[int]) -> torch.Tensor:
        """A mask of exactly ``ids`` (cached by the id set)."""
        key = ("ids", frozenset(int(i) for i in ids))
        return self.mask(key, lambda: self._from_ids(key[1]))

    def _from_ids(self, ids: Iterable[int]) -> torch.Tensor:
        m = torch.zeros(self.vocab_size, dtype=torch.bool)
        idx = [i for i in ids if 0 <= i < self.vocab_size]
        if idx:
            m[torch.tensor(idx)] = True
        return m

    def _char_table(self) -> torch.Tensor:
        """``[V, 97]`` bool: which printable-ASCII chars (cols 0-94), other safe chars (95) and
        unsafe chars (96: control, broken UTF-8, line separators) each token contains."""
        table = self.__dict__.get("_table")
        if table is None:
            rows = torch.zeros((self.vocab_size, 97), dtype=torch.bool)
            for i, text in enumerate(self.texts):
                if not text:
                    continue
                cols = set()
                for ch in text:
                    o = ord(ch)
                    if 32 <= o <= 126:
                        cols.add(o - 32)
                    elif o < 32 or ch in "\ufffd\u2028\u2029\x7f":
                        cols.add(96)
                    else:
                        cols.add(95)
                rows[i, list(cols)] = True
            self._nonempty = torch.tensor([bool(t) for t in self.texts], dtype=torch.bool)
            self._table = table = rows
        return table

    def _only(self, chars: str, *, other: bool = False) -> torch.Tensor:
        """Non-empty tokens made only of ``chars`` (plus other safe unicode when ``other``)."""
        table = self._char_table()
        keep = torch.zeros(97, dtype=torch.bool)
        for ch in set(chars):
            if 32 <= ord(ch) <= 126:
                keep[ord(ch) - 32] = True
        keep[95] = other
        return self._nonempty & ~table[:, ~keep].any(dim=1)

    def _with(self, base: torch.Tensor, extra: Iterable[int]) -> torch.Tensor:
        m = base.clone()
        idx = [i for i in extra if 0 <= i < self.vocab_size]
        if idx:
            m[torch.tensor(idx)] = True
        return m

    def string_mask(self, charset: str | None, *, pad: bool, null: bool) -> torch.Tensor:
        """String-safe tokens: no raw quote, backslash, control char or broken UTF-8."""
        def build() -> torch.Tensor:
            base = self._only(charset, other=False) if charset else self._only(_SAFE_ASCII, other=True)
            return self._with(base, self._extras(pad, null))

        return self.mask(("string", charset, pad, null), build)

    def number_mask(self, *, first: bool, integer: bool, negative: bool, pad: bool, null: bool) -> torch.Tensor:
        """Digits; '-' may open the value; '.' may follow for numbers."""
        negative = negative and first  # one shared mask for all later positions

        def build() -> torch.Tensor:
            base = self._only("0123456789" if integer or first else "0123456789.")
            if first and negative:
                base = self._with(base, self._signed_ids())
            return self._with(base, self._extras(pad, null))

        return self.mask(("number", first, integer, negative, pad, null), build)

    def _signed_ids(self) -> list[int]:
        ids = self.__dict__.get("_signed")
        if ids is None:
            ids = self._signed = [i for i, t in enumerate(self.texts)
                                  if t.startswith("-") and all(c in _DIGITS for c in t[1:])]
        return ids

    def _extras(self, pad: bool, null: bool) -> list[int]:
        out = [self.pad_id] if pad else []
        if null and self.null_id is not None:
            out.append(self.null_id)
        return out


def slot_vocab(tokenizer: Any, vocab_size: int | None = None, pad_id: int | None = None) -> SlotVocab:
    """The cached ``SlotVocab`` of ``tokenizer`` (built once per vocab size and pad id)."""
    return per_tokenizer(f"slot_vocab:{vocab_size}:{pad_id}", tokenizer,
                         lambda t: SlotVocab(t, vocab_size, pad_id))
