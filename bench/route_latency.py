"""Routing latency inside a busy gateway: the router's content model shares the process
(and the cores) with an embedded model that is generating.

For each router thread count (``ROUTER_TORCH_THREADS``, side by side in one run) a gateway on
the default policy is started; one client keeps the embedded AR model generating while
another sends the short-prompt set (``bench/data/route_short.jsonl``, each text made unique
so nothing is cached) to ``/v1/route/explain``. Reported: p50/p99 of that call end to end
(classification, the policy, HTTP on loopback). Results in bench/results/route_latency.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import threading
import time
from pathlib import Path

import httpx
import numpy as np

from tests.conftest import Server, free_port

ROOT = Path(__file__).resolve().parent.parent
SHORT_SET = ROOT / "bench" / "data" / "route_short.jsonl"


def _generate_until(base: str, stop: threading.Event) -> None:
    body = {"model": "ar", "messages": [{"role": "user", "content": "Write a long story about a dragon."}],
            "max_tokens": 200}
    with httpx.Client(timeout=120) as client:
        while not stop.is_set():
            client.post(base + "/v1/chat/completions", json=body)


def measure(threads: int, rounds: int) -> dict:
    port = free_port()
    server = Server(["-m", "gateway.cli", "serve", "--port", str(port), "--log-level", "warning",
                     "--policy", str(ROOT / "policies" / "default.yaml")], port,
                    env={"ROUTER_TORCH_THREADS": str(threads)}, log_name="route-latency")
    try:
        server.wait("/healthz", 300, want_status=200)
        requests = [json.loads(line)["request"] for line in SHORT_SET.open() if line.strip()]
        stop = threading.Event()
        load = threading.Thread(target=_generate_until, args=(server.base, stop))
        load.start()
        time.sleep(2)  # generation under way
        latencies = []
        with httpx.Client(timeout=30) as client:
            for round_ in range(rounds):
                for request in requests:
                    body = json.loads(json.dumps(request))
                    last = body["messages"][-1]
                    if isinstance(last.get("content"), str):
                        last["content"] += f" #{round_}.{len(latencies)}"
                    start = time.perf_counter()
                    client.post(server.base + "/v1/route/explain", json=body).raise_for_status()
                    latencies.append((time.perf_counter() - start) * 1000)
        stop.set()
        load.join()
    finally:
        server.stop()
    return {"router_threads": threads, "n": len(latencies),
            "p50_ms": round(float(np.percentile(latencies, 50)), 2),
            "p99_ms": round(float(np.percentile(latencies, 99)), 2)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", default="1,2", help="router thread counts to compare")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    results = [measure(int(t), args.rounds) for t in args.threads.split(",")]
    report = {"cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(), "results": results}
    for row in results:
        print(f"router threads {row['router_threads']}: explain under generation p50 {row['p50_ms']} ms, "
              f"p99 {row['p99_ms']} ms (n={row['n']})")
    out = ROOT / "bench" / "results" / "route_latency.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
