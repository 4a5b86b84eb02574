"""In-process autoregressive generation with the embedded SmolLM2 model.

The model loop is synchronous torch code, so it runs on one dedicated worker thread
(never on the event loop); ``stream_events`` bridges it to asyncio token by token.
A client that goes away sets the cancel flag and the loop stops within one token.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Callable, Iterator

import torch

from diffusion_engine.threads import pinned_executor
from router.plan import content_text

log = logging.getLogger(__name__)


@dataclass
class SamplingParams:
    max_tokens: int = 256
    temperature: float = 0.7
    top_p: float = 1.0
    seed: int | None = None
    stop: list[str] = field(default_factory=list)
    #: JSON Schema the output must satisfy (constrained decoding); {} means any JSON object
    json_schema: dict[str, Any] | None = None


@dataclass
class TextEvent:
    text: str
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0


def sample_token(logits: torch.Tensor, params: SamplingParams, generator: torch.Generator | None) -> int:
    """Greedy at temperature 0, else temperature + nucleus sampling."""
    if params.temperature <= 0:
        return int(torch.argmax(logits))
    probs = torch.softmax(logits.float() / params.temperature, dim=-1)
    if params.top_p < 1.0:
        sorted_probs, order = torch.sort(probs, descending=True)
        keep = torch.cumsum(sorted_probs, dim=-1) - sorted_probs < params.top_p
        sorted_probs = torch.where(keep, sorted_probs, torch.zeros_like(sorted_probs))
        probs = torch.zeros_like(probs).scatter(0, order, sorted_probs)
    return int(torch.multinomial(probs, 1, generator=generator))


class StopScanner:
    """Emits text incrementally while holding back anything that may start a stop string."""

    def __init__(self, stops: list[str]) -> None:
        self.stops = [s for s in stops if s]
        self.emitted = 0

    def feed(self, text: str) -> tuple[str, bool]:
        """Given the full text so far, return (new safe text, stopped)."""
        for stop in self.stops:
            at = text.find(stop, max(0, self.emitted - len(stop)))
            if at != -1:
                out = text[self.emitted:at]
                self.emitted = max(self.emitted, at)
                return out, True
        hold = 0
        for stop in self.stops:
            for k in range(min(len(stop) - 1, len(text)), 0, -1):
                if text.endswith(stop[:k]):
                    hold = max(hold, k)
                    break
        safe_end = max(self.emitted, len(text) - hold)
        out = text[self.emitted:safe_end]
        self.emitted = safe_end
        return out, False

    def flush(self, text: str) -> str:
        out = text[self.emitted:]
        self.emitted = len(text)
        return out


class LocalARModel:
    """SmolLM2-135M-Instruct served from this process."""

    def __init__(self, loader: Callable[[], tuple[Any, Any]] | None = None) -> None:
        self._loader = loader
        self._model = None
        self._tokenizer = None
        self._load_lock = threading.Lock()
        self._executor = pinned_executor("tandem-ar")
        self.load_seconds: float | None = None

    @property
    def ready(self) -> bool:
        return self._model is not None

    def load(self) -> None:
        with self._load_lock:
            if self._model is not None:
                return
            start = time.perf_counter()
            if self._loader is None:
                from diffusion_engine.embedded import load_smollm2

                self._model, self._tokenizer = load_smollm2()
            else:
                self._model, self._tokenizer = self._loader()
            self.load_seconds = time.perf_counter() - start
            log.info("embedded AR model ready in %.1f s", self.load_seconds)

    @property
    def tokenizer(self):
        self.load()
        return self._tokenizer

    def prompt_ids(self, messages: list[dict[str, Any]]) -> list[int]:
        chat = template_messages(messages)
        return list(self.tokenizer.apply_chat_template(chat, add_generation_prompt=True, tokenize=True, return_dict=False))

    def _constraint(self, schema: dict[str, Any] | None):
        if schema is None:
            return None
        from diffusion_engine.structured.ar_constraint import JsonSchemaLogitsMask

        return JsonSchemaLogitsMask(self.tokenizer, schema, vocab_size=self._model.config.vocab_size)

    @torch.inference_mode()
    def generate(self, messages: list[dict[str, Any]], params: SamplingParams, cancel: threading.Event) -> Iterator[TextEvent]:
        """Synchronous token loop with a KV cache; yields text deltas."""
        self.load()
        model, tok = self._model, self._tokenizer
        prompt = self.prompt_ids(messages)
        generator = torch.Generator().manual_seed(params.seed) if params.seed is not None else None
        constraint = self._constraint(params.json_schema)
        eos = {tok.eos_token_id, tok.convert_tokens_to_ids("<|endoftext|>")}
        scanner = StopScanner(params.stop)
        ids = torch.tensor([prompt])
        past = None
        generated: list[int] = []
        finish = "length"
        stopped_by_string = False
        for _ in range(params.max_tokens):
            if cancel.is_set():
                finish = "cancelled"
                break
            out = model(input_ids=ids, cache=past, use_cache=True)
            past = out.cache
            logits = out.logits[0, -1]
            if constraint is not None:
                logits = constraint.apply(logits)
            token = sample_token(logits, params, generator)
            if token in eos:  # under a constraint, EOS is allowed only once the document is complete
                finish = "stop"
                break
            if constraint is not None:
                constraint.consume(token)
            generated.append(token)
            text = tok.decode(generated, skip_special_tokens=True)
            delta, stopped = scanner.feed(text)
            if delta:
                yield TextEvent(delta)
            if stopped:
                finish, stopped_by_string = "stop", True
                break
            if constraint is not None and constraint.is_stopped():
                finish = "stop"
                break
            ids = torch.tensor([[token]])
        tail = "" if stopped_by_string else scanner.flush(tok.decode(generated, skip_special_tokens=True))
        yield TextEvent(tail, finish_reason=finish, prompt_tokens=len(prompt), completion_tokens=len(generated))

    async def stream_events(self, messages: list[dict[str, Any]], params: SamplingParams) -> AsyncIterator[TextEvent]:
        """Run ``generate`` on the worker thread, yielding events as they are produced."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[TextEvent | BaseException | None] = asyncio.Queue()
        cancel = threading.Event()

        def run() -> None:
            try:
                for event in self.generate(messages, params, cancel):
                    loop.call_soon_threadsafe(queue.put_nowait, event)
            except BaseException as exc:  # surfaced to the awaiting coroutine
                loop.call_soon_threadsafe(queue.put_nowait, exc)
            finally:
                loop.call_soon_threadsafe(queue.put_nowait, None)

        loop.run_in_executor(self._executor, run)
        try:
            while True:
                item = await queue.get()
                if item is None:
                    break
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            cancel.set()  # the worker stops within one token; nothing else to wait for


def template_messages(messages: list[dict[str, Any]]) -> list[dict[str, str]]:
    """OpenAI messages as the plain ``{role, content}`` turns a chat template expects.

    SmolLM2's template knows system/user/assistant only: an assistant's tool calls become
    its text (``Called name(arguments)``), a tool result a user turn naming the tool it
    answers, so a multi-turn agent conversation reads as what happened.
    """
    names = {call.get("id"): (call.get("function") or {}).get("name")
             for m in messages for call in m.get("tool_calls") or []}
    turns = []
    for message in messages:
        text = _text(message)
        if message["role"] in ("tool", "function"):
            tool = names.get(message.get("tool_call_id")) or message.get("name") or "the tool"
            text = f"Result of {tool}: {text}"
        turns.append({"role": _chat_role(message["role"]), "content": text})
    return turns


def _chat_role(role: str) -> str:
    # SmolLM2's template knows system/user/assistant; map the rest onto them.
    return {"developer": "system", "tool": "user", "function": "user"}.get(role, role)


def _text(message: dict[str, Any]) -> str:
    content = message.get("content")
    calls = message.get("tool_calls") or []
    said = "\n".join(f"Called {c['function']['name']}({c['function']['arguments']})" for c in calls)
    if content is None:
        return said
    content = content_text(content)
    return f"{content}\n{said}".strip() if said else content
