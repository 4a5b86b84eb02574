"""BatchScheduler: shared forwards, equal results, joining, cancellation."""

import asyncio
import threading

import pytest
import torch

from diffusion_engine.adapters.diffusion_gemma import DiffusionGemmaDenoiser
from diffusion_engine.engine import DiffusionEngine, GenerationParams
from diffusion_engine.scheduler import BatchScheduler, BlockEvent, DraftEvent, FinishEvent
from diffusion_engine.testing import tiny_diffusion_gemma


class CountingDenoiser(DiffusionGemmaDenoiser):
    """Records batch sizes and the thread each forward ran on."""

    def __init__(self, model):
        super().__init__(model)
        self.batch_sizes: list[int] = []
        self.threads: set[str] = set()

    def canvas_logits(self, canvases, caches, suffix_ids=None, self_conditioning=None):
        self.batch_sizes.append(canvases.shape[0])
        self.threads.add(threading.current_thread().name)
        return super().canvas_logits(canvases, caches, suffix_ids, self_conditioning)


@pytest.fixture(scope="module")
def engine():
    return DiffusionEngine(CountingDenoiser(tiny_diffusion_gemma(0)))


JOBS = [
    ([2, 5, 6, 7], GenerationParams(max_tokens=24, rule="entropy_bound", temperature=0.8, final_temperature=0.4,
                                    max_steps=8, seed=1, stop_on_eos=False)),
    ([2, 9], GenerationParams(max_tokens=8, rule="threshold", temperature=1.0, seed=2, stop_on_eos=False)),
    ([2, 11, 12], GenerationParams(max_tokens=16, rule="low_confidence", temperature=1.0, seed=3, stop_on_eos=False)),
]


def test_concurrent_requests_share_forwards_and_match_sync(engine):
    expected = [engine.generate(p, params).token_ids for p, params in JOBS]
    engine.denoiser.batch_sizes.clear()

    async def main():
        scheduler = BatchScheduler(engine)
        try:
            return await asyncio.gather(*(scheduler.generate(p, params) for p, params in JOBS))
        finally:
            scheduler.close()

    results = asyncio.run(main())
    assert [r.token_ids for r in results] == expected
    assert max(engine.denoiser.batch_sizes) == 3  # step-level batching happened
    assert engine.denoiser.threads - {"MainThread"} == {"diffusion-worker"}


def test_stream_events_in_order_and_join_mid_flight(engine):
    async def main():
        scheduler = BatchScheduler(engine)
        try:
            long_events, short_result = [], None
            async for event in scheduler.submit(*JOBS[0]):
                long_events.append(event)
                if isinstance(event, BlockEvent) and event.index == 0:
                    # a request joining while the first is mid-generation
                    short_result = await scheduler.generate(*JOBS[1])
            return long_events, short_result
        finally:
            scheduler.close()

    events, short = asyncio.run(main())
    blocks = [e for e in events if isinstance(e, BlockEvent)]
    assert [b.index for b in blocks] == [0, 1, 2]
    assert isinstance(events[-1], FinishEvent)
    assert sum((b.token_ids for b in blocks), []) == events[-1].result.token_ids
    assert events[-1].result.token_ids == engine.generate(*JOBS[0]).token_ids
    assert short.token_ids == engine.generate(*JOBS[1]).token_ids


async def _drained(scheduler, timeout=5.0):
    """Wait until the worker has dropped every request (polling: machines here are slow)."""
    for _ in range(int(timeout / 0.02)):
        if not scheduler._active and scheduler._inbox.empty():
            return True
        await asyncio.sleep(0.02)
    return False


def test_disconnect_cancels_within_one_step(engine):
    params = GenerationParams(max_tokens=400, rule="entropy_bound", max_steps=48, confidence_threshold=1e-9, seed=0)

    async def main():
        scheduler = BatchScheduler(engine)
        try:
            stream = scheduler.submit([2, 5], params, drafts=True)
            seen = 0
            async for event in stream:
                assert isinstance(event, (DraftEvent, BlockEvent))
                seen += 1
                if seen == 3:
                    break
            await stream.aclose()  # what a client disconnect does to the response generator
            forwards_at_cancel = len(engine.denoiser.batch_sizes)
            assert await _drained(scheduler)
            await asyncio.sleep(0.1)
            return forwards_at_cancel, len(engine.denoiser.batch_sizes), scheduler
        finally:
            scheduler.close()

    engine.denoiser.batch_sizes.clear()
    at_cancel, later, scheduler = asyncio.run(main())
    assert later - at_cancel <= 1  # at most the forward already in flight
    assert later < 480  # the request needed 50 blocks x 48 steps = 2400 forwards


def test_task_cancellation_and_bad_params(engine):
    async def main():
        scheduler = BatchScheduler(engine)
        try:
            with pytest.raises(ValueError, match="top_p"):
                await scheduler.generate([2, 5], GenerationParams(top_p=2.0))
            task = asyncio.create_task(scheduler.generate([2, 5], GenerationParams(
                max_tokens=400, rule="entropy_bound", confidence_threshold=1e-9, seed=0)))
            await asyncio.sleep(0.2)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert await _drained(scheduler)
            # the worker is still healthy afterwards
            return await scheduler.generate(*JOBS[1])
        finally:
            scheduler.close()

    assert asyncio.run(main()).token_ids == engine.generate(*JOBS[1]).token_ids
