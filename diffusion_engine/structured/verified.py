"""Verified structured output: the AR model decides every token under the schema grammar;
drafts let one AR forward keep several of them.

The ``verified`` rule applied to JSON. The diffusion skeleton fills the whole document
cheaply (one forward per block); that document, the prompt, and the grammar's forced
tokens (keys, punctuation: llguidance's fast-forward) are *draft sources*. Each round:

1. propose up to ``draft_len`` tokens: the forced tokens, then the continuation of the
   longest emitted tail found in a source (prompt-lookup decoding, over the skeleton
   document first, so values copied from the input are proposed whole);
2. one AR forward (adapter off) over ``[last token, proposal]``;
3. walk the proposal with the grammar mask applied to each position's AR logits; keep
   tokens while the AR's masked choice equals the proposal, then the AR's own token.

The output is exactly AR + constrained decoding (greedy: token for token, up to float
ties), produced in fewer forwards. When the AR document does not finish inside its
budget (runaway arrays are the small model's failure mode) or fails validation, the
caller returns the skeleton document, which is always valid.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import torch

from ..sampling import sample_tokens, scale_logits
from .ar_constraint import JsonSchemaLogitsMask


class DraftLookup:
    """Continuations of the emitted tail, looked up in source token lists.

    Each source keeps a cursor just past its last match, and is searched from there
    first: a document is consumed roughly in order, so its *next* ``", "`` is the
    useful one, not its first.
    """

    def __init__(self, sources: Sequence[Sequence[int]], max_ngram: int = 3) -> None:
        self.sources = [list(s) for s in sources if len(s)]
        self.cursors = [0] * len(self.sources)
        self.max_ngram = max_ngram

    def propose(self, emitted: Sequence[int], k: int) -> list[int]:
        if k <= 0 or not self.sources:
            return []
        if not emitted:  # a document starts where the first source starts
            return self.sources[0][:k]
        for n in range(min(self.max_ngram, len(emitted)), 0, -1):
            tail = list(emitted[-n:])
            for s, src in enumerate(self.sources):
                at = self._find(src, tail, self.cursors[s])
                if at is not None and at + n < len(src):
                    self.cursors[s] = at + n
                    return src[at + n : at + n + k]
        return []

    @staticmethod
    def _find(src: list[int], tail: list[int], start: int) -> int | None:
        n = len(tail)
        for lo, hi in ((start, len(src) - n), (0, min(start, len(src)) - 1)):  # from the cursor, then wrap
            for i in range(lo, hi + 1):
                if src[i : i + n] == tail:
                    return i
        return None


@dataclass
class VerifiedDocument:
    token_ids: list[int]
    complete: bool  # False: the budget ended it mid-document
    forwards: int = 0
    proposed: int = 0
    kept: int = 0
    forced: int = 0
    stats: dict[str, Any] = field(default_factory=dict)


@torch.inference_mode()
def verified_constrained(
    verifier: Any,
    tokenizer: Any,
    prompt_ids: Sequence[int],
    schema: Any,
    drafts: Sequence[Sequence[int]],
    *,
    max_tokens: int,
    draft_len: int = 8,
    temperature: float = 0.0,
    top_p: float = 1.0,
    generator: torch.Generator | None = None,
) -> VerifiedDocument:
    """AR + grammar decoding of a JSON document with ``verifier`` (a
    :class:`~diffusion_engine.verified.DraftVerifier`), proposing from ``drafts`` and the prompt."""
    mask = JsonSchemaLogitsMask(tokenizer, schema, vocab_size=int(verifier.vocab_size))
    prompt = list(prompt_ids)
    cache = verifier.verifier_cache(torch.tensor(prompt, dtype=torch.long))
    last = prompt[-1]
    lookup = DraftLookup([*drafts, prompt])
    doc = VerifiedDocument(token_ids=[], complete=False)
    out = doc.token_ids
    while len(out) < max_tokens:
        room = max_tokens - len(out) - 1
        forced = [int(t) for t in mask.matcher.compute_ff_tokens()][:room]
        proposal = forced + lookup.propose(out + forced, min(draft_len, room) - len(forced))
        logits = verifier.verify_logits(cache, torch.tensor([last, *proposal], dtype=torch.long))
        doc.forwards += 1
        doc.proposed += len(proposal) - len(forced)
        doc.forced += len(forced)
        kept, finished = 0, False
        for i in range(len(proposal) + 1):
            scaled = scale_logits(mask.apply(logits[i]), temperature)
            choice = int(sample_tokens(scaled[None], temperature, top_p, generator)[0])
            if choice == mask.eos_id and mask.is_accepting():
                finished = True
                break
            mask.consume(choice)
            out.append(choice)
            last = choice
            if mask.is_stopped():
                finished = True
                break
            if i < len(proposal) and proposal[i] == choice:
                kept += 1
                continue
            break
        doc.kept += max(0, kept - len(forced))
        verifier.verifier_rollback(cache, len(proposal) - kept)
        if finished:
            doc.complete = True
            return doc
    doc.complete = mask.is_accepting()
    return doc
