"""Evaluate the task classifier on the labelled dev set.

    python -m bench.route_eval [--dev PATH] [--shape-only] [--show-errors]

Prints accuracy per label, the confusion matrix and per-request latency (p50/p99) of
``TaskClassifier.classify`` after a warmup (model loading is excluded; it happens once
per process).
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


def evaluate(rows: list[dict], *, use_content: bool = True, classifier=None) -> dict:
    """Classify every row; return accuracy, per-label accuracy, confusion and latencies."""
    from router.classifier import TaskClassifier

    clf = classifier or TaskClassifier()
    if use_content:
        clf.warmup()  # model loading happens once per process; keep it out of the timings
    confusion = {g: {p: 0 for p in TASKS} for g in TASKS}
    latencies, cpu_times, errors = [], [], []
    for row in rows:
        t0, c0 = time.perf_counter(), time.thread_time()
        result = clf.classify(row["request"], use_content=use_content)
        latencies.append((time.perf_counter() - t0) * 1000)
        cpu_times.append((time.thread_time() - c0) * 1000)
        confusion[row["label"]][result.task] += 1
        if result.task != row["label"]:
            errors.append({"id": row["id"], "label": row["label"], "got": result.task,
                           "reasons": list(result.reasons), "note": row.get("note", "")})
    per_label = {g: (confusion[g][g] / n if (n := sum(confusion[g].values())) else float("nan"), n)
                 for g in TASKS}
    correct = sum(confusion[g][g] for g in TASKS)
    lat, cpu = np.asarray(latencies), np.asarray(cpu_times)
    return {"accuracy": correct / len(rows), "n": len(rows), "per_label": per_label,
            "confusion": confusion, "errors": errors,
            "p50_ms": float(np.percentile(lat, 50)), "p99_ms": float(np.percentile(lat, 99)),
            "max_ms": float(lat.max()), "cpu_p50_ms": float(np.percentile(cpu, 50)),
            "cpu_p99_ms": float(np.percentile(cpu, 99)), "torch_threads": _torch_threads(),
            "content_error": getattr(clf, "content_error", None)}


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def print_report(result: dict, show_errors: bool) -> None:
    print(f"overall accuracy: {result['accuracy']:.3f} ({result['n']} requests)")
    print("\nper label:")
    for label, (acc, n) in result["per_label"].items():
        print(f"  {label:<11} {acc:6.3f}  (n={n})")
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dev", type=Path, default=None, help="default: shared/eval/route_dev.jsonl")
    ap.add_argument("--shape-only", action="store_true", help="use_content=False")
    ap.add_argument("--show-errors", action="store_true")
    args = ap.parse_args()
    for var, value in (("HF_HUB_OFFLINE", "1"), ("TRANSFORMERS_OFFLINE", "1")):
        os.environ.setdefault(var, value)
    result = evaluate(load_rows(args.dev or default_dev_path()), use_content=not args.shape_only)
    print_report(result, args.show_errors)


if __name__ == "__main__":
    main()
