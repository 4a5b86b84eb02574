"""Step-level batching of concurrent generations behind an asyncio API.

All model work runs in ONE worker thread, so the event loop never blocks on torch.
Each worker iteration admits waiting requests (encodes their prompts), then runs one
:meth:`DiffusionEngine.step` over every active request: one batched denoiser forward
per canvas length, each row with its own cache and its own ``torch.Generator``. A
request joining only adds its prefill to one iteration; a request finishing simply
leaves the batch. Cancellation (the consumer stops iterating, e.g. a client
disconnect) sets a flag the engine checks before the request's next forward, so its
work stops within one step.

Usage::

    scheduler = BatchScheduler(engine)
    async for event in scheduler.submit(prompt_ids, params):
        if isinstance(event, BlockEvent): ...
        elif isinstance(event, FinishEvent): result = event.result
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from dataclasses import dataclass, field
from typing import AsyncIterator, Sequence, Union

import torch

from .engine import DiffusionEngine, GenerationParams, GenerationResult, GenerationRun
from .template import CanvasTemplate
from .threads import pin_threads

log = logging.getLogger(__name__)


@dataclass
class BlockEvent:
    """A block finished: its tokens are final (EOS and what follows already removed)."""

    index: int
    token_ids: list[int]


@dataclass
class DraftEvent:
    """The current best guess for the block being denoised (for live UIs; not final)."""

    index: int
    token_ids: list[int]


@dataclass
class FinishEvent:
    result: GenerationResult


SchedulerEvent = Union[BlockEvent, DraftEvent, FinishEvent]


@dataclass(eq=False)
class _Ticket:
    prompt_ids: torch.Tensor | Sequence[int]
    params: GenerationParams
    template: CanvasTemplate | None
    suffix_ids: torch.Tensor | Sequence[int] | None
    drafts: bool
    loop: asyncio.AbstractEventLoop
    events: asyncio.Queue
    cancelled: bool = False
    run: GenerationRun | None = None
    blocks_sent: int = field(default=0)

    def emit(self, item: object) -> None:
        self.loop.call_soon_threadsafe(self.events.put_nowait, item)


class BatchScheduler:
    def __init__(self, engine: DiffusionEngine, *, max_batch: int = 16) -> None:
        self.engine = engine
        self.max_batch = max_batch
        self._inbox: queue.Queue[_Ticket | None] = queue.Queue()
        self._active: list[_Ticket] = []
        self._closed = False
        self._thread = threading.Thread(target=self._work, name="diffusion-worker", daemon=True)
        self._thread.start()
        #: forwards run by the worker and rows they carried (batching efficiency)
        self.forwards = 0
        self.rows = 0

    # ------------------------------------------------------------ async side
    async def submit(
        self,
        prompt_ids: torch.Tensor | Sequence[int],
        params: GenerationParams,
        template: CanvasTemplate | None = None,
        suffix_ids: torch.Tensor | Sequence[int] | None = None,
        *,
        drafts: bool = False,
    ) -> AsyncIterator[SchedulerEvent]:
        """Stream events for one request; the last one is a :class:`FinishEvent`.

        Closing the iterator early (``break``, task cancellation) cancels the request.
        Errors raised by the model or by invalid params are re-raised here.
        """
        if self._closed:
            raise RuntimeError("scheduler is closed; create a new BatchScheduler")
        ticket = _Ticket(prompt_ids, params, template, suffix_ids, drafts,
                         asyncio.get_running_loop(), asyncio.Queue())
        self._inbox.put(ticket)
        try:
            while True:
                item = await ticket.events.get()
                if isinstance(item, BaseException):
                    raise item
                yield item
                if isinstance(item, FinishEvent):
                    return
        finally:
            ticket.cancelled = True  # no-op when already finished

    async def generate(self, prompt_ids, params: GenerationParams, template=None, suffix_ids=None) -> GenerationResult:
        async for event in self.submit(prompt_ids, params, template, suffix_ids):
            if isinstance(event, FinishEvent):
                return event.result
        raise RuntimeError("request ended without a result")

    def close(self, timeout: float = 5.0) -> None:
        """Stop the worker; unfinished requests end as cancelled."""
        self._closed = True
        self._inbox.put(None)
        self._thread.join(timeout)

    # ----------------------------------------------------------- worker side
    def _work(self) -> None:
        torch.set_grad_enabled(False)
        pin_threads()  # the process's count, whatever another thread set (threads.py)
        while True:
            if not self._admit():
                break
            if not self._active:
                continue
            runs = [t.run for t in self._active]
            try:
                self.engine.step(runs)
                self.forwards += 1
                self.rows += len(runs)
            except Exception as exc:  # a failed forward fails the requests in it, not the worker
                log.exception("diffusion step failed")
                for ticket in self._active:
                    ticket.emit(exc)
                self._active.clear()
                continue
            still = []
            for ticket in self._active:
                if ticket.run.finished:
                    ticket.emit(FinishEvent(ticket.run.result()))
                else:
                    still.append(ticket)
            self._active = still
        for ticket in self._active:
            ticket.run.cancel()
            self.engine.step([ticket.run])
            ticket.emit(FinishEvent(ticket.run.result()))

    def _admit(self) -> bool:
        """Move waiting requests into the batch; block only when there is nothing to do."""
        while len(self._active) < self.max_batch:
            try:
                ticket = self._inbox.get(block=not self._active)
            except queue.Empty:
                break
            if ticket is None:
                return False
            if ticket.cancelled:
                continue
            try:
                ticket.run = self.engine.start(
                    ticket.prompt_ids,
                    ticket.params,
                    ticket.template,
                    ticket.suffix_ids,
                    on_block=lambda toks, t=ticket: self._on_block(t, toks),
                    should_stop=lambda t=ticket: t.cancelled,
                    on_draft=(lambda i, canvas, t=ticket: t.emit(DraftEvent(i, canvas.tolist())))
                    if ticket.drafts else None,
                )
            except Exception as exc:
                ticket.emit(exc)
                continue
            self._active.append(ticket)
        return True

    @staticmethod
    def _on_block(ticket: _Ticket, tokens: list[int]) -> None:
        ticket.emit(BlockEvent(ticket.blocks_sent, tokens))
        ticket.blocks_sent += 1
