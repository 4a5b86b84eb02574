"""Schema coverage of the skeleton compiler vs llguidance on JSONSchemaBench.

    python -m bench.schema_coverage --limit 100

Per subset of /work/shared/jsonschemabench: coverage (% of schemas that compile), validity
of documents rendered from random allowed slot fillings (must be 100% of compiled),
compile time (cold skeleton compile, cold compile+layout, cached lookup), and beside it
llguidance's and XGrammar's coverage and grammar compile time on the same schemas. XGrammar
is bench-only (``make bench`` installs it with ``--no-deps``: its Linux wheel requires triton,
~1 GB, which its CPU compiler does not use); without it the column says so.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
import time
from collections import Counter
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from jsonschema import Draft202012Validator, FormatChecker  # noqa: E402

from diffusion_engine.structured.ar_constraint import ll_tokenizer, llguidance_error  # noqa: E402
from diffusion_engine.structured.compiler import CompileOptions, _Compiler, schema_digest  # noqa: E402
from diffusion_engine.structured.errors import StructuredOutputError, UnsupportedSchemaError  # noqa: E402
from diffusion_engine.structured.fillers import random_allowed_filling  # noqa: E402
from diffusion_engine.structured.layout import build_layout, layout_for  # noqa: E402
from diffusion_engine.structured.render import render  # noqa: E402
from diffusion_engine.structured.tokenizer_source import smollm2_tokenizer  # noqa: E402
from diffusion_engine.structured.vocab import slot_vocab  # noqa: E402

ROOT = Path("/work/shared/jsonschemabench")
SUBSETS = ["Glaiveai2K", "Github_trivial", "Github_easy", "Snowplow"]


def pct(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q / 100 * (len(xs) - 1))))]


def xgrammar_compiler(tokenizer):
    """XGrammar's grammar compiler for ``tokenizer`` (None when xgrammar is not installed).
    Its cache is off so that every schema is compiled cold, as llguidance's are."""
    try:
        import xgrammar as xgr
    except ImportError:
        return None
    info = xgr.TokenizerInfo.from_huggingface(tokenizer, vocab_size=len(tokenizer))
    return xgr.GrammarCompiler(info, max_threads=1, cache_enabled=False)


def xgrammar_error(compiler, schema: dict) -> tuple[str | None, bool]:
    """``(None, relaxed)`` when XGrammar compiles ``schema`` (token masks included), else
    ``(why not, False)``. ``relaxed``: XGrammar warned that it ignores part of the schema
    ("pattern combined with minLength/maxLength is not supported; ignoring ...", "oneOf ...
    falling back to anyOf"), so its grammar accepts documents the schema rejects. The
    warnings come from C++ on file descriptor 2, hence the descriptor-level capture."""
    with tempfile.TemporaryFile() as captured:
        saved = os.dup(2)
        os.dup2(captured.fileno(), 2)
        try:
            compiler.compile_json_schema(json.dumps(schema))
        except Exception as exc:  # xgrammar raises RuntimeError / ValueError subclasses per problem
            return f"{type(exc).__name__}: {exc}", False
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        captured.seek(0)
        return None, b"Warning" in captured.read()


def run_subset(name: str, limit: int, fills: int, tokenizer, seed: int, options: CompileOptions,
               xgrammar=None) -> dict:
    files = sorted((ROOT / name).glob("*.json"))
    random.Random(seed).shuffle(files)
    files = files[:limit]
    vocab = slot_vocab(tokenizer)
    checker = FormatChecker()
    rng = random.Random(seed)
    r = Counter()
    unsupported: Counter = Counter()
    failures: list[str] = []
    t_compile, t_layout, t_cached, t_ll, t_xg = [], [], [], [], []
    for path in files:
        try:
            schema = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            r["unreadable"] += 1
            continue
        r["schemas"] += 1
        t0 = time.perf_counter()
        err = llguidance_error(tokenizer, schema)
        t_ll.append((time.perf_counter() - t0) * 1e3)
        r["llguidance_ok"] += err is None
        if xgrammar is not None:
            t0 = time.perf_counter()
            xg_err, relaxed = xgrammar_error(xgrammar, schema)
            r["xgrammar_ok"] += xg_err is None
            r["xgrammar_relaxed"] += relaxed
            t_xg.append((time.perf_counter() - t0) * 1e3)
        try:
            t0 = time.perf_counter()
            skeleton = _Compiler(schema, options).run(schema_digest(schema))
            t1 = time.perf_counter()
            layout = build_layout(skeleton, vocab)
            t2 = time.perf_counter()
        except UnsupportedSchemaError as exc:
            unsupported[exc.keyword] += 1
            continue
        except RecursionError:
            unsupported["<recursion>"] += 1
            continue
        except Exception as exc:  # a compiler bug, not a refusal: report it loudly
            r["crashed"] += 1
            failures.append(f"{path.name}: compile crash {type(exc).__name__}: {exc}")
            continue
        t_compile.append((t1 - t0) * 1e3)
        t_layout.append((t2 - t0) * 1e3)
        layout_for(schema, tokenizer, options=options)  # warm the cache, then time a hit
        t0 = time.perf_counter()
        layout_for(schema, tokenizer, options=options)
        t_cached.append((time.perf_counter() - t0) * 1e3)
        r["compiled"] += 1
        r["canvas_tokens"] += len(layout)
        try:
            validator = Draft202012Validator(schema, format_checker=checker)
            ok_all = True
            for _ in range(fills):
                filled = random_allowed_filling(layout, rng, pad_bias=rng.random())
                first = render(layout, filled)
                r["fills"] += 1
                r["fills_no_repair_needed"] += not first.issues
                try:
                    value = render(layout, filled, repair=True).value
                except StructuredOutputError as exc:
                    ok_all = False
                    failures.append(f"{path.name}: repair failed: {exc}")
                    break
                if not validator.is_valid(value):
                    ok_all = False
                    e = next(iter(validator.iter_errors(value)))
                    failures.append(f"{path.name}: invalid at /{'/'.join(map(str, e.absolute_path))}: "
                                    f"{e.message[:120]}")
                    break
            r["valid"] += ok_all
        except Exception as exc:  # the reference validator itself may reject odd schemas
            r["validator_error"] += 1
            failures.append(f"{path.name}: validator error {type(exc).__name__}: {str(exc)[:120]}")
    n = max(1, r["schemas"])
    return {
        "subset": name, "schemas": r["schemas"], "compiled": r["compiled"],
        "coverage_pct": 100 * r["compiled"] / n,
        "valid_of_compiled_pct": 100 * r["valid"] / max(1, r["compiled"]),
        "fills_without_repair_pct": 100 * r["fills_no_repair_needed"] / max(1, r["fills"]),
        "crashed": r["crashed"], "validator_error": r["validator_error"],
        "mean_canvas_tokens": r["canvas_tokens"] / max(1, r["compiled"]),
        "compile_ms_p50": pct(t_compile, 50), "compile_ms_p99": pct(t_compile, 99),
        "compile_layout_ms_p50": pct(t_layout, 50), "compile_layout_ms_p99": pct(t_layout, 99),
        "cached_ms_p50": pct(t_cached, 50), "cached_ms_p99": pct(t_cached, 99),
        "llguidance_coverage_pct": 100 * r["llguidance_ok"] / n,
        "llguidance_ms_p50": pct(t_ll, 50), "llguidance_ms_p99": pct(t_ll, 99),
        "xgrammar_coverage_pct": 100 * r["xgrammar_ok"] / n if xgrammar is not None else None,
        "xgrammar_relaxed_pct": 100 * r["xgrammar_relaxed"] / n if xgrammar is not None else None,
        "xgrammar_ms_p50": pct(t_xg, 50), "xgrammar_ms_p99": pct(t_xg, 99),
        "unsupported": dict(unsupported.most_common()), "failures": failures[:20],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--limit", type=int, default=50, help="schemas per subset (random sample, seeded)")
    ap.add_argument("--fills", type=int, default=5, help="random allowed fillings per compiled schema")
    ap.add_argument("--subsets", nargs="*", default=SUBSETS)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--overlapping-oneof", action="store_true",
                    help="accept overlapping oneOf (exactly-one checked at render; may fail at run time)")
    ap.add_argument("--out", default="bench/results/schema_coverage.json")
    args = ap.parse_args()

    tokenizer = smollm2_tokenizer()
    t0 = time.perf_counter()
    slot_vocab(tokenizer)
    vocab_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    ll_tokenizer(tokenizer)
    ll_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    xgrammar = xgrammar_compiler(tokenizer)
    xg_s = time.perf_counter() - t0
    xgrammar_note = (f"tokenizer {xg_s:.2f}s" if xgrammar is not None
                     else "skipped: xgrammar is not installed (make bench installs it)")

    options = CompileOptions(overlapping_one_of=args.overlapping_oneof)
    results = [run_subset(s, args.limit, args.fills, tokenizer, args.seed, options, xgrammar)
               for s in args.subsets]
    print(f"one-time per tokenizer: slot masks {vocab_s:.2f}s, llguidance tokenizer {ll_s:.2f}s; "
          f"XGrammar {xgrammar_note}")
    head = (f"{'subset':15} {'n':>4} {'cover%':>7} {'valid%':>7} {'norepair%':>9} {'canvas':>7} "
            f"{'cmp p50/p99 ms':>15} {'+layout p50/p99':>16} {'cached p50':>10} {'llg cover%':>10} "
            f"{'llg p50/p99 ms':>15} {'xgr cover%':>10} {'relaxed%':>8} {'xgr p50/p99 ms':>15}")
    print(head)
    for r in results:
        print(f"{r['subset']:15} {r['schemas']:>4} {r['coverage_pct']:>7.1f} {r['valid_of_compiled_pct']:>7.1f} "
              f"{r['fills_without_repair_pct']:>9.1f} {r['mean_canvas_tokens']:>7.0f} "
              f"{r['compile_ms_p50']:>7.2f}/{r['compile_ms_p99']:<7.2f} "
              f"{r['compile_layout_ms_p50']:>7.2f}/{r['compile_layout_ms_p99']:<8.2f} "
              f"{r['cached_ms_p50']:>10.3f} {r['llguidance_coverage_pct']:>10.1f} "
              f"{r['llguidance_ms_p50']:>7.2f}/{r['llguidance_ms_p99']:<7.2f} "
              + (f"{r['xgrammar_coverage_pct']:>10.1f} {r['xgrammar_relaxed_pct']:>8.1f} "
                 f"{r['xgrammar_ms_p50']:>7.2f}/{r['xgrammar_ms_p99']:<7.2f}"
                 if r["xgrammar_coverage_pct"] is not None else f"{'-':>10} {'-':>8} {'-':>15}"))
    for r in results:
        if r["unsupported"]:
            print(f"  {r['subset']} refused by keyword: {r['unsupported']}")
        for f in r["failures"]:
            print(f"  {r['subset']} FAIL {f}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"args": vars(args), "xgrammar": xgrammar_note, "results": results}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
