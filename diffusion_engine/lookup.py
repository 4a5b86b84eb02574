"""Prompt-lookup drafting: propose what followed the last emitted tokens in a source.

Used by the ``verified`` rule as a draft source besides the diffusion adapter: answers
that copy their input (edits, extraction, code changes) are proposed span by span, and
the AR verifier keeps what it agrees with.
"""

from __future__ import annotations

from typing import Any, Sequence


class DraftLookup:
    """Continuations of the emitted tail, looked up in source token lists.

    Each source keeps a cursor just past its last match, and is searched from there
    first: a document is consumed roughly in order, so its *next* ``", "`` is the
    useful one, not its first.
    """

    def __init__(self, sources: Sequence[Sequence[int]], *, max_ngram: int = 3, min_ngram: int = 1,
                 lead_with_first: bool = False) -> None:
        self.sources = [list(s) for s in sources if len(s)]
        self.cursors = [0] * len(self.sources)
        self.max_ngram, self.min_ngram = max_ngram, min_ngram
        #: with nothing emitted yet, propose the start of the first source (a draft document)
        self.lead_with_first = lead_with_first

    def propose(self, emitted: Sequence[int], k: int) -> list[int]:
        """Up to ``k`` tokens that followed the longest matching tail of ``emitted``."""
        return self.match(emitted, k)[1]

    def match(self, emitted: Sequence[int], k: int) -> tuple[int, list[int]]:
        """:meth:`propose` with the length of the matched tail (0: no match)."""
        if k <= 0 or not self.sources:
            return 0, []
        if not emitted:
            return 0, (self.sources[0][:k] if self.lead_with_first else [])
        for n in range(min(self.max_ngram, len(emitted)), self.min_ngram - 1, -1):
            tail = list(emitted[-n:])
            for s, src in enumerate(self.sources):
                at = self._find(src, tail, self.cursors[s])
                if at is not None and at + n < len(src):
                    self.cursors[s] = at + n
                    return n, src[at + n : at + n + k]
        return 0, []

    @staticmethod
    def _find(src: list[int], tail: list[int], start: int) -> int | None:
        n = len(tail)
        for lo, hi in ((start, len(src) - n), (0, min(start, len(src)) - 1)):  # from the cursor, then wrap
            for i in range(lo, hi + 1):
                if src[i : i + n] == tail:
                    return i
        return None


class TextLookup:
    """Continuations of partly written text, looked up in source *text* and tokenised fresh.

    Token lookup misses the start of a copied value: inside JSON, ``"Tomas`` is tokenised
    ``"``, ``T``, ``omas`` while the prompt has `` Tomas``, so no token n-gram matches until
    the second word. Matching characters (``T``, at a word start in the source) finds
    ``Tomas Reyes, 52`` at once. Each source keeps a cursor past its last match, like
    :class:`DraftLookup`.
    """

    def __init__(self, texts: Sequence[str], tokenizer: Any, *, span_chars: int = 64) -> None:
        self.texts = [t for t in texts if t]
        self.cursors = [0] * len(self.texts)
        self.tokenizer = tokenizer
        self.span_chars = span_chars

    def propose(self, written: str, k: int) -> list[int]:
        """Up to ``k`` tokens of what followed ``written`` (at a word start) in a source."""
        if not written or k <= 0:
            return []
        for s, text in enumerate(self.texts):
            at = self._find(text, written, self.cursors[s])
            if at is not None:
                end = at + len(written)
                self.cursors[s] = end
                follow = text[end : end + self.span_chars]
                return list(self.tokenizer.encode(follow, add_special_tokens=False))[:k] if follow else []
        return []

    @staticmethod
    def _find(text: str, needle: str, start: int) -> int | None:
        for lo in (start, 0):  # from the cursor, then from the top
            at = text.find(needle, lo)
            while at != -1:
                if at == 0 or not text[at - 1].isalnum():
                    return at
                at = text.find(needle, at + 1)
        return None


class OutputLookup:
    """Continuations of the emitted tail looked up in the emitted tokens themselves.

    A document repeats its own structure: after ``"vendor":`` the AR writes `` "`` as it did
    after every earlier key, and an array's next record starts like the last one. The latest
    earlier occurrence of the longest matching tail wins. A short match says little about
    what follows (after `` "`` comes the *previous* value), so a tail of ``n`` tokens
    proposes at most ``n`` tokens, and a full ``max_ngram`` tail up to ``k``.
    """

    def __init__(self, emitted: list[int], *, max_ngram: int = 3, min_ngram: int = 1) -> None:
        #: the committed tokens (the caller's list, read as it grows); proposals come from here only
        self.emitted = emitted
        self.max_ngram, self.min_ngram = max_ngram, min_ngram

    def propose(self, context: Sequence[int], k: int) -> list[int]:
        """Up to ``k`` tokens that followed the latest earlier occurrence of ``context``'s tail
        in the emitted tokens (``context``: the emitted tokens plus any draft so far)."""
        return self.match(context, k)[1]

    def match(self, context: Sequence[int], k: int) -> tuple[int, list[int]]:
        """:meth:`propose` with the length of the matched tail (0: no match)."""
        src = self.emitted
        for n in range(min(self.max_ngram, len(context)), self.min_ngram - 1, -1):
            tail = list(context[-n:])
            for i in range(len(src) - n - 1, -1, -1):  # latest first; never the tail itself
                if src[i : i + n] == tail:
                    return n, src[i + n : i + n + (k if n == self.max_ngram else min(k, n))]
        return 0, []
