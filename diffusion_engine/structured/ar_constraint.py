"""JSON-Schema constrained decoding for the embedded AR model (llguidance).

``JsonSchemaLogitsMask`` wraps an llguidance ``LLMatcher``: ``allowed_mask()`` gives the
next-token mask as a ``BoolTensor[V]`` (bit-unpacked with numpy -- llguidance's torch
helper compiles a kernel for ~19 s on first use, which we cannot afford per process),
``consume(token)`` advances the matcher. ``constrained_generate`` is the AR fallback of
structured requests: always schema-valid, or an error that says why (cap hit mid-document).
"""

from __future__ import annotations

import json
from typing import Any, Callable, Sequence

import numpy as np
import torch
from jsonschema import Draft202012Validator

from .errors import OutputTruncatedError, StructuredOutputError, UnsupportedSchemaError
from .render import FORMAT_CHECKER
from .vocab import per_tokenizer

#: compact JSON: no free whitespace, so a weak model cannot stall in an endless run of spaces
JSON_OPTIONS = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}
JSON_OBJECT_SCHEMA: dict = {"type": "object"}

def ll_tokenizer(tokenizer: Any) -> Any:
    """llguidance view of an HF fast tokenizer (≈0.6 s to build; cached per tokenizer object)."""
    import llguidance.hf

    return per_tokenizer("llguidance", tokenizer, llguidance.hf.from_tokenizer)


def llguidance_grammar(schema: Any | None) -> str:
    from llguidance import LLMatcher

    return LLMatcher.grammar_from_json_schema(schema if schema is not None else JSON_OBJECT_SCHEMA,
                                              defaults=JSON_OPTIONS)


def llguidance_error(tokenizer: Any, schema: Any) -> str | None:
    """None when llguidance compiles ``schema`` for ``tokenizer``, else its error message."""
    from llguidance import LLMatcher

    try:
        matcher = LLMatcher(ll_tokenizer(tokenizer), llguidance_grammar(schema), log_level=0)
    except (ValueError, TypeError) as exc:
        return str(exc)
    return matcher.get_error() if matcher.is_error() else None


class JsonSchemaLogitsMask:
    """Allowed next tokens under a JSON Schema (or any JSON object when ``schema`` is None)."""

    def __init__(self, tokenizer: Any, schema: Any | None = None, *, vocab_size: int | None = None) -> None:
        from llguidance import LLMatcher

        self.lltok = ll_tokenizer(tokenizer)
        self.schema = schema if schema is not None else JSON_OBJECT_SCHEMA
        self.matcher = LLMatcher(self.lltok, llguidance_grammar(self.schema), log_level=0)
        if self.matcher.is_error():
            raise UnsupportedSchemaError("schema", "/", f"llguidance: {self.matcher.get_error()}")
        self.n_tokens = int(self.lltok.vocab_size)
        #: logits may be wider than the tokenizer (padded embedding); the extra ids are never allowed
        self.vocab_size = int(vocab_size or self.n_tokens)
        self.eos_id = int(self.lltok.eos_token)
        self._bits = np.zeros((self.n_tokens + 31) // 32, dtype=np.int32)
        self.tokens: list[int] = []

    def allowed_mask(self) -> torch.Tensor:
        """``BoolTensor[vocab_size]`` of tokens the matcher accepts next."""
        self.matcher.unsafe_compute_mask_ptr(self._bits.ctypes.data, self._bits.nbytes)
        if self.matcher.is_error():
            raise StructuredOutputError(f"constraint failed: {self.matcher.get_error()}")
        bits = np.unpackbits(self._bits.view(np.uint8), bitorder="little")[: self.n_tokens]
        mask = torch.zeros(self.vocab_size, dtype=torch.bool)
        n = min(self.n_tokens, self.vocab_size)
        mask[:n] = torch.from_numpy(bits[:n].astype(bool))
        return mask

    def apply(self, logits: torch.Tensor) -> torch.Tensor:
        """``logits`` (``[V]`` or ``[B, V]``) with disallowed tokens set to -inf (a new tensor)."""
        mask = self.allowed_mask().to(logits.device)
        return logits.masked_fill(~mask, float("-inf"))

    def consume(self, token_id: int) -> None:
        if not self.matcher.consume_token(int(token_id)):
            raise StructuredOutputError(
                f"token {int(token_id)} violates the schema constraint: {self.matcher.get_error()}")
        self.tokens.append(int(token_id))

    def rollback(self, count: int) -> None:
        """Forget the last ``count`` consumed tokens."""
        if count > 0:
            self.matcher.rollback(count)
            del self.tokens[-count:]

    def try_consume_all(self, token_ids: Sequence[int]) -> bool:
        """Consume all of ``token_ids`` if the grammar allows every one of them, else none."""
        took = self.matcher.try_consume_tokens([int(t) for t in token_ids]) if token_ids else 0
        if took < len(token_ids):
            if took:
                self.matcher.rollback(took)
            return False
        self.tokens.extend(int(t) for t in token_ids)
        return True

    def is_accepting(self) -> bool:
        """The text so far is a complete document."""
        return bool(self.matcher.is_accepting())

    def is_stopped(self) -> bool:
        """Nothing but EOS can follow."""
        return bool(self.matcher.is_stopped())


NextLogits = Callable[[list[int]], torch.Tensor]


def constrained_sample(mask: JsonSchemaLogitsMask, next_logits: NextLogits, *, max_tokens: int,
                       temperature: float = 0.0, generator: torch.Generator | None = None) -> list[int]:
    """Sample under ``mask`` until the document is complete; ``next_logits(new_tokens)`` gives ``[V]``.

    Raises ``OutputTruncatedError`` when ``max_tokens`` ends it mid-document.
    """
    out: list[int] = []
    for _ in range(max_tokens):
        logits = mask.apply(next_logits(out).float().flatten())
        if temperature <= 0:
            token = int(torch.argmax(logits))
        else:
            probs = torch.softmax(logits / temperature, dim=-1)
            token = int(torch.multinomial(probs, 1, generator=generator))
        if token == mask.eos_id and mask.is_accepting():
            return out
        mask.consume(token)
        out.append(token)
        if mask.is_stopped():
            return out
    if mask.is_accepting():
        return out
    raise OutputTruncatedError("", max_tokens)


def constrained_generate(model: Any, tokenizer: Any, prompt_ids: Sequence[int] | torch.Tensor, schema: Any | None,
                         max_tokens: int = 256, temperature: float = 0.0, seed: int | None = None) -> str:
    """Schema-constrained AR generation (``schema=None``: any JSON object, i.e. ``json_object`` mode).

    Returns JSON text valid for ``schema``; raises ``OutputTruncatedError`` (cap hit
    mid-document) or ``UnsupportedSchemaError`` (llguidance cannot compile the schema).
    """
    vocab = int(getattr(getattr(model, "config", None), "vocab_size", 0) or len(tokenizer))
    mask = JsonSchemaLogitsMask(tokenizer, schema, vocab_size=vocab)
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    device = next(model.parameters()).device
    prompt = torch.as_tensor(list(prompt_ids) if not isinstance(prompt_ids, torch.Tensor) else prompt_ids,
                             dtype=torch.long, device=device).view(1, -1)
    state: dict[str, Any] = {"past": None}

    @torch.inference_mode()
    def next_logits(new_tokens: list[int]) -> torch.Tensor:
        if state["past"] is None:
            inputs = prompt
        else:
            inputs = torch.tensor([[new_tokens[-1]]], dtype=torch.long, device=device)
        # transformers 5.x names the KV cache ``cache`` (``past_key_values`` is deprecated)
        out = model(input_ids=inputs, cache=state["past"], use_cache=True)
        state["past"] = out.cache
        return out.logits[0, -1].float().cpu()

    try:
        tokens = constrained_sample(mask, next_logits, max_tokens=max_tokens,
                                    temperature=temperature, generator=generator)
    except OutputTruncatedError as exc:
        exc.partial_text = tokenizer.decode(mask.tokens, skip_special_tokens=True)
        raise
    text = tokenizer.decode(tokens, skip_special_tokens=True)
    _check(text, mask.schema)
    return text


def _check(text: str, schema: Any) -> None:
    """llguidance does not enforce every keyword (e.g. some formats); never return invalid JSON."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise StructuredOutputError(f"constrained output is not JSON: {exc}") from exc
    errors = [e.message for e in Draft202012Validator(schema, format_checker=FORMAT_CHECKER).iter_errors(value)]
    if errors:
        raise StructuredOutputError("constrained output violates the schema: " + "; ".join(errors[:3]), errors)
