"""Per-step time of our engine vs transformers' DiffusionGemma ``generate()``.

Same tiny random DiffusionGemma weights, same settings (entropy-bound acceptance,
linear temperature schedule, StableAndConfident stop, same seeds), same process, runs
alternated so drift (other processes, thermal) hits both. Both produce the same tokens
for the same seed (checked), so the work per step is the same; the ratio is overhead.

    python -m bench.engine_vs_transformers [--repeats 5] [--blocks 4] [--threads 1]

Prints ratios and writes bench/results/engine_vs_transformers.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from diffusion_engine.adapters.diffusion_gemma import DiffusionGemmaDenoiser
from diffusion_engine.engine import DiffusionEngine, GenerationParams
from diffusion_engine.testing import TINY_CANVAS, tiny_diffusion_gemma

RESULTS = Path(__file__).parent / "results"


def _transformers_run(model, prompt, seed, n_tokens, steps, counter):
    counter["n"] = 0
    torch.manual_seed(seed)
    t0 = time.perf_counter()
    out = model.generate(prompt[None], max_new_tokens=n_tokens, t_min=0.4, t_max=0.8, max_denoising_steps=steps)
    elapsed = time.perf_counter() - t0
    return elapsed, counter["n"], out.sequences[0, prompt.numel():].tolist()


def _engine_run(engine, prompt, seed, n_tokens, steps):
    params = GenerationParams(max_tokens=n_tokens, rule="entropy_bound", temperature=0.8, final_temperature=0.4,
                              max_steps=steps, seed=seed, stop_on_eos=False)
    t0 = time.perf_counter()
    res = engine.generate(prompt, params)
    elapsed = time.perf_counter() - t0
    return elapsed, res.stats.steps, res.token_ids


def _batching_gain(engine, prompt, n_tokens, steps, requests: int = 4) -> dict:
    """Same requests run one by one vs stepped together (what BatchScheduler does)."""
    params = [GenerationParams(max_tokens=n_tokens, rule="entropy_bound", temperature=0.8, final_temperature=0.4,
                               max_steps=steps, seed=100 + i, stop_on_eos=False) for i in range(requests)]
    t0 = time.perf_counter()
    alone = [engine.generate(prompt, p).token_ids for p in params]
    sequential = time.perf_counter() - t0
    t0 = time.perf_counter()
    runs = [engine.start(prompt, p) for p in params]
    while not all(r.finished for r in runs):
        engine.step(runs)
    together = time.perf_counter() - t0
    return {"requests": requests, "sequential_s": sequential, "batched_s": together,
            "speedup": sequential / together, "same_tokens": [r.result().token_ids for r in runs] == alone}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--blocks", type=int, default=4)
    ap.add_argument("--steps", type=int, default=48)
    ap.add_argument("--prompt-len", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    model = tiny_diffusion_gemma(0)
    engine = DiffusionEngine(DiffusionGemmaDenoiser(model))
    counter = {"n": 0}
    model.model.decoder.register_forward_pre_hook(lambda *a, **k: counter.__setitem__("n", counter["n"] + 1))
    prompt = torch.randint(3, model.config.text_config.vocab_size - 3, (args.prompt_len,),
                           generator=torch.Generator().manual_seed(0))
    prompt[0] = 2
    n_tokens = args.blocks * TINY_CANVAS

    # warm-up both paths once (allocator, lazy imports)
    _transformers_run(model, prompt, 99, n_tokens, args.steps, counter)
    _engine_run(engine, prompt, 99, n_tokens, args.steps)

    rows = []
    for rep in range(args.repeats):
        seed = rep
        pair = [("transformers", lambda: _transformers_run(model, prompt, seed, n_tokens, args.steps, counter)),
                ("engine", lambda: _engine_run(engine, prompt, seed, n_tokens, args.steps))]
        if rep % 2:
            pair.reverse()  # alternate which goes first
        got = {}
        for name, fn in pair:
            elapsed, steps, tokens = fn()
            got[name] = {"seconds": elapsed, "steps": steps, "per_step_ms": 1000 * elapsed / steps, "tokens": tokens}
        same = got["engine"]["tokens"] == got["transformers"]["tokens"][: len(got["engine"]["tokens"])]
        rows.append({"seed": seed, "same_tokens": same,
                     **{f"{k}_{m}": v[m] for k, v in got.items() for m in ("seconds", "steps", "per_step_ms")}})
        print(f"seed {seed}: transformers {got['transformers']['per_step_ms']:.2f} ms/step "
              f"({got['transformers']['steps']} steps), engine {got['engine']['per_step_ms']:.2f} ms/step "
              f"({got['engine']['steps']} steps), same tokens: {same}")

    med_t = statistics.median(r["transformers_per_step_ms"] for r in rows)
    med_e = statistics.median(r["engine_per_step_ms"] for r in rows)
    ratio_step = med_t / med_e
    ratio_total = statistics.median(r["transformers_seconds"] / r["engine_seconds"] for r in rows)
    print(f"median per-step: transformers {med_t:.2f} ms, engine {med_e:.2f} ms -> {ratio_step:.2f}x faster")
    print(f"median end-to-end ratio: {ratio_total:.2f}x (goal >= 1.5x per step)")

    batched = _batching_gain(engine, prompt, n_tokens, args.steps)
    print(f"step-level batching, {batched['requests']} requests: {batched['sequential_s']:.2f} s one by one vs "
          f"{batched['batched_s']:.2f} s batched -> {batched['speedup']:.2f}x (same tokens: {batched['same_tokens']})")

    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "engine_vs_transformers.json"
    out.write_text(json.dumps({
        "settings": vars(args) | {"canvas": TINY_CANVAS, "new_tokens": n_tokens, "rule": "entropy_bound",
                                  "t_max": 0.8, "t_min": 0.4},
        "host": {"python": platform.python_version(), "torch": torch.__version__, "cpus": os.cpu_count()},
        "runs": rows,
        "median_per_step_ms": {"transformers": med_t, "engine": med_e},
        "per_step_speedup": ratio_step,
        "end_to_end_speedup": ratio_total,
        "all_same_tokens": all(r["same_tokens"] for r in rows),
        "batching": batched,
    }, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
