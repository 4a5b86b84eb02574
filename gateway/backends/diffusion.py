"""The local block-diffusion engine as a backend (``kind: diffusion`` in policies).

Text requests go through the engine's batch scheduler (concurrent requests share
forward passes; a finished block becomes SSE chunks). JSON-schema requests and tool
calls go through the structured-output generator: the JSON skeleton is laid into the
canvas and every value slot is denoised jointly, then validated (never returned
invalid). Per-request engine statistics are reported in ``usage.tandem`` and /metrics.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
import time
from dataclasses import asdict
from typing import Any, AsyncIterator

from diffusion_engine.threads import pinned_executor
from gateway import metrics
from gateway.backends.base import Backend, BackendError
from gateway.backends.diffusion_requests import DiffusionJob, edit_operation_job, job_for
from gateway.backends.grounded_edits import prediction_details
from gateway.backends.local_ar import StopScanner
from gateway.backends.tool_calls import completion_as_chunks, tool_call
from gateway.wire import (
    ChatCompletion, ChatCompletionChunk, Choice, ChunkChoice, Delta, ResponseMessage, Usage,
    completion_id, dump, now,
)
from router.plan import RequestPlan
from router.policy import BackendSpec

log = logging.getLogger(__name__)
DEFAULT_MAX_TOKENS = 256


def _usage(prompt_tokens: int, completion_tokens: int, tandem: dict[str, Any]) -> Usage:
    return Usage(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
                 total_tokens=prompt_tokens + completion_tokens, tandem=tandem)


def load_denoiser(model: str) -> tuple[Any, Any]:
    """``(denoiser, tokenizer)`` for a policy model string.

    ``embedded/smollm2-diffusion`` is the shipped adapter on the embedded SmolLM2;
    ``diffusion_gemma:PATH`` and ``masked_lm:PATH`` load local checkpoint directories
    (DiffusionGemma through transformers' own classes; LLaDA/Dream-style masked LMs).
    """
    if model == "embedded/smollm2-diffusion":
        from diffusion_engine.adapters.smollm2_block import SmolLM2BlockDenoiser
        from diffusion_engine.embedded import load_smollm2

        return SmolLM2BlockDenoiser.load(), load_smollm2()[1]
    kind, _, path = model.partition(":")
    if kind in ("diffusion_gemma", "masked_lm") and path:
        import torch
        from transformers import AutoTokenizer

        if kind == "diffusion_gemma":
            from diffusion_engine.adapters.diffusion_gemma import DiffusionGemmaDenoiser

            denoiser = DiffusionGemmaDenoiser.from_pretrained(path, dtype=torch.float32)
        else:
            from diffusion_engine.adapters.masked_lm import MaskedLMDenoiser

            denoiser = MaskedLMDenoiser.from_pretrained(path)
        return denoiser, AutoTokenizer.from_pretrained(path)
    raise BackendError(f"unknown diffusion model {model!r}: use embedded/smollm2-diffusion, "
                       "diffusion_gemma:PATH or masked_lm:PATH", status=503)


class DiffusionBackend(Backend):
    follows_tool_use = True

    def __init__(self, spec: BackendSpec) -> None:
        super().__init__(spec)
        self._lock = threading.Lock()
        self._engine = None
        self._scheduler = None
        self._structured = None
        self._tokenizer = None
        # Structured requests run whole-canvas fills off the event loop, one at a time.
        self._structured_executor = pinned_executor("tandem-structured")

    # --- loading -------------------------------------------------------------

    @property
    def ready(self) -> bool:
        return self._engine is not None

    def warmup(self) -> None:
        with self._lock:
            if self._engine is not None:
                return
            start = time.perf_counter()
            denoiser, tokenizer = load_denoiser(self.spec.model)
            self.attach(denoiser, tokenizer)
            log.info("diffusion backend %s ready in %.1f s", self.name, time.perf_counter() - start)

    def attach(self, denoiser: Any, tokenizer: Any) -> None:
        """Serve ``denoiser`` (any ``diffusion_engine.denoiser.Denoiser``) with ``tokenizer``."""
        from diffusion_engine.engine import DiffusionEngine
        from diffusion_engine.scheduler import BatchScheduler
        from diffusion_engine.structured.decode import StructuredGenerator

        engine = DiffusionEngine(denoiser)
        self._tokenizer = tokenizer
        self._structured = StructuredGenerator(engine, tokenizer)
        self._scheduler = BatchScheduler(engine)
        self._engine = engine

    async def _ensure_loaded(self) -> None:
        if self._engine is None:
            try:
                await asyncio.get_running_loop().run_in_executor(None, self.warmup)
            except BackendError:
                raise
            except Exception as exc:
                raise BackendError(f"{self.name}: the diffusion model failed to load: {exc}", status=503) from exc

    # --- request mapping ---------------------------------------------------------

    def _params(self, request: RequestPlan):
        from diffusion_engine.engine import GenerationParams

        sampling = request.sampling
        return GenerationParams(
            max_tokens=sampling.max_tokens or DEFAULT_MAX_TOKENS,
            temperature=sampling.temperature or 0.0,
            top_p=sampling.top_p or 1.0,
            seed=sampling.seed,
            **self.spec.engine,
        )

    def _prompt_ids(self, job: DiffusionJob) -> list[int]:
        tok = self._tokenizer
        if getattr(tok, "chat_template", None):
            ids = list(tok.apply_chat_template(job.messages, add_generation_prompt=True, tokenize=True,
                                               return_dict=False))
        else:  # base checkpoints without a chat template: a plain transcript
            transcript = "".join(f"{m['role']}: {m['content']}\n" for m in job.messages) + "assistant: "
            ids = ([tok.bos_token_id] if tok.bos_token_id is not None else []) + tok.encode(
                transcript, add_special_tokens=False)
        if job.kind == "infill":
            ids += self._tokenizer.encode(job.prefix, add_special_tokens=False)
        if job.answer_prefix:
            ids += self._tokenizer.encode(job.answer_prefix, add_special_tokens=False)
        return ids

    def _record(self, stats: Any) -> dict[str, Any]:
        data = asdict(stats) if hasattr(stats, "__dataclass_fields__") else dict(stats)
        metrics.DIFFUSION_STEPS.labels(self.name).inc(data.get("steps", data.get("denoiser_steps", 0)) or 0)
        if data.get("tokens_per_forward"):
            metrics.DIFFUSION_TPF.labels(self.name).observe(data["tokens_per_forward"])
        if data.get("time_to_first_block_s") is not None:
            metrics.DIFFUSION_FIRST_BLOCK.labels(self.name).observe(data["time_to_first_block_s"])
        if data.get("tokens_per_s"):
            metrics.DIFFUSION_TOKENS_PER_S.labels(self.name).observe(data["tokens_per_s"])
        verified = data.get("verified") or {}  # structured: drafts other than grammar-forced tokens
        offered = data.get("drafted") or verified.get("proposed", 0)
        kept = data.get("draft_accepted") or verified.get("kept", 0)
        if offered:
            metrics.DIFFUSION_DRAFTS.labels(self.name, "kept").inc(kept)
            metrics.DIFFUSION_DRAFTS.labels(self.name, "rejected").inc(max(0, offered - kept))
        if verified.get("source"):
            metrics.STRUCTURED_SOURCE.labels(self.name, verified["source"]).inc()
        for reason in verified.get("loop_cuts", ()):
            metrics.STRUCTURED_LOOP_CUTS.labels(self.name, reason).inc()
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in data.items()}

    # --- structured (json schema, tool calls) -------------------------------------

    async def _structured_result(self, job: DiffusionJob, request: RequestPlan, params: Any = None):
        from diffusion_engine.structured import StructuredOutputError, UnsupportedSchemaError

        prompt = self._prompt_ids(job)
        params = params or self._params(request)
        loop = asyncio.get_running_loop()
        try:
            result = await loop.run_in_executor(
                self._structured_executor, self._structured.generate, prompt, job.schema, params
            )
        except UnsupportedSchemaError as exc:
            raise BackendError(str(exc), status=400, client_error=True) from exc
        except StructuredOutputError as exc:
            raise BackendError(f"{self.name}: no schema-valid document: {exc}", status=500) from exc
        return prompt, result

    def _message(self, job: DiffusionJob, value: Any, text: str) -> tuple[ResponseMessage, str]:
        if job.kind == "tool":
            return ResponseMessage(content=None, tool_calls=[tool_call(value)]), "tool_calls"
        return ResponseMessage(content=text), "stop"

    # --- Predicted Outputs ------------------------------------------------------------

    async def _grounded_edit(self, job: DiffusionJob, request: RequestPlan) -> dict[str, Any] | None:
        """The edited document from one grounded edit operation (see ``grounded_edits``), or
        None when the instruction grounds none or no operation validates."""
        if job.kind != "predict" or job.edit is None:
            return None
        params = dataclasses.replace(self._params(request), max_tokens=job.edit.token_budget(self._tokenizer))
        try:
            prompt, result = await self._structured_result(edit_operation_job(job), request, params)
        except BackendError as exc:
            log.info("%s: no grounded edit operation (%s); generating the document", self.name, type(exc).__name__)
            return None
        edited = job.edit.answer(result.value, self._tokenizer, request.sampling.max_tokens)
        usage = self._structured_usage(prompt, result)
        usage.completion_tokens, usage.total_tokens = edited.tokens, len(prompt) + edited.tokens
        usage.completion_tokens_details = edited.details
        usage.tandem["edit"] = result.value
        return self._completion(ResponseMessage(content=edited.text), edited.finish, usage)

    # --- Backend API ---------------------------------------------------------------

    async def complete(self, request: RequestPlan) -> dict[str, Any]:
        await self._ensure_loaded()
        job = job_for(request)
        if job.kind in ("json", "tool"):
            prompt, result = await self._structured_result(job, request)
            message, finish = self._message(job, result.value, result.text)
            return self._completion(message, finish, self._structured_usage(prompt, result))
        edited = await self._grounded_edit(job, request)
        if edited is not None:
            return edited
        text, finish, prompt_len, tokens, stats = "", "stop", 0, 0, {}
        async for piece, event in self._text_events(job, request):
            text += piece
            if isinstance(event, tuple):
                finish, prompt_len, tokens, stats = event
        usage = _usage(prompt_len, tokens, stats)
        if job.kind == "predict":
            encode = self._tokenizer.encode
            usage.completion_tokens_details = prediction_details(encode(job.prediction, add_special_tokens=False),
                                                                 encode(text, add_special_tokens=False))
        return self._completion(ResponseMessage(content=text), finish, usage)

    def _structured_usage(self, prompt: list[int], result: Any) -> Usage:
        """Usage of a structured answer; also records its engine statistics in /metrics.

        The top-level ``usage.tandem`` fields are those of every diffusion-route answer
        (``steps``, ``tokens_per_forward``, ...), so dashboards read one shape; the
        structured generator's own detail stays under ``structured``."""
        tokens = len(self._tokenizer.encode(result.text, add_special_tokens=False))
        detail = self._record(result.stats)
        verified = detail.get("verified") or {}
        steps = (detail.get("denoiser_steps") or 0) + (verified.get("forwards") or 0)
        seconds = detail.get("seconds") or 0.0
        return _usage(len(prompt), tokens, {
            "steps": steps,
            "tokens_per_forward": round(tokens / steps, 4) if steps else 0.0,
            # the document is sent once it validates: its first block is the whole of it
            "time_to_first_block_s": seconds,
            "tokens_per_s": round(tokens / seconds, 4) if seconds else 0.0,
            "blocks": result.rounds,
            "drafted": verified.get("proposed", 0),
            "draft_accepted": verified.get("kept", 0),
            "rounds": result.rounds,
            "structured": detail,
        })

    def _completion(self, message: ResponseMessage, finish: str, usage: Usage) -> dict[str, Any]:
        return dump(ChatCompletion(id=completion_id(), created=now(), model=self.name,
                                   choices=[Choice(message=message, finish_reason=finish)], usage=usage))

    def _prediction_template(self, job: DiffusionJob, params: Any):
        """Predicted Outputs: the draft's tokens start the canvas (free to change, not fixed),
        followed by masked slack so an edit can also grow the text; EOS may end it anywhere."""
        if job.kind != "predict" or params.rule == "verified":
            # verified: the prediction sits in the prompt, where lookups draft from it and
            # the AR base keeps what it agrees with, so the whole document comes back
            return None
        import torch

        from diffusion_engine.template import CanvasTemplate

        draft = self._tokenizer.encode(job.prediction, add_special_tokens=False)
        length = min(params.max_tokens, len(draft) + max(16, len(draft) // 4))
        template = CanvasTemplate.free(length, self._engine.denoiser.vocab_size, allow_eos=True)
        seeded = draft[:length]
        template.tokens[: len(seeded)] = torch.tensor(seeded, dtype=torch.long)
        return template

    async def _text_events(self, job: DiffusionJob, request: RequestPlan, drafts: bool = False):
        """Yield ``(text delta, None)`` per finished block, ``("", {"draft": ...})`` per draft
        (when asked), then ``("", (finish, prompt, tokens, stats))``."""
        from diffusion_engine.scheduler import BlockEvent, DraftEvent, FinishEvent

        prompt = self._prompt_ids(job)
        suffix = self._tokenizer.encode(job.suffix, add_special_tokens=False) if job.kind == "infill" else None
        scanner = StopScanner([*request.sampling.stop, *job.stops])
        tokens: list[int] = []
        stopped = False
        params = self._params(request)
        if params.rule == "verified" and job.kind == "infill":
            # drafts are verified left to right; a canvas followed by an infill suffix is
            # denoised with the default rule instead
            params = dataclasses.replace(params, rule="threshold")
        events = self._scheduler.submit(prompt, params, template=self._prediction_template(job, params),
                                        suffix_ids=suffix, drafts=drafts)
        try:
            async for event in events:
                if isinstance(event, BlockEvent) and not stopped:
                    tokens += event.token_ids
                    delta, stopped = scanner.feed(self._tokenizer.decode(tokens, skip_special_tokens=True))
                    if delta:
                        yield delta, None
                    if stopped:
                        break  # closing the scheduler's iterator cancels the rest
                elif isinstance(event, DraftEvent):
                    yield "", {"draft": {"block": event.index,
                                         "text": self._tokenizer.decode(event.token_ids, skip_special_tokens=True)}}
                elif isinstance(event, FinishEvent):
                    result = event.result
                    tail = "" if stopped else scanner.flush(self._tokenizer.decode(result.token_ids, skip_special_tokens=True))
                    if tail:
                        yield tail, None
                    finish = "length" if result.finish_reason == "length" else "stop"
                    yield "", (finish, len(prompt), len(result.token_ids), self._record(result.stats))
                    return
        finally:
            await events.aclose()
        yield "", ("stop", len(prompt), len(tokens), {})

    async def stream(self, request: RequestPlan) -> AsyncIterator[dict[str, Any]]:
        await self._ensure_loaded()
        job = job_for(request)
        ident, created = completion_id(), now()

        def chunk(delta: Delta, finish: str | None = None, usage: Usage | None = None, choices: bool = True) -> dict:
            return dump(ChatCompletionChunk(id=ident, created=created, model=self.name, usage=usage,
                                            choices=[ChunkChoice(delta=delta, finish_reason=finish)] if choices else []))

        include_usage = request.include_usage
        if job.kind in ("json", "tool"):
            # A structured document is sent once it validates: never a prefix that could turn invalid.
            prompt, result = await self._structured_result(job, request)
            message, finish = self._message(job, result.value, result.text)
            completion = self._completion(message, finish, self._structured_usage(prompt, result))
            for part in completion_as_chunks({**completion, "id": ident, "created": created}, request):
                yield part
            return
        edited = await self._grounded_edit(job, request)
        if edited is not None:  # the document is whole once the operation validates: one delta
            for part in completion_as_chunks({**edited, "id": ident, "created": created}, request):
                yield part
            return
        yield chunk(Delta(role="assistant", content=""))
        # Draft events (the block being denoised, not final) only for clients that ask.
        drafts = bool(request.body.get("tandem_drafts"))
        async for piece, final in self._text_events(job, request, drafts=drafts):
            if piece:
                yield chunk(Delta(content=piece))
            if isinstance(final, dict):
                draft = chunk(Delta(), choices=False)
                draft["tandem"] = final
                yield draft
            elif final is not None:
                finish, prompt_len, tokens, stats = final
                yield chunk(Delta(), finish)
                if include_usage:
                    yield chunk(Delta(), usage=_usage(prompt_len, tokens, stats), choices=False)
                return
