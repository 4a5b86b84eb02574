"""Cost of one SmolLM2 forward by number of new tokens, dtype and linear packing (why the
embedded model runs bf16 on CPUs with bf16 matrix units, and which linears it packs).

    python -m bench.forward_cost [--threads 1] [--repeats 15]

Each forward appends ``n`` tokens after a cached 200-token context (what an AR step, a
verify check of ``n - 1`` drafts, or a draft canvas costs). Median of ``--repeats`` runs;
float32 and bf16, each plain (``F.linear``) and with linears packed for oneDNN
(``diffusion_engine.packed_linear``; which of them the gateway serves depends on the CPU), in
the same process, alternating. JSON to bench/results/forward_cost.json.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from pathlib import Path

import torch

SIZES = (1, 4, 8, 16, 32, 64)


@torch.inference_mode()
def forward_times(models: dict, context: torch.Tensor, n: int, repeats: int) -> dict[str, float]:
    """Median ms of an ``n``-token forward after ``context``, per model. Each model keeps one
    warm cache that is cropped back to the context after every timed forward (the steady
    state of decoding, not the first forward after a prefill); models alternate per repeat."""
    from transformers import DynamicCache

    caches = {}
    for name, model in models.items():
        caches[name] = DynamicCache()
        model(input_ids=context, cache=caches[name], use_cache=True)
    times: dict[str, list[float]] = {name: [] for name in models}
    for repeat in range(repeats + 1):  # the first round warms up and is not counted
        order = list(models) if repeat % 2 else list(models)[::-1]
        for name in order:
            new = torch.randint(100, 20000, (1, n))
            start = time.perf_counter()
            models[name](input_ids=new, cache=caches[name], use_cache=True)
            if repeat:
                times[name].append((time.perf_counter() - start) * 1000)
            caches[name].crop(-n)  # back to the context
    return {name: statistics.median(t) for name, t in times.items()}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=15)
    args = ap.parse_args(argv)
    from diffusion_engine.embedded import cpu_has_bf16, load_smollm2

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    context = torch.randint(100, 20000, (1, 200))
    from diffusion_engine.packed_linear import cpu_vendor, pack_linears, unpack_linears

    def plain(model):
        model = copy.deepcopy(model)
        unpack_linears(model)
        return model

    def packed(model):
        model = plain(model)
        return model if pack_linears(model, mode="on") else None  # None: oneDNN cannot run it here

    float32, bfloat16 = load_smollm2(torch.float32)[0], load_smollm2(torch.bfloat16)[0]
    models = {"float32 plain": plain(float32), "float32 packed": packed(float32),
              "bfloat16 packed": packed(bfloat16), "bfloat16 plain": plain(bfloat16)}
    for name in [name for name, model in models.items() if model is None]:
        print(f"{name}: this CPU's oneDNN cannot run it, left out")
        del models[name]
    table: dict[str, dict[int, float]] = {name: {} for name in models}
    for n in SIZES:
        for name, ms in forward_times(models, context, n, args.repeats).items():
            table[name][n] = ms
    print(f"cpu {cpu_vendor()}, native bf16: {cpu_has_bf16()}; threads {args.threads}")
    print("| new tokens | " + " | ".join(f"{name} ms" for name in models) + " |")
    print("|---|" + "---|" * len(models))
    for n in SIZES:
        print(f"| {n} | " + " | ".join(f"{table[name][n]:.1f}" for name in models) + " |")
    out = Path("bench/results/forward_cost.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"threads": args.threads, "cpu_vendor": cpu_vendor(), "bf16_cpu": cpu_has_bf16(),
                               "ms": table}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
