"""Extraction eval: schema validity and field accuracy, diffusion skeleton vs AR + llguidance.

    python -m diffusion_engine.eval_extract [--limit N] [--data PATH] [--threads 2]

For each task of ``shared/eval/extract_dev.jsonl`` (messages, a strict json_schema,
gold JSON and per-field checks), on the same CPU in the same run, alternating per task:

* **ar**: SmolLM2-135M-Instruct (adapter off) with llguidance constrained decoding,
  greedy, capped at ``--ar-max-tokens`` (a cap hit mid-document counts as invalid);
* **diffusion**: the same resident model with the block-diffusion adapter on, the
  schema's skeleton in the canvas and every value slot denoised jointly (greedy,
  confidence-threshold acceptance), validated and repaired.
* **verified**: rule ``verified`` as served -- AR + grammar decides every token; the grammar's
  forced tokens and prompt lookups are drafts checked in one forward each; the loop guard
  cuts runaway repetitions; the skeleton answers when the AR document still fails.
* **verified_skeleton**: the same, also drafting from the skeleton document (one diffusion
  forward over the whole canvas): what the diffusion draft adds.

* **ar_float32** (opt-in): AR + llguidance on a float32 copy of the base, so a bf16 run
  (the default on CPUs with native bf16) also measures AR in the other dtype, side by side.

``--methods`` picks a subset (default: ar, diffusion, verified, verified_skeleton).

Reported: schema-valid rate, mean field accuracy (``diffusion_engine.grading``), tokens
per forward (diffusion: free canvas positions and output tokens per denoiser forward;
AR: 1 by construction) and wall-clock seconds per task. JSON goes to runs/eval/.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from datetime import datetime, timezone
from pathlib import Path

import jsonschema
import torch
from tqdm import tqdm

from diffusion_engine.grading import grade

ROOT = Path(__file__).resolve().parents[1]


def default_data() -> Path:
    for base in (os.environ.get("TANDEM_SHARED"), ROOT / "shared", ROOT.parent / "shared"):
        if base and (Path(base) / "eval" / "extract_dev.jsonl").exists():
            return Path(base) / "eval" / "extract_dev.jsonl"
    raise FileNotFoundError("extract_dev.jsonl not found; pass --data or set TANDEM_SHARED")


def check_valid(text: str, schema: dict) -> tuple[bool, object]:
    try:
        value = json.loads(text)
        jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker()).validate(value)
        return True, value
    except (ValueError, jsonschema.ValidationError):
        return False, None


def scored(text: str, schema: dict, task: dict) -> dict:
    """Validity and field accuracy of one document (an invalid one scores 0 on every field)."""
    valid, value = check_valid(text, schema)
    return {"valid": valid, "accuracy": grade(value, task["gold"], task["checks"]).accuracy if valid else 0.0}


def run(args: argparse.Namespace) -> dict:
    from diffusion_engine.adapters.smollm2_block import SmolLM2BlockDenoiser
    from diffusion_engine.embedded import embedded_dtype, load_smollm2
    from diffusion_engine.engine import DiffusionEngine, GenerationParams
    from diffusion_engine.structured.decode import StructuredGenerator

    torch.set_num_threads(args.threads)
    dtype = embedded_dtype(args.dtype)
    model, tokenizer = load_smollm2(dtype)
    denoiser = SmolLM2BlockDenoiser.load(args.adapter, model=model, dtype=dtype)
    engine = DiffusionEngine(denoiser)
    generator = StructuredGenerator(engine, tokenizer)
    generators = {"verified": generator, "verified_skeleton": StructuredGenerator(engine, tokenizer, skeleton_draft=True)}
    params = GenerationParams(temperature=0.0, threshold=args.threshold)
    verified_params = GenerationParams(temperature=0.0, rule="verified", block_size=args.draft_len,
                                       max_tokens=args.ar_max_tokens)
    methods = args.methods.split(",")
    model32 = load_smollm2(torch.float32)[0] if "ar_float32" in methods else None
    tasks = [json.loads(line) for line in Path(args.data).read_text().splitlines() if line.strip()][: args.limit]

    rows = []
    for task in tqdm(tasks, desc="extract eval", unit="task"):
        schema = task["response_format"]["json_schema"]["schema"]
        prompt = list(tokenizer.apply_chat_template(task["messages"], add_generation_prompt=True, tokenize=True,
                                                    return_dict=False))
        row = {"id": task["id"]}
        for method in ("verified", "verified_skeleton"):
            if method in methods:
                row[method] = run_verified(generators[method], prompt, schema, task, verified_params)
        if "ar_float32" in methods:  # AR in the other dtype, side by side (float32 copy, no adapter)
            row["ar_float32"] = run_ar(model32, tokenizer, prompt, schema, task, args.ar_max_tokens)
        if "ar" in methods:
            with denoiser.adapter_off() as base:
                row["ar"] = run_ar(base, tokenizer, prompt, schema, task, args.ar_max_tokens)
            for method in ("verified", "verified_skeleton"):
                if method in row:
                    row[method]["identical_to_ar"] = row[method]["text"] == row["ar"]["text"]
        if "diffusion" in methods:
            row["diffusion"] = run_diffusion(generator, tokenizer, prompt, schema, task, params)
        rows.append(row)
    return {"rows": rows, "summary": summarize(rows), "args": {k: str(v) for k, v in vars(args).items()},
            "when": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def run_verified(generator, prompt: list[int], schema: dict, task: dict, params) -> dict:
    """The verified rule (AR + grammar checking drafts): validity, accuracy, seconds, forwards."""
    start = time.perf_counter()
    result = generator.generate(prompt, schema, params)
    seconds = time.perf_counter() - start
    info = result.stats["verified"]
    return {**scored(result.text, schema, task), "seconds": seconds, "source": info["source"],
            "tokens": info["tokens"], "forwards": result.stats["denoiser_steps"],
            "ar_forwards": info["forwards"], "kept": info["kept"], "forced": info["forced"],
            "loop_cuts": info["loop_cuts"], "text": result.text}


def run_diffusion(generator, tokenizer, prompt: list[int], schema: dict, task: dict, params) -> dict:
    """Joint denoising of the schema skeleton: validity, accuracy, seconds, positions per forward."""
    from diffusion_engine.structured import StructuredOutputError

    start = time.perf_counter()
    try:
        layout = generator.layout(schema)
        result = generator.generate(prompt, schema, params)
        text, steps = result.text, result.stats.get("denoiser_steps", 0)
        free = sum(len(p) for p in layout.slot_positions)
    except StructuredOutputError:
        text, steps, free = "", 0, 0
    seconds = time.perf_counter() - start
    tokens = len(tokenizer.encode(text, add_special_tokens=False))
    return {**scored(text, schema, task), "seconds": seconds, "tokens": tokens, "forwards": steps, "text": text,
            "value_positions_per_forward": free / steps if steps else 0.0,
            "output_tokens_per_forward": tokens / steps if steps else 0.0}


def run_ar(model, tokenizer, prompt: list[int], schema: dict, task: dict, max_tokens: int) -> dict:
    """AR + llguidance on ``model``: validity, accuracy, seconds, tokens (a cap hit mid-document
    counts as invalid)."""
    from diffusion_engine.structured import StructuredOutputError
    from diffusion_engine.structured.ar_constraint import constrained_generate

    start = time.perf_counter()
    try:
        text = constrained_generate(model, tokenizer, prompt, schema, max_tokens=max_tokens)
    except StructuredOutputError as exc:
        text = getattr(exc, "partial_text", "") or ""
    seconds = time.perf_counter() - start
    tokens = len(tokenizer.encode(text, add_special_tokens=False))
    return {**scored(text, schema, task), "seconds": seconds, "tokens": tokens, "forwards": tokens, "text": text}


def summarize(rows: list[dict]) -> dict:
    out = {}
    for method in ("ar", "ar_float32", "diffusion", "verified", "verified_skeleton"):
        items = [r[method] for r in rows if method in r]
        if not items:
            continue
        out[method] = {
            "valid_rate": sum(i["valid"] for i in items) / len(items),
            "field_accuracy": statistics.mean(i["accuracy"] for i in items),
            "seconds_per_task": statistics.mean(i["seconds"] for i in items),
            "tokens_per_forward": sum(i["tokens"] for i in items) / max(1, sum(i["forwards"] for i in items)),
        }
        if "source" in items[0]:
            out[method]["answered_by_ar"] = sum(i["source"] == "ar" for i in items) / len(items)
            if "identical_to_ar" in items[0]:
                out[method]["identical_to_ar_baseline"] = sum(i["identical_to_ar"] for i in items) / len(items)
    diffusion = [r["diffusion"] for r in rows if "diffusion" in r and r["diffusion"]["forwards"]]
    if diffusion:
        out["diffusion"]["value_positions_per_forward"] = statistics.mean(i["value_positions_per_forward"] for i in diffusion)
        out["diffusion"]["output_tokens_per_forward"] = statistics.mean(i["output_tokens_per_forward"] for i in diffusion)
    for baseline in ("ar", "ar_float32"):
        if baseline not in out:
            continue
        for method in ("diffusion", "verified", "verified_skeleton"):
            if method in out:
                out[method][f"wall_clock_speedup_vs_{baseline}"] = (out[baseline]["seconds_per_task"]
                                                                   / max(out[method]["seconds_per_task"], 1e-9))
                out[method][f"per_task_median_speedup_vs_{baseline}"] = statistics.median(
                    r[baseline]["seconds"] / max(r[method]["seconds"], 1e-9) for r in rows if method in r)
    if "ar" in out:
        for method in ("verified", "verified_skeleton"):
            if method in out:
                out[method]["by_ar_outcome"] = _by_ar_outcome(rows, method)
    return out


def _by_ar_outcome(rows: list[dict], method: str) -> dict:
    """Seconds and accuracy of ``method`` vs AR on the tasks AR finishes validly and on the rest
    (AR's runaway documents): where the speed-up comes from."""
    out = {}
    for name, group in (("ar_valid", [r for r in rows if r["ar"]["valid"]]),
                        ("ar_invalid", [r for r in rows if not r["ar"]["valid"]])):
        if not group:
            continue
        ar_s = statistics.mean(r["ar"]["seconds"] for r in group)
        m_s = statistics.mean(r[method]["seconds"] for r in group)
        out[name] = {"tasks": len(group), "ar_seconds": ar_s, "seconds": m_s, "speedup": ar_s / max(m_s, 1e-9),
                     "ar_accuracy": statistics.mean(r["ar"]["accuracy"] for r in group),
                     "accuracy": statistics.mean(r[method]["accuracy"] for r in group),
                     "answered_by_ar": sum(r[method]["source"] == "ar" for r in group),
                     "loop_cuts": sum(len(r[method]["loop_cuts"]) for r in group)}
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=None)
    ap.add_argument("--limit", type=int, default=60)
    ap.add_argument("--adapter", type=Path, default=None, help="default: the shipped adapter")
    ap.add_argument("--threshold", type=float, default=0.9)
    ap.add_argument("--ar-max-tokens", type=int, default=300)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--dtype", default=None, choices=["float32", "bfloat16"],
                    help="resident model dtype (default: what the gateway serves, TANDEM_EMBEDDED_DTYPE=auto)")
    ap.add_argument("--draft-len", type=int, default=16,
                    help="verified: tokens proposed per AR forward (16: the default policy's block_size)")
    ap.add_argument("--methods", default="ar,diffusion,verified,verified_skeleton")
    args = ap.parse_args(argv)
    args.data = args.data or default_data()
    result = run(args)
    out = ROOT / "runs" / "eval" / f"extract-{datetime.now(timezone.utc).strftime('%Y%m%dT%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result["summary"], indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
