"""Free-text evaluation of the SmolLM2 block-diffusion adapter against AR on the same CPU.

    python -m diffusion_engine.eval [--adapter PATH] [--max-tokens 128] [--threads 1]

For each prompt of a fixed list (written for this eval, not drawn from training data):

* **AR**: greedy decoding of the base model (adapter off), one forward per token.
* **diffusion**: ``DiffusionEngine.generate`` over :class:`SmolLM2BlockDenoiser`, greedy,
  confidence-threshold acceptance, for each (threshold, canvas size) setting.
* **verified**: the ``verified`` rule (lookups or the adapter draft a canvas, the AR base
  keeps the agreeing prefix) for each draft canvas size and draft source (``--drafts``:
  ``adapter`` gated, ``lookup`` only); also reports how many outputs equal AR's greedy
  output token for token, and draft tokens kept per round.

``--set edit`` asks for edits that copy their input; ``--set infill`` cuts 1-2 lines out of
held-out functions (installed ``jsonschema`` and ``yaml`` sources; training used the stdlib)
and also scores the answers against the missing lines (``infill_scores``).

Reported per setting: tokens per forward (canvas forwards, and canvas + commit forwards),
wall-clock tokens/s, and fluency as the AR model's perplexity of the output given the
prompt (geometric mean over prompts; AR's own greedy outputs are the reference, so
``ppl_ratio`` = diffusion / AR). Also AR's own confidence: its top-1 probability on the tokens
it chose (mean, and the share above 0.5 / 0.7 / 0.9), the rate at which a denoiser no better
than AR would pass a threshold at the first canvas position. Results go to
``runs/eval/<stamp>.json`` and a markdown table to stdout.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

PROMPTS = [
    "Tell me about the life cycle of a butterfly.",
    "How do I make a good cup of tea?",
    "Write a short poem about autumn leaves.",
    "What is the difference between weather and climate?",
    "Give me some advice for my first day at a new job.",
    "Why do cats purr?",
    "Describe a peaceful morning at the beach.",
    "What are the advantages of learning to play a musical instrument?",
    "Explain what a computer program is.",
    "Suggest a few ideas for a rainy weekend at home.",
    "How can I save water at home?",
    "What makes a good friend?",
]

#: ``--set edit``: answers that mostly copy their input (where prompt lookup drafts help)
EDIT_PROMPTS = [
    "Fix the spelling mistakes in this text:\nThe libary opens at nine oclock every mornng, and the "
    "childrens section has new books evry week.",
    "Rewrite this text in uppercase:\nPlease bring your ticket and a photo ID to the front desk.",
    "Replace the word \"quick\" with \"fast\" in this text:\nThe quick train left the station before "
    "the quick bus arrived at the quick stop.",
    "Add a docstring to this Python function and return the whole function:\n"
    "def area(width, height):\n    return width * height",
    "Remove every occurrence of the word \"very\" from this text:\nIt was a very cold and very windy day, "
    "so we stayed inside and read very old books.",
    "Correct the grammar of this sentence:\nShe don't like apples, but her brothers likes them very much.",
]
PROMPT_SETS = {"free": PROMPTS, "edit": EDIT_PROMPTS, "infill": None}
#: ``--set infill``: held-out code, never in training (which cut functions from the stdlib)
INFILL_PACKAGES = ("jsonschema", "yaml")


def infill_tasks(n: int, seed: int = 1234) -> list[tuple[str, str]]:
    """``n`` (prompt, missing lines) pairs: functions of ``INFILL_PACKAGES`` with 1-2 lines cut
    out, asked in the training's format (``training.data.infill_pair``)."""
    import importlib.util
    import random

    from diffusion_engine.training.data import functions_in, infill_pair

    funcs = []
    for package in INFILL_PACKAGES:
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise FileNotFoundError(f"--set infill reads the sources of {package!r}; install it (make install)")
        funcs += [f for path in sorted(Path(spec.submodule_search_locations[0]).rglob("*.py")) for f in functions_in(path)]
    rng = random.Random(seed)
    rng.shuffle(funcs)
    pairs = (infill_pair(body, rng, max_span=2) for body in funcs)
    return [(p.instruction, p.answer) for p in pairs if p is not None][:n]


def code_lines(text: str) -> list[str]:
    """Non-blank lines without indentation or a Markdown code fence: what infill answers are compared on."""
    return [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("```")]


def infill_scores(answer: str, reference: str) -> dict[str, float]:
    """``exact``: the answer's code lines are the missing ones; ``contains``: they all appear in
    the answer (fair to a model that rewrites the whole function); ``similarity``: difflib ratio
    of the answer's first lines to the missing ones."""
    import difflib

    got, want = code_lines(answer), code_lines(reference)
    return {"exact": float(got == want), "contains": float(all(line in got for line in want)),
            "similarity": difflib.SequenceMatcher(None, "\n".join(got[: len(want)]), "\n".join(want)).ratio()}


def eval_tasks(name: str, limit: int, prompts_file: Path | None = None) -> list[tuple[str, str | None]]:
    """(prompt, reference or None) pairs of a set, or one prompt per line of ``prompts_file``."""
    if prompts_file is not None:
        prompts = [line for line in prompts_file.read_text().splitlines() if line.strip()]
    elif name == "infill":
        return infill_tasks(limit or 24)
    else:
        prompts = PROMPT_SETS[name]
    return [(p, None) for p in (prompts[:limit] if limit else prompts)]


def chat_ids(tokenizer, text: str) -> list[int]:
    rendered = tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=False,
                                             add_generation_prompt=True)
    return tokenizer(rendered, add_special_tokens=False)["input_ids"]


@torch.inference_mode()
def ar_generate(model, prompt: list[int], max_tokens: int, eos: set[int]) -> tuple[list[int], int, float]:
    """Greedy AR with a KV cache; returns (tokens, forwards, seconds)."""
    from transformers import DynamicCache

    t0 = time.perf_counter()
    cache = DynamicCache()
    ids = torch.tensor([prompt])
    out: list[int] = []
    forwards = 0
    for _ in range(max_tokens):
        logits = model(input_ids=ids, cache=cache, use_cache=True).logits[0, -1]
        forwards += 1
        tok = int(logits.argmax())
        if tok in eos:
            break
        out.append(tok)
        ids = torch.tensor([[tok]])
    return out, forwards, time.perf_counter() - t0


@torch.inference_mode()
def ar_scores(model, prompt: list[int], answer: list[int], end_id: int) -> tuple[float, list[float]]:
    """From one forward (adapter must be off): AR perplexity of ``answer`` + end-of-turn given
    ``prompt``, and AR's top-1 probability at each answer position -- how sure the AR model is of
    the tokens it chose (a denoiser as good as AR passes a confidence threshold about as often at
    the first canvas position)."""
    target = answer + [end_id]
    ids = torch.tensor([prompt + target])
    logits = model(input_ids=ids).logits[0, len(prompt) - 1 : -1].float()
    nll = torch.nn.functional.cross_entropy(logits, torch.tensor(target))
    top1 = torch.softmax(logits[: len(answer)], -1).max(-1).values.tolist()
    return math.exp(float(nll)), top1


def ar_perplexity(model, prompt: list[int], answer: list[int], end_id: int) -> float:
    """AR perplexity of ``answer`` + end-of-turn given ``prompt`` (adapter must be off)."""
    return ar_scores(model, prompt, answer, end_id)[0]


def timed_generation(engine, prompt: list[int], params, eos: set[int], end_id: int):
    """``(result, answer tokens without EOS, seconds, AR perplexity of the answer)`` of one
    engine generation; the perplexity is measured with the adapter off."""
    t0 = time.perf_counter()
    res = engine.generate(prompt, params)
    seconds = time.perf_counter() - t0
    toks = [t for t in res.token_ids if t not in eos]
    with engine.denoiser.adapter_off() as base:
        ppl = ar_perplexity(base, prompt, toks, end_id) if toks else float("inf")
    return res, toks, seconds, ppl


def distinct_ratio(tokens: list[int], n: int = 3) -> float:
    """Share of distinct n-grams: low values flag loops."""
    grams = [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 1.0


def geo_mean(xs: list[float]) -> float:
    return math.exp(sum(math.log(x) for x in xs) / len(xs)) if xs else float("nan")


def run(args: argparse.Namespace) -> dict:
    from diffusion_engine.adapters.smollm2_block import SmolLM2BlockDenoiser
    from diffusion_engine.embedded import embedded_dtype, load_smollm2
    from diffusion_engine.engine import DiffusionEngine, GenerationParams

    torch.set_num_threads(args.threads)
    dtype = embedded_dtype(args.dtype)
    model, tokenizer = load_smollm2(dtype)
    denoiser = SmolLM2BlockDenoiser.load(args.adapter, dtype=dtype, model=model)
    engine = DiffusionEngine(denoiser)
    end_id = tokenizer.convert_tokens_to_ids("<|im_end|>")
    eos = set(denoiser.eos_token_ids) | {end_id}
    tasks = eval_tasks(args.set, args.limit, args.prompts)
    settings = [(float(t), int(c)) for t in args.thresholds.split(",") if t for c in args.canvas.split(",")]

    rows: dict[str, list[dict]] = {"ar": []}

    def scored(row: dict) -> dict:  # tasks with a reference answer: how close the code lines are
        if reference is not None:
            row.update(infill_scores(row["text"], reference))
        return row

    for text, reference in tasks:
        prompt = chat_ids(tokenizer, text)
        with denoiser.adapter_off() as base:
            toks, fwd, sec = ar_generate(base, prompt, args.max_tokens, eos)
            ppl, top1 = ar_scores(base, prompt, toks, end_id)
        rows["ar"].append(scored({"prompt": text, "tokens": len(toks), "token_ids": toks, "forwards": fwd,
                                  "seconds": sec, "ppl": ppl, "top1": top1, "distinct3": distinct_ratio(toks),
                                  "text": tokenizer.decode(toks)}))
        for thr, canvas in settings:
            params = GenerationParams(max_tokens=args.max_tokens, temperature=0.0, rule="threshold",
                                      threshold=thr, block_size=canvas)
            res, toks, sec, ppl = timed_generation(engine, prompt, params, eos, end_id)
            commits = max(0, res.stats.blocks - 1)  # every finished block but the last is committed
            rows.setdefault(f"diffusion t={thr} c={canvas}", []).append(scored({
                "prompt": text, "tokens": len(toks), "forwards": res.stats.steps, "commit_forwards": commits,
                "seconds": sec, "ppl": ppl, "distinct3": distinct_ratio(toks), "finish": res.finish_reason,
                "text": tokenizer.decode(toks)}))
        for canvas, drafts in [(int(c), s) for c in args.verified.split(",") if c for s in args.drafts.split(",") if s]:
            params = GenerationParams(max_tokens=args.max_tokens, temperature=0.0, rule="verified", block_size=canvas,
                                      adapter_drafts=drafts == "adapter")
            res, toks, sec, ppl = timed_generation(engine, prompt, params, eos, end_id)
            name = f"verified c={canvas}" + (" lookup-only" if drafts == "lookup" else "")
            rows.setdefault(name, []).append(scored({
                "prompt": text, "tokens": len(toks), "forwards": res.stats.steps, "rounds": res.stats.blocks,
                "drafted": res.stats.drafted, "draft_accepted": res.stats.draft_accepted,
                "identical_to_ar": toks == rows["ar"][-1]["token_ids"], "seconds": sec, "ppl": ppl,
                "distinct3": distinct_ratio(toks), "finish": res.finish_reason, "text": tokenizer.decode(toks)}))
        print(f"done: {text.splitlines()[0][:60]}", flush=True)
    summary = {name: summarize(r) for name, r in rows.items()}
    top1 = [p for r in rows["ar"] for p in r["top1"]]
    summary["ar"]["top1_mean"] = sum(top1) / len(top1) if top1 else 0.0
    summary["ar"]["top1_share_over"] = {str(t): sum(p > t for p in top1) / len(top1) if top1 else 0.0
                                        for t in (0.5, 0.7, 0.9)}
    ar_ppl = summary["ar"]["ppl_geo"]
    for s in summary.values():
        s["ppl_ratio"] = s["ppl_geo"] / ar_ppl
        s["speedup_vs_ar"] = s["tokens_per_s"] / summary["ar"]["tokens_per_s"]
    return {"when": datetime.now(timezone.utc).isoformat(timespec="seconds"), "adapter": str(args.adapter or "shipped"),
            "dtype": str(dtype).removeprefix("torch."), "threads": args.threads, "set": str(args.prompts or args.set), "max_tokens": args.max_tokens,
            "cpu_load_note": "shared 2-core machine; absolute tokens/s are noisy, compare rows of one run",
            "summary": summary, "rows": rows}


def summarize(rows: list[dict]) -> dict:
    tokens = sum(r["tokens"] for r in rows)
    forwards = sum(r["forwards"] for r in rows)
    commits = sum(r.get("commit_forwards", 0) for r in rows)
    seconds = sum(r["seconds"] for r in rows)
    finite = [r["ppl"] for r in rows if math.isfinite(r["ppl"])]
    out = {"tokens": tokens, "tokens_per_forward": tokens / forwards if forwards else 0.0,
            "tokens_per_forward_incl_commits": tokens / (forwards + commits) if forwards else 0.0,
            "tokens_per_s": tokens / seconds if seconds else 0.0, "ppl_geo": geo_mean(finite),
            "empty_outputs": sum(r["tokens"] == 0 for r in rows),
            "distinct3_mean": sum(r["distinct3"] for r in rows) / len(rows)}
    for score in ("exact", "contains", "similarity"):
        if rows and score in rows[0]:
            out[score] = sum(r[score] for r in rows) / len(rows)
    if rows and "rounds" in rows[0]:
        rounds = sum(r["rounds"] for r in rows)
        out["tokens_per_round"] = tokens / rounds if rounds else 0.0
        out["draft_kept_per_round"] = sum(r["draft_accepted"] for r in rows) / rounds if rounds else 0.0
        out["identical_to_ar"] = f"{sum(r['identical_to_ar'] for r in rows)}/{len(rows)}"
    return out


def markdown(result: dict) -> str:
    lines = ["| setting | tokens/forward | (incl. commits) | tokens/s | speed vs AR | AR ppl (geo) | ppl ratio | distinct-3 |",
             "|---|---|---|---|---|---|---|---|"]
    for name, s in result["summary"].items():
        lines.append(f"| {name} | {s['tokens_per_forward']:.2f} | {s['tokens_per_forward_incl_commits']:.2f} | "
                     f"{s['tokens_per_s']:.1f} | {s['speedup_vs_ar']:.2f}x | {s['ppl_geo']:.2f} | "
                     f"{s['ppl_ratio']:.2f} | {s['distinct3_mean']:.2f} |")
    if all("exact" in s for s in result["summary"].values()):
        lines += ["", "| setting | exact (missing lines) | contained in the answer | similarity |", "|---|---|---|---|"]
        lines += [f"| {n} | {s['exact']:.1%} | {s['contains']:.1%} | {s['similarity']:.2f} |"
                  for n, s in result["summary"].items()]
    ar = result["summary"]["ar"]
    if "top1_mean" in ar:
        over = ", ".join(f"> {t}: {share:.0%}" for t, share in ar["top1_share_over"].items())
        lines += ["", f"AR's top-1 probability on its own greedy tokens: mean {ar['top1_mean']:.2f}; {over}"]
    verified = {n: s for n, s in result["summary"].items() if "tokens_per_round" in s}
    if verified:
        lines += ["", "| verified | tokens/round | draft kept/round | identical to AR greedy |", "|---|---|---|---|"]
        lines += [f"| {n} | {s['tokens_per_round']:.2f} | {s['draft_kept_per_round']:.2f} | {s['identical_to_ar']} |"
                  for n, s in verified.items()]
    return "\n".join(lines)


def drafts_arg(value: str) -> str:
    unknown = {s for s in value.split(",") if s} - {"adapter", "lookup"}
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown draft source(s) {sorted(unknown)}: use adapter, lookup")
    return value


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--adapter", type=Path, default=None, help="adapter folder (default: the shipped one)")
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--thresholds", default="0.9,0.7", help="comma-separated confidence thresholds")
    ap.add_argument("--canvas", default="32", help="comma-separated canvas (sub-block) sizes")
    ap.add_argument("--verified", default="8,16", help="comma-separated draft sizes of the verified rule ('' = none)")
    ap.add_argument("--drafts", default="adapter,lookup", type=drafts_arg,
                    help="draft sources of the verified rule, comma-separated: adapter (the adapter drafts where "
                         "no lookup matches, gated) and/or lookup (lookups only, the default policy's setting)")
    ap.add_argument("--dtype", default=None, choices=["bfloat16", "float32"],
                    help="resident model dtype (default: what the gateway serves, TANDEM_EMBEDDED_DTYPE=auto)")
    ap.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "1")))
    ap.add_argument("--limit", type=int, default=0, help="first N prompts only")
    ap.add_argument("--set", default="free", choices=sorted(PROMPT_SETS),
                    help="free: open-ended prompts; edit: answers that copy their input; "
                         "infill: held-out code with lines cut out, scored against the missing lines")
    ap.add_argument("--prompts", type=Path, default=None,
                    help="a file of prompts, one per line, instead of --set (e.g. a training run's own instructions)")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    result = run(args)
    out = args.out or Path("runs/eval") / f"{datetime.now(timezone.utc):%Y%m%dT%H%M%S}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(markdown(result))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
