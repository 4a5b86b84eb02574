"""Evaluate the task classifier: the labelled dev set, a short-prompt set, held-out families.

    python -m bench.route_eval [--dev PATH] [--short PATH] [--policy PATH] [--shape-only] [--show-errors]

For the dev set (``shared/eval/route_dev.jsonl``) and the short everyday prompts of
``bench/data/route_short.jsonl`` (written for evaluation, never trained on): accuracy per
label (and per family for the short set) as the gateway routes them, i.e. with the policy's
``router.min_confidence`` fallback applied, and without it; the confusion matrix; a
reliability table (confidence vs accuracy); per-request latency (p50/p99) of
``TaskClassifier.classify`` after a warmup. Then the head's own held-out figures (leave one
corpus template family out, from ``router/train_head.py``). Results also in
bench/results/route_eval.json.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

from router.types import TASKS

ROOT = Path(__file__).resolve().parents[1]


def default_dev_path() -> Path:
    """shared/eval/route_dev.jsonl: $TANDEM_SHARED, else shared/ in or beside the checkout."""
    candidates = [Path(os.environ["TANDEM_SHARED"])] if os.environ.get("TANDEM_SHARED") else []
    candidates += [ROOT / "shared", ROOT.parent / "shared"]
    for base in candidates:
        if (base / "eval" / "route_dev.jsonl").exists():
            return base / "eval" / "route_dev.jsonl"
    return candidates[0] / "eval" / "route_dev.jsonl"


def load_rows(path: Path) -> list[dict]:
    if not path.exists():
        raise SystemExit(f"dev set {path} not found; pass --dev or set TANDEM_SHARED")
    return [json.loads(line) for line in path.open() if line.strip()]


def evaluate(rows: list[dict], *, use_content: bool = True, classifier=None, policy=None) -> dict:
    """Classify every row; return accuracy, per-label accuracy, confusion and latencies.
    With ``policy``, its ``router.min_confidence`` fallback is applied (what the gateway
    routes); ``raw_accuracy`` is the classifier's alone."""
    from router.classifier import TaskClassifier

    clf = classifier or TaskClassifier()
    if use_content:
        clf.warmup()  # model loading happens once per process; keep it out of the timings
    confusion = {g: {p: 0 for p in TASKS} for g in TASKS}
    latencies, cpu_times, errors, raw_hits, calibration = [], [], [], 0, []
    families: dict[str, list[int]] = {}
    for row in rows:
        t0, c0 = time.perf_counter(), time.thread_time()
        raw = clf.classify(row["request"], use_content=use_content)
        latencies.append((time.perf_counter() - t0) * 1000)
        cpu_times.append((time.thread_time() - c0) * 1000)
        result = policy._confident(raw) if policy is not None else raw
        raw_hits += raw.task == row["label"]
        if raw.confidence is not None:
            calibration.append((raw.confidence, raw.task == row["label"]))
        family = families.setdefault(row.get("family", row["label"]), [0, 0])
        family[0] += result.task == row["label"]
        family[1] += 1
        confusion[row["label"]][result.task] += 1
        if result.task != row["label"]:
            errors.append({"id": row["id"], "label": row["label"], "got": result.task,
                           "reasons": list(result.reasons), "note": row.get("note", "")})
    per_label = {g: (confusion[g][g] / n if (n := sum(confusion[g].values())) else float("nan"), n)
                 for g in TASKS}
    correct = sum(confusion[g][g] for g in TASKS)
    lat, cpu = np.asarray(latencies), np.asarray(cpu_times)
    return {"accuracy": correct / len(rows), "raw_accuracy": raw_hits / len(rows), "n": len(rows),
            "per_label": per_label, "families": {f: (h / n, n) for f, (h, n) in families.items()},
            "reliability": reliability(calibration), "confusion": confusion, "errors": errors,
            "p50_ms": float(np.percentile(lat, 50)), "p99_ms": float(np.percentile(lat, 99)),
            "max_ms": float(lat.max()), "cpu_p50_ms": float(np.percentile(cpu, 50)),
            "cpu_p99_ms": float(np.percentile(cpu, 99)), "torch_threads": _torch_threads(),
            "content_error": getattr(clf, "content_error", None)}


def reliability(pairs: list[tuple[float, bool]]) -> list[dict]:
    """Confidence bins: how many content-model verdicts, their mean confidence, how many right."""
    from router.train_head import BINS

    rows = []
    for low, high in zip(BINS, BINS[1:]):
        inside = [(c, ok) for c, ok in pairs if low <= c < high or (high == 1 and c == 1)]
        if inside:
            rows.append({"bin": f"{low:.1f}-{high:.1f}", "n": len(inside),
                         "mean_confidence": round(sum(c for c, _ in inside) / len(inside), 3),
                         "accuracy": round(sum(ok for _, ok in inside) / len(inside), 3)})
    return rows


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def print_report(result: dict, show_errors: bool) -> None:
    print(f"overall accuracy: {result['accuracy']:.3f} ({result['n']} requests; "
          f"classifier alone, without the min_confidence fallback: {result['raw_accuracy']:.3f})")
    print("\nper label:")
    for label, (acc, n) in result["per_label"].items():
        print(f"  {label:<11} {acc:6.3f}  (n={n})")
    if set(result["families"]) - set(TASKS):
        print("\nper family:")
        for family, (acc, n) in result["families"].items():
            print(f"  {family:<16} {acc:6.3f}  (n={n})")
    print("\nreliability of the content model's verdicts (confidence bin: n, mean confidence, accuracy):")
    for row in result["reliability"]:
        print(f"  {row['bin']}: n={row['n']:3d} confidence {row['mean_confidence']:.3f} accuracy {row['accuracy']:.3f}")
    print("\nconfusion (rows = gold, columns = predicted):")
    print(" " * 12 + "".join(f"{p:>11}" for p in TASKS))
    for gold in TASKS:
        print(f"  {gold:<10}" + "".join(f"{result['confusion'][gold][p]:>11}" for p in TASKS))
    print(f"\nlatency per classify (wall): p50 {result['p50_ms']:.1f} ms, p99 {result['p99_ms']:.1f} ms, "
          f"max {result['max_ms']:.1f} ms")
    # CPU time of the calling thread: what the work costs when other processes are not
    # competing for the cores (with torch intra-op threads > 1 it undercounts).
    print(f"cpu time per classify: p50 {result['cpu_p50_ms']:.1f} ms, p99 {result['cpu_p99_ms']:.1f} ms "
          f"(torch threads {result['torch_threads']}, load average {os.getloadavg()[0]:.1f})")
    if result["content_error"]:
        print(f"WARNING content stage unavailable: {result['content_error']}")
    if show_errors:
        print("\nerrors:")
        for e in result["errors"]:
            print(f"  {e['id']} gold={e['label']} got={e['got']} | {'; '.join(e['reasons'])} | {e['note']}")


def head_meta() -> dict:
    import numpy as np

    from router.content import DEFAULT_HEAD_PATH

    with np.load(DEFAULT_HEAD_PATH, allow_pickle=False) as z:
        return json.loads(str(z["meta"]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dev", type=Path, default=None, help="default: shared/eval/route_dev.jsonl")
    ap.add_argument("--short", type=Path, default=ROOT / "bench" / "data" / "route_short.jsonl")
    ap.add_argument("--policy", type=Path, default=ROOT / "policies" / "default.yaml",
                    help="whose router.min_confidence / fallback_task apply")
    ap.add_argument("--shape-only", action="store_true", help="use_content=False")
    ap.add_argument("--show-errors", action="store_true")
    args = ap.parse_args()
    for var, value in (("HF_HUB_OFFLINE", "1"), ("TRANSFORMERS_OFFLINE", "1")):
        os.environ.setdefault(var, value)
    from router.classifier import TaskClassifier
    from router.policy import load_policy

    policy, classifier = load_policy(args.policy), TaskClassifier()
    print(f"router.min_confidence {policy.router.min_confidence:g}, fallback task {policy.router.fallback_task!r}")
    report = {}
    for name, path in (("dev", args.dev or default_dev_path()), ("short", args.short)):
        print(f"\n=== {name}: {path} ===")
        result = evaluate(load_rows(path), use_content=not args.shape_only, classifier=classifier, policy=policy)
        print_report(result, args.show_errors)
        report[name] = {k: v for k, v in result.items() if k != "errors"}
    meta = head_meta()
    print(f"\n=== head, held-out corpus template families ({meta['template_families']} families) ===")
    print(f"leave-one-family-out accuracy {meta['leave_one_family_out_acc']:.3f}, random holdout "
          f"{meta['random_holdout_acc']:.3f}, temperature {meta.get('temperature', 1.0):g}, best min_confidence "
          f"{meta.get('best_min_confidence', 'n/a')} (held-out accuracy with the fallback "
          f"{meta.get('held_out_acc_with_fallback', float('nan')):.3f})")
    for row in meta.get("reliability_calibrated", []):
        print(f"  {row['bin']}: n={row['n']:4d} confidence {row['mean_confidence']:.3f} accuracy {row['accuracy']:.3f}")
    report["head"] = meta
    out = ROOT / "bench" / "results" / "route_eval.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1, default=str))


if __name__ == "__main__":
    main()
