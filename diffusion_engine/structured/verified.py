"""Verified structured output: the AR model decides every token under the schema grammar;
drafts let one AR forward keep several of them.

The ``verified`` rule applied to JSON. Draft sources: the grammar's forced tokens (keys,
punctuation: llguidance's fast-forward), the prompt (token n-gram lookup, and text lookup
of the string value being written, :class:`CopiedValues`), the document itself (its own
structure and repeated records, :class:`~diffusion_engine.lookup.OutputLookup`), how a
value opens after a colon (:class:`ValueStarts`), and optionally the skeleton's one-forward
diffusion document. Each round:

1. propose up to ``draft_len`` grammar-valid tokens (:func:`propose`): forced tokens
   alternating with looked-up continuations, a copied string closed at its first
   punctuation (:class:`ValueEnds`), so one proposal can run through several fields;
2. one AR forward (adapter off) over ``[pending tokens, proposal]``;
3. walk the proposal with the grammar mask applied to each position's AR logits; keep
   tokens while the AR's masked choice equals the proposal, then the AR's own token;
4. the :class:`LoopGuard` cuts a runaway repetition (``loops.py``) and closes the value,
   when the grammar accepts the cut.

The output is exactly AR + constrained decoding (greedy: token for token, up to float
ties) except where a repetition was cut, produced in fewer forwards. When the AR document
does not finish inside its budget or fails validation, the caller returns the skeleton
document, which is always valid.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

import torch

from ..lookup import DraftLookup, OutputLookup, TextLookup
from ..sampling import sample_tokens, scale_logits
from .ar_constraint import JsonSchemaLogitsMask
from .vocab import per_tokenizer, token_texts
from .loops import find_loop, open_value


class ValueEnds:
    """Where a string copied from prose probably ends: before its first punctuation token.

    Prompt lookup copies ``Dr Helen Okafor. She`` where the value is ``Dr Helen Okafor``; half
    the copied values of the extraction set end at punctuation. Proposing the closing quote
    there (``",`` / ``"}``; the grammar forces the next key after it) lets one check keep a
    value *and* the next key and value, instead of stopping where the copy runs past the value.
    """

    BOUNDARY = set(",.;:()!?")

    def __init__(self, tokenizer: Any) -> None:
        pieces = token_texts(tokenizer)
        self.boundary = frozenset(i for i, p in enumerate(pieces)
                                  if p.lstrip()[:1] in self.BOUNDARY or "\n" in p)
        closers = ('",', '"}', '"]', '"')
        self.closers = [i for c in closers for i in tokenizer.encode(c, add_special_tokens=False)[:1]
                        if tokenizer.decode([i]) == c]

    def close(self, matcher: Any, guess: list[int]) -> list[int] | None:
        """``guess`` cut before its first boundary token plus a closing quote the grammar
        accepts there (consumed by ``matcher``), or None (not in a string, no boundary)."""
        cut = next((j for j, t in enumerate(guess) if j and t in self.boundary), None)
        if cut is None:
            return None
        head = guess[:cut]
        took = matcher.try_consume_tokens(head)
        if took == len(head):
            for closer in self.closers:
                if matcher.try_consume_tokens([closer]) == 1:
                    return [*head, closer]
        matcher.rollback(took)
        return None


class ValueStarts:
    """How a value usually starts after a key's colon: `` "`` (a string) or `` `` (a number, a
    literal), whichever the grammar accepts. The first key of a document has no earlier key
    for :class:`~diffusion_engine.lookup.OutputLookup` to copy this from; a proposal that ends
    at ``"name":`` would otherwise leave the value's opening quote to the next round."""

    def __init__(self, tokenizer: Any) -> None:
        self.colon = frozenset(i for i, piece in enumerate(token_texts(tokenizer)) if piece.endswith(":"))
        self.starts = [ids[0] for ids in (tokenizer.encode(s, add_special_tokens=False) for s in (' "', " "))
                       if len(ids) == 1]

    def candidates(self, context: list[int]) -> list[list[int]]:
        """One-token openings to try, in order, when ``context`` ends with a colon."""
        return [[t] for t in self.starts] if context and context[-1] in self.colon else []


def value_starts(tokenizer: Any) -> ValueStarts:
    """``ValueStarts`` for ``tokenizer`` (built once: it decodes the vocabulary)."""
    return per_tokenizer("value_starts", tokenizer, ValueStarts)


def value_ends(tokenizer: Any) -> ValueEnds:
    """``ValueEnds`` for ``tokenizer`` (built once: it decodes the vocabulary)."""
    return per_tokenizer("value_ends", tokenizer, ValueEnds)


class CopiedValues:
    """Text lookup (:class:`~diffusion_engine.lookup.TextLookup`) of the string or number value
    being written: proposes the rest of a copied value from its first characters, where token
    lookup fails (``"T`` + ``omas`` inside JSON, `` Tomas`` in the prompt; ``4`` of ``$412.50``)."""

    def __init__(self, tokenizer: Any, sources: Sequence[str]) -> None:
        self.tokenizer = tokenizer
        self.lookup = TextLookup(sources, tokenizer)

    def propose(self, tokens: list[int], k: int) -> list[int]:
        written = open_value(self.tokenizer.decode(tokens, skip_special_tokens=True))
        return self.lookup.propose(written, k) if written else []


def propose(mask: JsonSchemaLogitsMask, lookup: DraftLookup, emitted: list[int], k: int,
            ends: ValueEnds | None = None, copied: CopiedValues | None = None,
            own: OutputLookup | None = None, starts: ValueStarts | None = None) -> tuple[list[int], int]:
    """Up to ``k`` grammar-valid draft tokens and how many of them the grammar forces.

    Forced tokens and looked-up continuations alternate: after a looked-up value the
    grammar usually forces the next key (``", "age": ``), so one proposal runs through
    structure and values alike; ``ends`` guesses where a looked-up string value closes.
    Looked-up sources are asked in order -- the prompt's tokens (``lookup``), the prompt's
    text (``copied``), the document so far (``own``), how values start after a colon
    (``starts``) -- and the first one the grammar accepts
    (at least one token) is taken. The document goes first where its tail matches longer
    (>= 2 tokens) than the prompt's: a document repeating itself (``1.1.1.1``) is better
    predicted by itself than by the prompt's one ``.``; the text of the value being written
    goes before a 1-token prompt match (``4`` alone says little; ``$412`` at a word start
    does). The matcher is walked along the proposal and rolled back.
    """
    proposal: list[int] = []
    forced = consumed = 0
    matcher = mask.matcher
    while len(proposal) < k and not matcher.is_stopped():
        room = k - len(proposal)
        ff = [int(t) for t in matcher.compute_ff_tokens()][:room]
        if ff:
            took = matcher.try_consume_tokens(ff)
            forced += took
        else:
            took = 0
            for guess in _lookups(emitted + proposal, room, lookup, copied, own, starts):
                if not guess:
                    continue
                closed = ends.close(matcher, guess[: room - 1]) if ends is not None else None
                if closed is not None:
                    guess, took = closed, len(closed)
                else:
                    took = matcher.try_consume_tokens(guess)
                if took:
                    break
        if took == 0:
            break
        consumed += took
        proposal += (ff or guess)[:took]
    matcher.rollback(consumed)
    return proposal, forced


def _lookups(context: list[int], k: int, lookup: DraftLookup, copied: CopiedValues | None,
             own: OutputLookup | None, starts: ValueStarts | None = None) -> Iterator[list[int]]:
    """The looked-up continuations of ``context`` in the order :func:`propose` tries them."""
    n_prompt, from_prompt = lookup.match(context, k)
    n_own, from_own = own.match(context, k) if own is not None else (0, [])
    def from_text() -> list[int]:  # lazily: it decodes the document
        return copied.propose(context, k) if copied is not None else []

    own_first = n_own >= 2 and n_own > n_prompt
    text_first = n_prompt <= 1
    if own_first:
        yield from_own
    if text_first:
        yield from_text()
    yield from_prompt
    if not text_first:
        yield from_text()
    if not own_first:
        yield from_own
    if starts is not None:
        yield from starts.candidates(context)


class CheckLogits:
    """Grammar-masked AR logits of one check forward, with the LM head (~15% of a check
    forward) computed only where needed: over the allowed tokens alone when the grammar
    allows few (keys, punctuation, enum options), else once for this and every later
    position. Same scores as the full head, up to float summation order."""

    FEW = 256

    def __init__(self, verifier: Any, hidden: torch.Tensor) -> None:
        self.verifier, self.hidden = verifier, hidden
        self.full: torch.Tensor | None = None
        self.full_from = 0

    def masked(self, i: int, allowed: torch.Tensor) -> torch.Tensor:
        """Position ``i``'s logits, ``-inf`` where ``allowed`` (``BoolTensor[V]``) is False."""
        ids = allowed.nonzero().flatten()
        if ids.numel() <= self.FEW:
            out = torch.full((allowed.numel(),), float("-inf"))
            out[ids] = self.verifier.ar_head(self.hidden[i], ids).to(out.dtype)
            return out
        if self.full is None or i < self.full_from:
            self.full, self.full_from = self.verifier.ar_head(self.hidden[i:]), i
        return self.full[i - self.full_from].masked_fill(~allowed, float("-inf"))


@dataclass
class VerifiedDocument:
    token_ids: list[int]
    complete: bool  # False: the budget ended it mid-document
    forwards: int = 0
    proposed: int = 0
    kept: int = 0
    forced: int = 0
    #: runaway repetitions cut by the loop guard (``loops.py``), by reason
    loop_cuts: list[str] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)


class LoopGuard:
    """Cuts a repeating array item or string out of the emitted tokens (``loops.find_loop``)
    and closes the open value, when the grammar accepts the cut."""

    def __init__(self, tokenizer: Any, max_cuts: int = 8, max_refusals: int = 4) -> None:
        self.tokenizer = tokenizer
        self.max_cuts = max_cuts
        self.max_refusals = max_refusals
        self.refused: set[int] = set()

    @property
    def hopeless(self) -> bool:
        """A repetition the grammar would not let us cut kept going for ``max_refusals`` rounds
        (a looping email without ``@``, say): the document will only end at the budget."""
        return len(self.refused) >= self.max_refusals

    def cut(self, mask: JsonSchemaLogitsMask, out: list[int]) -> tuple[int, str] | None:
        """Rewrite ``out`` (and ``mask``) in place; returns (length of the unchanged token
        prefix, reason), or None when there is nothing to cut."""
        if self.max_cuts <= 0:
            return None
        text = self.tokenizer.decode(out, skip_special_tokens=True)
        loop = find_loop(text, ignore=self.refused)
        if loop is None:
            return None
        rewritten = [int(t) for t in self.tokenizer.encode(text[: loop.keep] + loop.close, add_special_tokens=False)]
        same = next((i for i, (a, b) in enumerate(zip(out, rewritten)) if a != b), min(len(out), len(rewritten)))
        mask.rollback(len(out) - same)
        if "\ufffd" in text[: loop.keep] or not mask.try_consume_all(rewritten[same:]):
            mask.try_consume_all(out[same:])  # restore: the grammar refuses this cut (e.g. minItems)
            self.refused.add(loop.keep)
            return None
        out[same:] = rewritten[same:]
        self.max_cuts -= 1
        return same, loop.reason


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
    loop_guard: bool = True,
    close_values: bool = True,
    copy_text: bool = True,
    own_lookup: bool = True,
) -> VerifiedDocument:
    """AR + grammar decoding of a JSON document with ``verifier`` (a
    :class:`~diffusion_engine.verified.DraftVerifier`), proposing from ``drafts`` and the prompt.

    ``loop_guard``: cut runaway repetitions (:class:`LoopGuard`); the output is then AR +
    grammar decoding except where a repeated item or string was cut and closed.
    ``close_values`` (:class:`ValueEnds`), ``copy_text`` (:class:`CopiedValues`) and
    ``own_lookup`` (:class:`~diffusion_engine.lookup.OutputLookup`) only change the
    proposals, never the output; off, they measure what each saves."""
    mask = JsonSchemaLogitsMask(tokenizer, schema, vocab_size=int(verifier.vocab_size))
    prompt = list(prompt_ids)
    cache = verifier.verifier_cache(torch.tensor(prompt, dtype=torch.long))
    pending = [prompt[-1]]  # decided tokens not yet in the verifier's cache
    lookup = DraftLookup([*drafts, prompt], lead_with_first=True)
    guard = LoopGuard(tokenizer) if loop_guard else None
    ends = value_ends(tokenizer) if close_values else None
    copied = CopiedValues(tokenizer, [tokenizer.decode(prompt, skip_special_tokens=True)]) if copy_text else None
    doc = VerifiedDocument(token_ids=[], complete=False)
    out = doc.token_ids
    own = OutputLookup(out) if own_lookup else None
    starts = value_starts(tokenizer)
    while len(out) < max_tokens:
        proposal, forced = propose(mask, lookup, out, min(draft_len, max_tokens - len(out) - 1), ends, copied, own, starts)
        hidden = verifier.verify_hidden(cache, torch.tensor([*pending, *proposal], dtype=torch.long))
        logits = CheckLogits(verifier, hidden[len(pending) - 1:])
        doc.forwards += 1
        doc.proposed += len(proposal) - forced
        doc.forced += forced
        kept, finished = 0, False
        for i in range(len(proposal) + 1):
            scaled = scale_logits(logits.masked(i, mask.allowed_mask()), temperature)
            choice = int(sample_tokens(scaled[None], temperature, top_p, generator)[0])
            if choice == mask.eos_id and mask.is_accepting():
                finished = True
                break
            mask.consume(choice)
            out.append(choice)
            if mask.is_stopped():
                finished = True
                break
            if i < len(proposal) and proposal[i] == choice:
                kept += 1
                continue
            break
        doc.kept += max(0, kept - forced)
        verifier.verifier_rollback(cache, len(proposal) - kept)
        if finished:
            doc.complete = True
            return doc
        pending = [out[-1]]  # the cache holds prompt + out[:-1]
        emitted = len(out)
        cut = guard.cut(mask, out) if guard else None
        if cut is not None:
            same, reason = cut
            doc.loop_cuts.append(reason)
            cached = min(same, emitted - 1, len(out) - 1)  # >= 1 pending token feeds the next forward
            verifier.verifier_rollback(cache, emitted - 1 - cached)
            pending = out[cached:]
            if mask.is_stopped():
                doc.complete = True
                return doc
        if guard is not None and guard.hopeless:
            doc.stats["abandoned"] = "a repetition that the schema does not let us cut"
            return doc
    doc.complete = mask.is_accepting()
    return doc
