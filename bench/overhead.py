"""Gateway overhead: the same requests direct to a fake upstream, through Tandem, and
through the LiteLLM proxy, in alternating rounds of one run; and the same prompt through
Tandem's Responses API (``/v1/responses``, translated to chat; stored in SQLite, and with
``store: false``), which measures what the translation and the store add; and the same
Responses request to an upstream that speaks it, direct and passed through Tandem.

    python -m bench.overhead [--requests 200] [--rounds 3] [--no-litellm] [--no-responses]

The LiteLLM proxy lives in its own venv (bench/.venv-litellm-proxy, created on first
use with `pip install 'litellm[proxy]'`) so its pins never touch Tandem's. Results:
printed table + bench/results/overhead.json. Added latency = p50(target) - p50(direct).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from tests.conftest import Server, free_port

ROOT = Path(__file__).resolve().parent.parent
PROXY_VENV = ROOT / "bench" / ".venv-litellm-proxy"
MASTER_KEY = "sk-bench-master"
BODY = {"model": "passthrough", "messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 16}
RESPONSES_BODY = {"model": "passthrough", "input": "Say hello.", "max_output_tokens": 16}
#: the last line of a stream: chat's [DONE], the Responses API's completed event
STREAM_ENDS = ("data: [DONE]", 'data: {"type":"response.completed"', 'data: {"type": "response.completed"')


def ensure_proxy_venv() -> Path:
    exe = PROXY_VENV / "bin" / "litellm"
    if not exe.exists():
        print("creating LiteLLM proxy venv (one time)…", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(PROXY_VENV)], check=True)
        subprocess.run([str(PROXY_VENV / "bin" / "pip"), "install", "--quiet", "litellm[proxy]"], check=True)
    return exe


def start_litellm_proxy(upstream: str) -> Server:
    exe = ensure_proxy_venv()
    config = ROOT / "bench" / "results" / "litellm_proxy.yaml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(
        "model_list:\n  - model_name: passthrough\n    litellm_params:\n"
        f"      model: openai/ok\n      api_base: {upstream}\n      api_key: none\n"
        f"general_settings:\n  master_key: {MASTER_KEY}\nlitellm_settings:\n  drop_params: true\n"
    )
    port = free_port()
    server = Server(["-c", f"import os,sys; os.execv({str(exe)!r}, sys.argv[1:])", str(exe), "--config", str(config),
                     "--port", str(port), "--num_workers", "1"], port,
                    {"LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "ERROR"}, "litellm-proxy")
    server.wait("/health/liveliness", 180)
    return server


async def one(client: httpx.AsyncClient, url: str, key: str, stream: bool, body: dict) -> float:
    start = time.perf_counter()
    body = {**body, "stream": stream}
    headers = {"authorization": f"Bearer {key}"}
    if stream:
        async with client.stream("POST", url, json=body, headers=headers) as response:
            async for line in response.aiter_lines():
                if line.startswith(STREAM_ENDS):
                    break
            response.raise_for_status()
    else:
        response = await client.post(url, json=body, headers=headers)
        response.raise_for_status()
    return time.perf_counter() - start


async def run_round(url: str, key: str, n: int, concurrency: int, stream: bool, body: dict) -> list[float]:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=60) as client:
        await one(client, url, key, stream, body)  # warm the connection pool
        semaphore = asyncio.Semaphore(concurrency)

        async def guarded() -> float:
            async with semaphore:
                return await one(client, url, key, stream, body)

        return await asyncio.gather(*(guarded() for _ in range(n)))


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=200, help="requests per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-litellm", action="store_true", help="skip the LiteLLM proxy")
    parser.add_argument("--no-responses", action="store_true", help="skip the Responses API targets")
    args = parser.parse_args()

    upstream_port = free_port()
    upstream = Server(["-m", "bench.fake_upstream", "--port", str(upstream_port)], upstream_port, log_name="upstream")
    upstream.wait("/v1/models", 30)
    up_base = upstream.base + "/v1"
    tandem_port = free_port()
    tandem = Server(["-m", "gateway.cli", "serve", "--port", str(tandem_port), "--log-level", "warning",
                     "--policy", str(ROOT / "bench" / "policies" / "passthrough.yaml")], tandem_port,
                    {"UPSTREAM_BASE": up_base, "UPSTREAM_MODEL": "ok",
                     "TANDEM_DATA_DIR": tempfile.mkdtemp(prefix="tandem-bench-")}, "tandem")
    tandem.wait("/healthz", 120, want_status=200)
    servers = [upstream, tandem]
    targets = {"direct": (up_base + "/chat/completions", "none", BODY),
               "tandem": (tandem.base + "/v1/chat/completions", "none", BODY)}
    if not args.no_responses:
        targets["responses"] = (tandem.base + "/v1/responses", "none", RESPONSES_BODY)
        targets["resp-nostore"] = (tandem.base + "/v1/responses", "none", {**RESPONSES_BODY, "store": False})
        # an upstream that speaks the Responses API: straight to it, and passed through Tandem
        targets["resp-direct"] = (up_base + "/responses", "none", {**RESPONSES_BODY, "model": "ok"})
        targets["resp-pass"] = (tandem.base + "/v1/responses", "none",
                                {**RESPONSES_BODY, "model": "passthrough-responses"})
    try:
        if not args.no_litellm:
            proxy = start_litellm_proxy(up_base)
            servers.append(proxy)
            targets["litellm"] = (proxy.base + "/v1/chat/completions", MASTER_KEY, BODY)
        results: dict[str, dict[str, list[float]]] = {}
        for stream in (False, True):
            for concurrency in (1, 32):
                case = f"{'stream' if stream else 'plain'}/c{concurrency}"
                results[case] = {name: [] for name in targets}
                for round_index in range(args.rounds):
                    for name, (url, key, body) in targets.items():  # alternate targets every round
                        results[case][name] += asyncio.run(run_round(url, key, args.requests, concurrency, stream,
                                                                     body))
                print(f"{case}: done", flush=True)
    finally:
        for server in servers:
            server.stop()

    report = {}
    print(f"\n{'case':<14}{'target':<14}{'p50 ms':>9}{'p99 ms':>9}{'added p50':>11}")
    for case, per_target in results.items():
        direct = pct(per_target["direct"], 0.5)
        report[case] = {}
        for name, values in per_target.items():
            p50, p99 = pct(values, 0.5), pct(values, 0.99)
            report[case][name] = {"p50_ms": round(p50, 3), "p99_ms": round(p99, 3), "added_p50_ms": round(p50 - direct, 3),
                                  "n": len(values)}
            print(f"{case:<14}{name:<14}{p50:>9.2f}{p99:>9.2f}{p50 - direct:>11.2f}")
        if "resp-pass" in per_target:
            added = report[case]["resp-pass"]["p50_ms"] - report[case]["resp-direct"]["p50_ms"]
            report[case]["passthrough_added_p50_ms"] = round(added, 3)
            print(f"{'':<14}Responses pass-through adds {added:.2f} ms over its upstream direct")
        if "litellm" in per_target:
            tandem_added = report[case]["tandem"]["added_p50_ms"]
            litellm_added = report[case]["litellm"]["added_p50_ms"]
            ratio = tandem_added / litellm_added if litellm_added > 0 else float("nan")
            report[case]["tandem_over_litellm_added"] = round(ratio, 3)
            print(f"{'':<14}tandem added / litellm added = {ratio:.3f}")
    out = ROOT / "bench" / "results" / "overhead.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"args": vars(args), "cpu_count": os.cpu_count(), "results": report}, indent=2))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
