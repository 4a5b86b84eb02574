"""The one interface every diffusion model adapter implements.

Protocol changes (engine owner, 2026-11-28), all backward compatible for mask models:

* ``mask_token_id`` may be ``None``: the model denoises *uniform noise* instead of a
  mask token (DiffusionGemma). The engine then fills undecided positions with random
  ids drawn from the request's generator.
* Optional attribute ``uses_self_conditioning: bool`` (default False when absent). When
  True the engine calls ``canvas_logits(..., self_conditioning=rows)`` where ``rows`` is
  one ``FloatTensor[C, V] | None`` per row: the previous step's (temperature-scaled)
  logits for that canvas, ``None`` on a block's first step. Adapters without the
  attribute are never passed the keyword.
* ``new_cache`` requires at least one prompt token for adapters with token shift or an
  encoder (the canvas needs something to attend to); pass BOS for an empty prompt.
* Rows in one ``canvas_logits`` call share the canvas length ``C`` but not prefix
  length; caches are never mutated by ``canvas_logits`` (only by ``commit``).

A *denoiser* turns a canvas (a block of token ids, some of them the mask token)
into logits for every canvas position, given a cache of already-committed context
(prompt + finished blocks). Everything above this interface (samplers, acceptance
rules, batching, structured-output skeletons) is model-agnostic.

Conventions
-----------
* ``canvas_logits`` returns logits *aligned with the canvas*: ``logits[b, i]`` is the
  distribution for ``canvas[b, i]``. Adapters that use token shift (hidden state at
  i-1 predicts token i, as in models adapted from AR checkpoints) handle the shift
  internally.
* Attention inside the canvas is bidirectional; the canvas attends to the whole
  cached context and, for infill, to ``suffix_ids`` placed after the canvas.
* ``commit`` appends finished tokens to the cache so later calls never re-encode them.
* Caches are per-request objects owned by the adapter; the batched forward takes a
  list of them (one per row) so requests can join and leave between steps.
"""

from __future__ import annotations

from typing import Any, Protocol, Sequence, runtime_checkable

import torch


@runtime_checkable
class Denoiser(Protocol):
    """Logits for a canvas given cached context."""

    #: id written into undecided canvas positions; None = uniform-noise model
    mask_token_id: int | None
    #: ids that end the answer when accepted
    eos_token_ids: frozenset[int]
    #: id used to pad canvases (dropped from outputs)
    pad_token_id: int
    #: size of a canvas the model was trained on
    block_size: int
    vocab_size: int
    device: torch.device

    def new_cache(self, prompt_ids: torch.Tensor) -> Any:
        """Encode ``prompt_ids`` (1-D LongTensor) once and return a cache for it."""
        ...

    def commit(self, cache: Any, token_ids: torch.Tensor) -> Any:
        """Append finished tokens (1-D LongTensor) to ``cache``; return the cache."""
        ...

    def canvas_logits(
        self,
        canvases: torch.Tensor,
        caches: Sequence[Any],
        suffix_ids: Sequence[torch.Tensor | None] | None = None,
    ) -> torch.Tensor:
        """Logits ``[B, C, V]`` (float32) for canvases ``[B, C]``, one cache per row."""
        ...
