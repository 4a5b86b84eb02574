"""Cost of one SmolLM2 forward by number of new tokens and dtype (why verified diffusion
and prefill want bf16 on CPUs with bf16 matrix units).

    python -m bench.forward_cost [--threads 1] [--repeats 7]

Each forward appends ``n`` tokens after a cached 200-token context (what an AR step, a
verify check of ``n - 1`` drafts, or a draft canvas costs). Median of ``--repeats`` runs;
both dtypes in the same process, alternating. JSON to bench/results/forward_cost.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

SIZES = (1, 4, 8, 16, 32, 64)


@torch.inference_mode()
def forward_ms(model, context: torch.Tensor, n: int, repeats: int) -> float:
    from transformers import DynamicCache

    times = []
    for _ in range(repeats):
        cache = DynamicCache()
        model(input_ids=context, cache=cache, use_cache=True)
        new = torch.randint(100, 20000, (1, n))
        start = time.perf_counter()
        model(input_ids=new, cache=cache, use_cache=True)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args(argv)
    from diffusion_engine.embedded import cpu_has_bf16, load_smollm2

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    context = torch.randint(100, 20000, (1, 200))
    models = {name: load_smollm2(getattr(torch, name))[0] for name in ("float32", "bfloat16")}
    table: dict[str, dict[int, float]] = {name: {} for name in models}
    for n in SIZES:
        for name, model in models.items():
            table[name][n] = forward_ms(model, context, n, args.repeats)
    print(f"cpu has native bf16: {cpu_has_bf16()}; threads {args.threads}")
    print("| new tokens | " + " | ".join(f"{name} ms" for name in models) + " |")
    print("|---|" + "---|" * len(models))
    for n in SIZES:
        print(f"| {n} | " + " | ".join(f"{table[name][n]:.1f}" for name in models) + " |")
    out = Path("bench/results/forward_cost.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"threads": args.threads, "bf16_cpu": cpu_has_bf16(), "ms": table}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
