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
answers with a refusal (``refusal`` instead of ``content``). ``/v1/responses`` speaks the
Responses API (see ``responses``; ``nonobject`` answers 200 with a body that is no response, ``cut``
sends ``response.created`` and closes).

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


def _response(model: str, output: list, status: str = "completed") -> dict:
    return {"id": "resp_upstream", "object": "response", "created_at": int(time.time()), "status": status,
            "error": None, "incomplete_details": None, "model": model, "output": output,
            "usage": {"input_tokens": 7, "output_tokens": 11, "total_tokens": 18,
                      "input_tokens_details": {"cached_tokens": 0}, "output_tokens_details": {"reasoning_tokens": 3}}}


async def responses(request: Request) -> Response:
    """The Responses API. Answers with a reasoning item, a ``web_search_call`` when a hosted
    tool was offered, and a message whose text is JSON of what was received (every field but
    ``input``, and each input item's type and text): what a pass-through forwarded."""
    body = await request.json()
    model = body.get("model", "")
    if model in ("fail500", "bad400"):
        status = 500 if model == "fail500" else 400
        return JSONResponse({"error": {"message": f"fake {status}", "type": "server_error"}}, status_code=status)
    if model == "nonobject":
        return JSONResponse({"object": "chat.completion", "choices": []})  # 200, but not a response
    if isinstance(body.get("input"), str):
        body["input"] = [{"type": "message", "role": "user", "content": body["input"]}]
    received = {"received": {k: v for k, v in body.items() if k != "input"},
                "input": [[item.get("type", "message"), item.get("id"),
                           item.get("content") if isinstance(item.get("content"), str)
                           else " ".join(p.get("text", "") for p in item.get("content") or [] if isinstance(p, dict))]
                          for item in body.get("input") or []]}
    text = json.dumps(received)
    output = [{"id": "rs_fake", "type": "reasoning", "summary": [{"type": "summary_text", "text": "thought"}]}]
    if any(tool.get("type") != "function" for tool in body.get("tools") or []):
        output.append({"id": "ws_fake", "type": "web_search_call", "status": "completed",
                       "action": {"type": "search", "query": "fake"}})
    message = {"id": "msg_fake", "type": "message", "status": "completed", "role": "assistant",
               "content": [{"type": "output_text", "text": text, "annotations": []}]}
    if not body.get("stream"):
        return JSONResponse(_response(model, [*output, message]))

    async def events():
        sequence = iter(range(10_000))

        def event(kind: str, **fields) -> bytes:
            data = {"type": kind, "sequence_number": next(sequence), **fields}
            return f"event: {kind}\ndata: {json.dumps(data)}\n\n".encode()

        yield event("response.created", response=_response(model, [], "in_progress"))
        if model == "cut":
            return
        for index, item in enumerate(output):
            yield event("response.output_item.added", output_index=index, item=item)
            yield event("response.output_item.done", output_index=index, item=item)
        index = len(output)
        yield event("response.output_item.added", output_index=index, item={**message, "status": "in_progress",
                                                                            "content": []})
        half = len(text) // 2
        for piece in (text[:half], text[half:]):
            yield event("response.output_text.delta", item_id="msg_fake", output_index=index, content_index=0,
                        delta=piece)
        yield event("response.output_item.done", output_index=index, item=message)
        yield event("response.completed", response=_response(model, [*output, message]))

    return StreamingResponse(events(), media_type="text/event-stream")


app = Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"]), Route("/v1/models", models),
                        Route("/v1/responses", responses, methods=["POST"])])


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9100)
    args = parser.parse_args()
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
