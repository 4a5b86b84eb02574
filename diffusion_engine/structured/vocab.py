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
_NUMBER_CHARS = _DIGITS | {"."}
#: labels of CHOICE options, one single-character token each
CHOICE_LABELS = "0123456789abcdefghijklmnopqrstuvwxyz"


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
        raw = tokenizer.batch_decode([[i] for i in range(n)], skip_special_tokens=False)
        #: decoded text of each token; "" for special tokens and ids past the tokenizer
        self.texts: list[str] = [("" if i in specials else t) for i, t in enumerate(raw)]
        self.texts += [""] * max(0, self.vocab_size - n)
        self._masks: dict[Any, torch.Tensor] = {}
        self._lock = threading.Lock()
        self._by_text: dict[str, int] = {}
        for i, text in enumerate(self.texts):
            if text and text not in self._by_text:
                self._by_text[text] = i
        self.null_id = self.single_token("null")

    # ------------------------------------------------------------------ tokens
    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=False))

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

    def _where(self, keep: Callable[[str], bool], extra: Iterable[int] = ()) -> torch.Tensor:
        return self._from_ids([i for i, t in enumerate(self.texts) if t and keep(t)] + list(extra))

    def string_mask(self, charset: str | None, *, pad: bool, null: bool) -> torch.Tensor:
        """String-safe tokens: no raw quote, backslash, control char or broken UTF-8."""
        allowed = frozenset(charset) if charset else None

        def keep(t: str) -> bool:
            if allowed is not None:
                return all(c in allowed for c in t)
            return '"' not in t and "\\" not in t and "\ufffd" not in t and all(
                ord(c) >= 0x20 and c not in "\u2028\u2029" for c in t)

        return self.mask(("string", charset, pad, null), lambda: self._where(keep, self._extras(pad, null)))

    def number_mask(self, *, first: bool, integer: bool, negative: bool, pad: bool, null: bool) -> torch.Tensor:
        """Digits; '-' may open the value; '.' may follow for numbers."""
        chars = _DIGITS if integer or first else _NUMBER_CHARS

        def keep(t: str) -> bool:
            body = t[1:] if first and negative and t.startswith("-") else t
            return bool(body) and all(c in chars for c in body) or (first and negative and t == "-")

        key = ("number", first, integer, negative, pad, null)
        return self.mask(key, lambda: self._where(keep, self._extras(pad, null)))

    def _extras(self, pad: bool, null: bool) -> list[int]:
        out = [self.pad_id] if pad else []
        if null and self.null_id is not None:
            out.append(self.null_id)
        return out


_strong_cache: dict[tuple, SlotVocab] = {}
_vocab_lock = threading.Lock()


def slot_vocab(tokenizer: Any, vocab_size: int | None = None, pad_id: int | None = None) -> SlotVocab:
    """The cached ``SlotVocab`` of ``tokenizer`` (built once: decoding every token takes ~0.5 s)."""
    key = (id(tokenizer), vocab_size, pad_id)
    with _vocab_lock:
        hit = _strong_cache.get(key)
        if hit is not None and hit.tokenizer is tokenizer:
            return hit
    vocab = SlotVocab(tokenizer, vocab_size, pad_id)
    with _vocab_lock:
        _strong_cache[key] = vocab
    return vocab
