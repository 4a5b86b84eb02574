"""A fake OpenAI-compatible upstream for tests and the overhead benchmark.

Behaviour is chosen by the request's ``model`` (the part after any ``provider/``):
``ok`` answers at once; ``fail500``/``fail429``/``bad400`` return that status;
``slow`` sleeps ``?delay`` (default 5 s) before answering; ``cut`` streams two chunks
and then drops the connection; ``drip`` streams with ``DRIP_GAP_S`` between chunks, ``long`` the same for ``LONG_CHUNKS``. Streams send ``STREAM_CHUNKS`` content chunks.

Fault modes (for the fault suite): ``nonobject`` answers 200 with ``[1,2,3]``;
``malformed`` answers 200 with broken JSON (streams: a broken first chunk);
``badchunk`` streams two good chunks, then a malformed one; ``trickle`` sends a
non-streamed body one byte every ``TRICKLE_GAP_S``; ``reset`` closes the connection
without an answer; ``leak500`` / ``html500`` fail with an error text holding secrets /
an HTML page; ``fail401`` / ``fail403`` reject Tandem's own upstream credential;
``echo`` answers with the request body it received, less the messages; ``transcript``
with the messages, one ``role: content`` line each (tool calls appended); ``refuse``
answers with a refusal (``refusal`` instead of ``content``).

Run: ``python -m bench.fake_upstream --port 9100``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

STREAM_CHUNKS = 8
#: chunks of a ``long`` stream (``DRIP_GAP_S`` apart): one that outlives a drain deadline
LONG_CHUNKS = 120
DRIP_GAP_S = 0.25
TRICKLE_GAP_S = 0.5
#: what a careless upstream puts in its error text; must never reach a Tandem client
LEAKED_SECRET = "password=hunter2 sk-upstream-SECRET-123"
WORDS = ["Hello", " from", " the", " fake", " upstream", ".", " All", " good", "."]


def _completion(model: str, text: str) -> dict:
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop", "logprobs": None}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 9, "total_tokens": 14},
    }


def _chunk(model: str, delta: dict, finish: str | None = None) -> bytes:
    payload = {
        "id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": int(time.time()), "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
    }
    return b"data: " + json.dumps(payload).encode() + b"\n\n"


class DropConnection(Exception):
    """Raised inside a streaming body: the server aborts the response mid-way."""


REFUSAL = ["I can't", " help with", " that."]


def _refusal(model: str, stream: bool) -> Response:
    if not stream:
        completion = _completion(model, "")
        completion["choices"][0]["message"] = {"role": "assistant", "content": None, "refusal": "".join(REFUSAL)}
        return JSONResponse(completion)

    async def events():
        yield _chunk(model, {"role": "assistant", "content": None})
        for piece in REFUSAL:
            yield _chunk(model, {"refusal": piece})
        yield _chunk(model, {}, "stop")
        yield b"data: [DONE]\n\n"

    return StreamingResponse(events(), media_type="text/event-stream")


def _transcript_line(message: dict) -> str:
    calls = ",".join(f"{c['function']['name']}({c['function']['arguments']})" for c in message.get("tool_calls") or [])
    return f"{message.get('role')}: {message.get('content') or ''}{(' calls ' + calls) if calls else ''}"


async def chat(request: Request) -> Response:
    body = await request.json()
    model = str(body.get("model", "ok")).split("/")[-1]
    behaviour = model.split("?")[0]
    if behaviour == "echo":  # what reached the upstream, as the answer's text
        return JSONResponse(_completion(model, json.dumps({k: v for k, v in body.items() if k != "messages"})))
    if behaviour == "transcript":  # the conversation it was given, one "role: content" line each
        return JSONResponse(_completion(model, "\n".join(_transcript_line(m) for m in body.get("messages", []))))
    if behaviour == "refuse":  # a refusal instead of content, as OpenAI's models send one
        return _refusal(model, bool(body.get("stream")))
    if behaviour == "leak500":
        return JSONResponse({"error": {"message": f"db error: {LEAKED_SECRET}", "type": "server_error"}}, status_code=500)
    if behaviour == "html500":
        return Response(f"<html><body><h1>500</h1><!-- {LEAKED_SECRET} --></body></html>", status_code=500,
                        media_type="text/html")
    if behaviour == "reset":
        async def reset():
            raise DropConnection("fake upstream resets the connection")
            yield b""  # pragma: no cover - makes this an async generator

        return StreamingResponse(reset(), media_type="application/json")
    if behaviour == "nonobject":
        return Response(b"[1,2,3]", media_type="application/json")
    if behaviour == "malformed" and not body.get("stream"):
        return Response(b'{"id": "chatcmpl-fake", "choices": [', media_type="application/json")
    if behaviour == "trickle" and not body.get("stream"):
        payload = json.dumps(_completion(model, "".join(WORDS))).encode()

        async def drip_bytes():
            for index in range(len(payload)):
                yield payload[index:index + 1]
                await asyncio.sleep(TRICKLE_GAP_S)

        return StreamingResponse(drip_bytes(), media_type="application/json")
    if behaviour.startswith(("fail", "bad")) and behaviour[-3:].isdigit():
        status = int(behaviour[-3:])
        return JSONResponse({"error": {"message": f"fake {status}", "type": "server_error", "param": None, "code": None}},
                            status_code=status)
    if behaviour == "slow":
        await asyncio.sleep(float(request.query_params.get("delay", 5)))
    text = "".join(WORDS)
    if not body.get("stream"):
        return JSONResponse(_completion(model, text))

    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))

    async def events():
        if behaviour == "malformed":
            yield b'data: {"id": "chatcmpl-fake", "choices": [\n\n'
            return
        yield _chunk(model, {"role": "assistant", "content": ""})
        for index in range(LONG_CHUNKS if behaviour == "long" else STREAM_CHUNKS):
            if behaviour == "badchunk" and index == 2:
                yield b"data: {not json\n\n"
                await asyncio.sleep(0.05)
                continue
            if behaviour == "cut" and index == 2:
                await asyncio.sleep(0.05)  # the chunks so far are on the wire before the cut
                raise DropConnection("fake upstream drops the connection")
            if behaviour in ("drip", "long"):
                await asyncio.sleep(DRIP_GAP_S)
            yield _chunk(model, {"content": WORDS[index % len(WORDS)]})
        yield _chunk(model, {}, "stop")
        if include_usage:
            usage = {"prompt_tokens": 5, "completion_tokens": STREAM_CHUNKS, "total_tokens": 5 + STREAM_CHUNKS}
            yield b"data: " + json.dumps({"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 0,
                                          "model": model, "choices": [], "usage": usage}).encode() + b"\n\n"
        yield b"data: [DONE]\n\n"

    return StreamingResponse(events(), media_type="text/event-stream")


async def models(_: Request) -> Response:
    return JSONResponse({"object": "list", "data": [{"id": "ok", "object": "model", "created": 0, "owned_by": "fake"}]})


app = Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"]), Route("/v1/models", models)])


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9100)
    args = parser.parse_args()
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
