"""Soak: many concurrent streams through the gateway to the fake upstream, round after round.

    python -m bench.soak [--streams 500] [--rounds 5] [--model drip]

Each round opens ``--streams`` streams at once (the fake upstream's ``drip`` mode sends 8
chunks 0.25 s apart) and reads each to ``[DONE]``. Reported per round and overall: errors,
shed requests (429), p50/p99 time to first chunk and to the end, and the gateway process's
RSS and open file descriptors before, between rounds and after (they must stay bounded:
a leak grows with every round). Results: printed + bench/results/soak.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from pathlib import Path

import httpx

from tests.conftest import Server, free_port

ROOT = Path(__file__).resolve().parent.parent
BODY = {"model": "soak", "messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 16, "stream": True}


def process_stats(pid: int) -> dict[str, float]:
    status = Path(f"/proc/{pid}/status").read_text()
    rss_kb = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
    return {"rss_mib": round(rss_kb / 1024, 1), "open_fds": len(os.listdir(f"/proc/{pid}/fd"))}


async def one_stream(client: httpx.AsyncClient, url: str) -> tuple[str, float, float]:
    start = time.perf_counter()
    first = None
    try:
        async with client.stream("POST", url, json=BODY) as response:
            if response.status_code == 429:
                return "shed", 0.0, 0.0
            if response.status_code != 200:
                return f"http {response.status_code}", 0.0, 0.0
            ended = False
            async for line in response.aiter_lines():
                if first is None and line.startswith("data: "):
                    first = time.perf_counter() - start
                if '"error"' in line:
                    return "error event", 0.0, 0.0
                if line == "data: [DONE]":
                    ended = True
            if not ended:
                return "no [DONE]", 0.0, 0.0
    except httpx.HTTPError as exc:
        return type(exc).__name__, 0.0, 0.0
    return "ok", first or 0.0, time.perf_counter() - start


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 1) if ordered else 0.0


async def soak_round(url: str, streams: int) -> dict:
    limits = httpx.Limits(max_connections=streams, max_keepalive_connections=streams)
    async with httpx.AsyncClient(limits=limits, timeout=120) as client:
        results = await asyncio.gather(*(one_stream(client, url) for _ in range(streams)))
    outcomes: dict[str, int] = {}
    for outcome, _, _ in results:
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    firsts = [first for outcome, first, _ in results if outcome == "ok"]
    totals = [total for outcome, _, total in results if outcome == "ok"]
    return {"outcomes": outcomes, "first_chunk_p50_ms": pct(firsts, 0.5), "first_chunk_p99_ms": pct(firsts, 0.99),
            "total_p50_ms": pct(totals, 0.5), "total_p99_ms": pct(totals, 0.99)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--streams", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--model", default="drip", help="fake upstream mode")
    args = parser.parse_args()

    upstream_port, tandem_port = free_port(), free_port()
    upstream = Server(["-m", "bench.fake_upstream", "--port", str(upstream_port)], upstream_port, log_name="upstream")
    upstream.wait("/v1/models", 30)
    tandem = Server(["-m", "gateway.cli", "serve", "--port", str(tandem_port), "--log-level", "warning",
                     "--policy", str(ROOT / "bench" / "policies" / "soak.yaml")], tandem_port,
                    {"UPSTREAM_BASE": upstream.base + "/v1", "UPSTREAM_MODEL": args.model}, "tandem")
    tandem.wait("/healthz", 120, want_status=200)
    url = tandem.base + "/v1/chat/completions"
    report = {"args": vars(args), "cpu_count": os.cpu_count(), "rounds": []}
    try:
        report["before"] = process_stats(tandem.proc.pid)
        for index in range(args.rounds):
            result = asyncio.run(soak_round(url, args.streams))
            time.sleep(1)  # let closed connections go
            result["after"] = process_stats(tandem.proc.pid)
            report["rounds"].append(result)
            print(f"round {index + 1}: {result}", flush=True)
        in_flight = next(line for line in httpx.get(tandem.base + "/metrics").text.splitlines()
                         if line.startswith("tandem_in_flight_requests"))
        report["in_flight_after"] = float(in_flight.split()[-1])
    finally:
        tandem.stop()
        upstream.stop()
    rss = [r["after"]["rss_mib"] for r in report["rounds"]]
    fds = [r["after"]["open_fds"] for r in report["rounds"]]
    print(f"\nRSS MiB before {report['before']['rss_mib']}, after each round {rss}; "
          f"open fds before {report['before']['open_fds']}, after each round {fds}; "
          f"in flight at the end {report['in_flight_after']:g}")
    out = ROOT / "bench" / "results" / "soak.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
