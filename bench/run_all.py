"""`make bench`: every benchmark, one after another (never two heavy jobs at once).

Each writes its JSON under bench/results/; BENCHMARKS.md holds the numbers of record.
Pass names to run a subset: ``python -m bench.run_all route overhead``.
"""

from __future__ import annotations

import subprocess
import sys
import time

BENCHES: dict[str, list[str]] = {
    "route": ["-m", "bench.route_eval"],
    "route-latency": ["-m", "bench.route_latency"],
    "overhead": ["-m", "bench.overhead"],
    "engine": ["-m", "bench.engine_vs_transformers"],
    "schemas": ["-m", "bench.schema_coverage", "--limit", "200"],
    "forward-cost": ["-m", "bench.forward_cost", "--threads", "2"],
    "diffusion-model": ["-m", "diffusion_engine.eval"],
    "diffusion-edits": ["-m", "diffusion_engine.eval", "--set", "edit", "--thresholds", "0.9"],
    "diffusion-infill": ["-m", "diffusion_engine.eval", "--set", "infill", "--thresholds", "0.9,0.5",
                         "--verified", "16", "--max-tokens", "48", "--dtype", "float32", "--threads", "2"],
    # AR in float32 too: in bf16 (the default on AMX CPUs) float32 is AR's faster dtype
    "agents": ["-m", "bench.agents"],
    "soak": ["-m", "bench.soak"],
    "extraction": ["-m", "diffusion_engine.eval_extract",
                   "--methods", "ar,ar_float32,diffusion,verified,verified_skeleton"],
}


def main(names: list[str]) -> int:
    unknown = [n for n in names if n not in BENCHES]
    if unknown:
        print(f"unknown benchmark(s) {unknown}; choose from {list(BENCHES)}", file=sys.stderr)
        return 2
    failed = []
    for name in names or list(BENCHES):
        print(f"\n=== {name} ===", flush=True)
        start = time.perf_counter()
        code = subprocess.call([sys.executable, *BENCHES[name]])
        print(f"=== {name}: exit {code} in {time.perf_counter() - start:.0f} s ===", flush=True)
        if code:
            failed.append(name)
    if failed:
        print(f"failed: {failed}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
