"""Train the content head on the synthetic corpus and save ``router/content_head.npz``.

    python -m router.data.make_train      # writes router/data/train.jsonl
    python -m router.train_head           # embeds it, fits the head, saves the npz

Only ``router/data/train.jsonl`` is used: the dev set (shared/eval/route_dev.jsonl) is
for evaluation (``python -m bench.route_eval``), never for fitting.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from router.content import (CONTENT_LABELS, DEFAULT_HEAD_PATH, FEATURE_NAMES, design_matrix,
                            instruction_window, last_turn, turn_features)
from router.embedding import EMBED_DIM, SentenceEmbedder
from router.plan import RequestPlan

TRAIN_PATH = Path(__file__).resolve().parent / "data" / "train.jsonl"


def embed_all(embedder: SentenceEmbedder, texts: list[str], batch: int = 32) -> np.ndarray:
    out = []
    for i in tqdm(range(0, len(texts), batch), desc="embedding", unit="batch"):
        out.append(embedder.encode(texts[i:i + batch]))
    return np.concatenate(out) if out else np.zeros((0, 384), np.float32)


def fit_softmax(x: np.ndarray, y: np.ndarray, n_classes: int, *, l2: float, epochs: int,
                seed: int, progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Multinomial logistic regression, class-balanced, full batch with L-BFGS."""
    torch.manual_seed(seed)
    xt, yt = torch.from_numpy(x).float(), torch.from_numpy(y).long()
    counts = torch.bincount(yt, minlength=n_classes).float().clamp(min=1)
    class_weight = counts.sum() / (n_classes * counts)
    w = torch.zeros(x.shape[1], n_classes, requires_grad=True)
    b = torch.zeros(n_classes, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=0.5, max_iter=20, line_search_fn="strong_wolfe")

    def loss_fn():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(xt @ w + b, yt, weight=class_weight)
        loss = loss + l2 * (w ** 2).sum()
        loss.backward()
        return loss

    bar = tqdm(range(epochs), desc="fitting", unit="step", disable=not progress)
    for _ in bar:
        loss = opt.step(loss_fn)
        bar.set_postfix(loss=f"{float(loss.detach()):.4f}")
    return w.detach().numpy(), b.detach().numpy()


def cached_embeddings(embedder: SentenceEmbedder, texts: list[str]) -> np.ndarray:
    """Embeddings of ``texts``, reused from a temp-dir cache when the texts are unchanged."""
    embedder.load()
    setup = [embedder.max_tokens, str(embedder.dtype), texts]
    key = hashlib.sha256(json.dumps(setup).encode()).hexdigest()[:16]
    path = Path(tempfile.gettempdir()) / f"tandem_route_embed_{key}.npy"
    if path.exists():
        print(f"embeddings from cache {path}")
        return np.load(path)
    emb = embed_all(embedder, texts)
    np.save(path, emb)
    return emb


def leave_one_source_out(x, y, sources: list[str], l2: float, epochs: int,
                         seed: int) -> np.ndarray:
    """Logits for every row from a head fit without the row's template family: how the
    head carries over to phrasings it has not seen, which a random split hides."""
    logits = np.zeros((len(y), len(CONTENT_LABELS)), dtype=np.float32)
    for source in sorted(set(sources)):
        held = np.asarray([s == source for s in sources])
        w, b = fit_softmax(x[~held], y[~held], len(CONTENT_LABELS), l2=l2, epochs=epochs,
                           seed=seed, progress=False)
        logits[held] = x[held] @ w + b
    return logits


def family_accuracy(logits: np.ndarray, y: np.ndarray, sources: list[str]) -> float:
    """Mean over template families of the accuracy on that family."""
    hit = logits.argmax(1) == y
    return float(np.mean([hit[[s == f for s in sources]].mean() for f in sorted(set(sources))]))


def fold_scale(w: np.ndarray, scale: float) -> np.ndarray:
    """Weights for unscaled embeddings: (e * s) @ W_e == e @ (s * W_e)."""
    w = w.copy()
    w[:EMBED_DIM] *= scale
    return w


def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.exp(logits - logits.max(-1, keepdims=True))
    return z / z.sum(-1, keepdims=True)


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """The temperature that makes held-out probabilities honest (least negative log-likelihood
    of the true label): one number, so the ranking of labels is unchanged."""
    def nll(t: float) -> float:
        return float(-np.log(softmax(logits / t)[np.arange(len(y)), y] + 1e-12).mean())

    return float(min(np.round(np.arange(0.3, 4.01, 0.05), 2), key=nll))


#: confidence bins of the reliability table
BINS = (0.0, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


def reliability(probs: np.ndarray, y: np.ndarray) -> list[dict]:
    """Per confidence bin: how many predictions, their mean confidence, how many were right."""
    confidence, hit = probs.max(1), probs.argmax(1) == y
    rows = []
    for low, high in zip(BINS, BINS[1:]):
        inside = (confidence >= low) & ((confidence < high) if high < 1 else (confidence <= high))
        if inside.any():
            rows.append({"bin": f"{low:.1f}-{high:.1f}", "n": int(inside.sum()),
                         "mean_confidence": round(float(confidence[inside].mean()), 3),
                         "accuracy": round(float(hit[inside].mean()), 3)})
    return rows


#: a request wrongly sent to a diffusion route costs this many times a request wrongly sent
#: to AR (AR answers anything, if not always best; a chat turn in a diffusion canvas does not)
WRONG_DIFFUSION_COST = 2.0


def best_min_confidence(probs: np.ndarray, y: np.ndarray, fallback: int,
                        wrong_elsewhere_cost: float = WRONG_DIFFUSION_COST) -> tuple[float, float]:
    """The threshold below which sending requests to ``fallback`` costs least on held-out
    rows (a wrong ``fallback`` costs 1, any other wrong route ``wrong_elsewhere_cost``), and
    the held-out accuracy with it."""
    confidence, predicted = probs.max(1), probs.argmax(1)

    def cost(routed: np.ndarray) -> float:
        wrong = routed != y
        return float(np.where(wrong & (routed == fallback), 1.0, 0.0).sum()
                     + np.where(wrong & (routed != fallback), wrong_elsewhere_cost, 0.0).sum())

    best_threshold, best_cost = 0.0, cost(predicted)
    for threshold in np.round(np.arange(0.3, 0.91, 0.05), 2):
        routed = np.where(confidence < threshold, fallback, predicted)
        if cost(routed) < best_cost - 1e-9:
            best_threshold, best_cost = float(threshold), cost(routed)
    routed = np.where(confidence < best_threshold, fallback, predicted)
    return best_threshold, float((routed == y).mean())


def accuracy(x, y, w, b) -> float:
    return float(((x @ w + b).argmax(1) == y).mean()) if len(y) else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train", type=Path, default=TRAIN_PATH)
    ap.add_argument("--out", type=Path, default=DEFAULT_HEAD_PATH)
    ap.add_argument("--l2", type=float, nargs="+", default=[3e-3, 1e-2],
                    help="L2 strengths in the grid; the head averages all grid members")
    ap.add_argument("--embed-scale", type=float, nargs="+", default=[3.0, 5.0, 8.0],
                    help="embedding scales in the grid (features are standardised)")
    ap.add_argument("--epochs", type=int, default=30, help="L-BFGS outer steps")
    ap.add_argument("--holdout", type=float, default=0.2, help="random share held out as a check")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    started = time.time()

    rows = [json.loads(line) for line in args.train.open()]
    content = [r for r in rows if r["label"] in CONTENT_LABELS]
    embedder = SentenceEmbedder()

    turns = [last_turn(RequestPlan.of(r["request"])) for r in content]
    emb = cached_embeddings(embedder, [instruction_window(t.text) for t in turns])
    feats = np.asarray([turn_features(t) for t in turns], dtype=np.float32)
    mean, std = feats.mean(0), feats.std(0) + 1e-3
    y = np.asarray([CONTENT_LABELS.index(r["label"]) for r in content])

    # Each grid member is scored on a random split and leave-one-template-family-out (how it
    # carries over to phrasings it has not seen), then refit on everything.
    order = list(range(len(y)))
    random.Random(args.seed).shuffle(order)
    cut = int(len(order) * (1 - args.holdout))
    tr, ho = np.asarray(order[:cut]), np.asarray(order[cut:])
    sources = [f"{r['label']}:{r.get('source', '')}" for r in content]
    grid = [(scale, l2) for scale in args.embed_scale for l2 in args.l2]
    holdout, loso = {}, {}
    ho_logits, loso_logits, weights, biases = [], [], [], []
    for scale, l2 in tqdm(grid, desc="fitting grid", unit="setting"):
        x = design_matrix(emb, feats, scale, mean, std)
        w, b = fit_softmax(x[tr], y[tr], len(CONTENT_LABELS), l2=l2, epochs=args.epochs,
                           seed=args.seed, progress=False)
        ho_logits.append(x[ho] @ w + b)
        holdout[(scale, l2)] = accuracy(x[ho], y[ho], w, b)
        loso_logits.append(leave_one_source_out(x, y, sources, l2, args.epochs, args.seed))
        loso[(scale, l2)] = family_accuracy(loso_logits[-1], y, sources)
        w, b = fit_softmax(x, y, len(CONTENT_LABELS), l2=l2, epochs=args.epochs,
                           seed=args.seed, progress=False)
        weights.append(fold_scale(w, scale))
        biases.append(b)
        tqdm.write(f"embed_scale={scale:g} l2={l2:g}: random holdout {holdout[(scale, l2)]:.3f}, "
                   f"leave-one-template-family-out {loso[(scale, l2)]:.3f}")
    # The shipped head averages the grid's logits (one linear map, since every member is
    # linear in the same inputs): single settings differ by noise on borderline turns, the
    # average is steadier than picking the best-looking one.
    ens_holdout = float((np.mean(ho_logits, 0).argmax(1) == y[ho]).mean())
    ens_loso = family_accuracy(np.mean(loso_logits, 0), y, sources)
    print(f"grid average: random holdout {ens_holdout:.3f}, leave-one-template-family-out {ens_loso:.3f}")
    w, b = np.mean(weights, 0), np.mean(biases, 0)
    x = design_matrix(emb, feats, 1.0, mean, std)
    train_acc = accuracy(x, y, w, b)
    # Calibration on what the head has not seen: the leave-one-template-family-out logits.
    held_out = np.mean(loso_logits, 0)
    temperature = fit_temperature(held_out, y)
    calibrated = softmax(held_out / temperature)
    threshold, with_fallback = best_min_confidence(calibrated, y, CONTENT_LABELS.index("chat"))
    print(f"temperature {temperature:g}; held-out reliability (calibrated):")
    for row in reliability(calibrated, y):
        print(f"  {row['bin']}: n={row['n']:4d} confidence {row['mean_confidence']:.3f} accuracy {row['accuracy']:.3f}")
    print(f"cheapest router.min_confidence on held-out families (a wrong diffusion route costing "
          f"{WRONG_DIFFUSION_COST:g}x a wrong AR one): {threshold:g} (accuracy with the chat fallback {with_fallback:.3f})")

    meta = {"train_rows": len(content), "head": "mean of the grid's logits",
            "lbfgs_steps": args.epochs, "template_families": len(set(sources)),
            "random_holdout_acc": ens_holdout, "leave_one_family_out_acc": ens_loso,
            "grid": {f"scale={k[0]:g},l2={k[1]:g}": [round(holdout[k], 4), round(loso[k], 4)]
                     for k in grid},
            "train_acc": train_acc, "temperature": temperature,
            "reliability_uncalibrated": reliability(softmax(held_out), y),
            "reliability_calibrated": reliability(calibrated, y),
            "best_min_confidence": threshold, "held_out_acc_with_fallback": with_fallback,
            "embedder_max_tokens": embedder.max_tokens, "embedder_dtype": str(embedder.dtype),
            "seconds": round(time.time() - started, 1)}
    np.savez_compressed(
        args.out, weights=w.astype(np.float32), bias=b.astype(np.float32),
        feature_mean=mean.astype(np.float32), feature_std=std.astype(np.float32),
        embed_scale=np.float32(1.0), temperature=np.float32(temperature),
        labels=np.asarray(CONTENT_LABELS), feature_names=np.asarray(FEATURE_NAMES),
        meta=np.asarray(json.dumps(meta)))
    print(json.dumps(meta, indent=1))
    print(f"saved {args.out} ({args.out.stat().st_size / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
