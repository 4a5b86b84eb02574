"""The ``verified`` acceptance rule: the diffusion adapter drafts, the AR model decides.

Each round (one or two forwards of one resident model):

1. **draft**: when the last emitted tokens occur in the prompt or earlier in the answer,
   what followed them there (lookup: free, and right for edits, code changes and
   repeated structure); otherwise, with ``adapter_drafts`` and while the adapter's drafts
   pay for their forward (:class:`DrafterGate`), commit the tokens emitted since the last
   draft (adapter on) and denoise an all-mask canvas of ``block_size`` positions after them,
   and take the canvas argmax; else no draft (the round is a plain AR step);
2. **verify** (adapter off, i.e. the AR model): one causal forward over
   ``[last emitted token, d_1 .. d_k]`` gives the AR choice ``a_i`` at every draft
   position (argmax at temperature 0, else a sample with the request's generator);
3. keep the longest prefix with ``d_i == a_i`` plus the AR's own token at the first
   disagreement (or after the last draft token).

Every emitted token is the AR model's own choice given the emitted prefix, so greedy
output is AR greedy output token for token (up to float ties) and sampled output is a
sample of the AR distribution; the draft only decides how many tokens one verify
forward yields. An adapter round (a drafter and a verify forward over the canvas) costs
about four AR steps in float32 on a 2-core CPU, so it pays only when drafts are kept
several tokens deep; the gate stops drafting with the adapter when they are not, so the
rule is never much slower than AR. With ``adapter_drafts=False`` only lookups draft: the
default policy's setting, faster with the shipped adapter (see BENCHMARKS.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, Sequence, runtime_checkable

import torch

from .lookup import DraftLookup, OutputLookup
from .sampling import sample_tokens, scale_logits


@runtime_checkable
class DraftVerifier(Protocol):
    """Optional denoiser capability: an AR verifier sharing the drafter's weights."""

    def verifier_cache(self, prompt_ids: torch.Tensor) -> Any: ...

    def verify_logits(self, cache: Any, ids: torch.Tensor) -> torch.Tensor: ...

    def verifier_rollback(self, cache: Any, count: int) -> None: ...

    def draft_logits(self, cache: Any, pending_ids: torch.Tensor, canvas_len: int) -> tuple[torch.Tensor, Any]: ...


@dataclass(frozen=True)
class Round:
    """What one draft-and-verify round produced."""

    tokens: list[int]  # accepted draft tokens + the verifier's own next token
    drafted: int  # draft positions offered to the verifier
    accepted: int  # of those, how many it kept
    forwards: int  # model forwards spent (draft + verify; a prompt lookup costs none)


class DrafterGate:
    """Whether the adapter's draft is worth its forward, from how deep recent drafts were kept.

    An adapter round costs a drafter forward plus a verify forward over the whole canvas
    (16 positions, float32, 2 threads: ~110 + ~115 ms against ~50 ms for one AR step), so
    it pays when about ``min_kept`` draft tokens are kept. Below that (a running mean over
    adapter rounds, starting at the first round), rounds go without the adapter -- lookups
    or a plain AR step -- and every ``probe_every`` emitted tokens one adapter round checks
    whether the text has become easy to draft.
    """

    def __init__(self, min_kept: float = 3.0, probe_every: int = 64, weight: float = 0.5) -> None:
        self.min_kept, self.probe_every, self.weight = min_kept, probe_every, weight
        self.mean: float | None = None  # None: no adapter round yet, so draft
        self.last_round_at = 0

    def wanted(self, emitted: int) -> bool:
        return (self.mean is None or self.mean >= self.min_kept
                or emitted - self.last_round_at >= self.probe_every)

    def record(self, kept: int, emitted: int) -> None:
        """An adapter round whose draft was kept ``kept`` tokens deep, at ``emitted`` tokens."""
        self.mean = kept if self.mean is None else self.weight * kept + (1 - self.weight) * self.mean
        self.last_round_at = emitted


class VerifiedDrafting:
    """Per-request state of the ``verified`` rule (the engine calls :meth:`round`)."""

    monotone = True

    def __init__(self, denoiser: DraftVerifier, prompt_ids: torch.Tensor, draft_len: int, *,
                 gate: DrafterGate | None) -> None:
        if not isinstance(denoiser, DraftVerifier):
            raise ValueError(
                f"rule 'verified' needs a denoiser that can also verify as an AR model; "
                f"{type(denoiser).__name__} cannot (use the embedded SmolLM2 diffusion model "
                "or another rule: 'threshold', 'low_confidence', 'entropy_bound')"
            )
        if draft_len < 1:
            raise ValueError(f"verified drafting needs a canvas of at least 1 position, got {draft_len}")
        self.denoiser = denoiser
        self.draft_len = draft_len
        self.verifier = denoiser.verifier_cache(prompt_ids)
        self.last = int(prompt_ids[-1])
        self.in_drafter = 0  # emitted tokens already committed to the drafter's cache
        self.lookup = DraftLookup([torch.as_tensor(prompt_ids).tolist()], min_ngram=2)
        self.banned = getattr(denoiser, "mask_token_id", None)
        #: when the adapter drafts (``DrafterGate(min_kept=0)``: every round a lookup does not
        #: cover; None: never, drafts come from lookups only)
        self.gate = gate

    def round(self, run: Any, room: int) -> Round:
        """One round for ``run`` (a GenerationRun) that emits at most ``room`` tokens."""
        d, params = self.denoiser, run.params
        k = max(0, min(self.draft_len, room - 1))
        # text that copies the prompt (edits, code changes) or repeats the answer is proposed
        # for free; otherwise the adapter drafts the canvas, while its drafts pay
        draft: list[int] = self.lookup.propose(run.tokens, k) if k else []
        if k and not draft:
            draft = OutputLookup(run.tokens, min_ngram=2).propose(run.tokens, k)
        gate = self.gate if k and not draft else None
        forwards, adapter = 0, False
        if gate is not None and gate.wanted(len(run.tokens)):
            pending = torch.tensor(run.tokens[self.in_drafter :], dtype=torch.long)
            logits, run.cache = d.draft_logits(run.cache, pending, k)
            self.in_drafter = len(run.tokens)
            if self.banned is not None:
                logits[:, self.banned] = float("-inf")
            draft = logits.argmax(-1).tolist()
            forwards, adapter = 1, True
        k = len(draft)  # a lookup near the end of the prompt proposes fewer than asked
        verify = d.verify_logits(self.verifier, torch.tensor([self.last, *draft], dtype=torch.long))
        forwards += 1
        scaled = scale_logits(verify, params.temperature)
        choices = sample_tokens(scaled, params.temperature, params.top_p, run.generator).tolist()
        n = next((i for i in range(k) if draft[i] != choices[i]), k)
        # keep the verifier's K/V of [last, d_1 .. d_n]; its own token a_{n+1} is held back
        d.verifier_rollback(self.verifier, k - n)
        self.last = choices[n]
        if adapter and gate is not None:
            gate.record(n, len(run.tokens))
        return Round(tokens=[*draft[:n], choices[n]], drafted=k, accepted=n, forwards=forwards)


def first_stop(tokens: Sequence[int], stop_ids: frozenset[int]) -> int | None:
    """Index of the first stop token in ``tokens``, or None."""
    return next((i for i, t in enumerate(tokens) if t in stop_ids), None)
