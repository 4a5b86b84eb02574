"""Train the block-diffusion LoRA adapter on SmolLM2-135M-Instruct.

    python -m diffusion_engine.training.adapt --config diffusion_engine/training/configs/default.yaml
    python -m diffusion_engine.training.adapt --config ... --resume          # continue the latest checkpoint
    python -m diffusion_engine.training.adapt --config ... --export-only     # write the adapter from it
    python -m diffusion_engine.training.adapt --config ... --export-only --export-to diffusion_engine/adapters/smollm2_block

Outputs under ``runs/<name>/``: ``train.log``, ``metrics.jsonl``, ``checkpoints/step_*.pt``
(adapter fp32 + optimiser + data cursor + RNG, so a resumed run continues the same
sequence), and ``adapter/`` (bf16 safetensors + config, loadable by the denoiser).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import random
import sys
import time
from pathlib import Path

import torch
import yaml
from tqdm import tqdm

from diffusion_engine.adapters.smollm2_block import AdapterConfig, BlockDiffusionLM, load_adapter, save_adapter
from diffusion_engine.training.layout import Example, example_length, pack
from diffusion_engine.training.objective import diffusion_loss_parts

log = logging.getLogger("adapt")
RUNS = Path("runs")


class PackedStream:
    """Deterministic epoch-shuffled stream of packed rows; its position is checkpointable."""

    def __init__(self, examples: list[Example], seed: int, budget: int, block_size: int):
        self.examples, self.seed, self.budget, self.block_size = examples, seed, budget, block_size
        self.epoch, self.cursor = 0, 0
        self._order = self._shuffled(0)

    def _shuffled(self, epoch: int) -> list[int]:
        order = list(range(len(self.examples)))
        random.Random(self.seed * 1000 + epoch).shuffle(order)
        return order

    def state(self) -> dict:
        return {"epoch": self.epoch, "cursor": self.cursor}

    def load(self, state: dict) -> None:
        self.epoch, self.cursor = state["epoch"], state["cursor"]
        self._order = self._shuffled(self.epoch)

    def next_group(self) -> list[Example]:
        group, used = [], 0
        while True:
            if self.cursor >= len(self._order):
                self.epoch, self.cursor = self.epoch + 1, 0
                self._order = self._shuffled(self.epoch)
            ex = self.examples[self._order[self.cursor]]
            size = example_length(ex, self.block_size)
            if group and used + size > self.budget:
                return group
            group.append(ex)
            used += size
            self.cursor += 1


def lr_at(step: int, cfg: dict) -> float:
    warm, total = cfg["warmup_steps"], cfg["max_steps"]
    if step < warm:
        return cfg["lr"] * (step + 1) / warm
    progress = min(1.0, (step - warm) / max(1, total - warm))
    floor = cfg["min_lr_ratio"]
    return cfg["lr"] * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))


def adapter_config(cfg: dict) -> AdapterConfig:
    a = cfg["adapter"]
    return AdapterConfig(block_size=a["block_size"], mask_token_id=a["mask_token_id"],
                         pad_token_id=a["pad_token_id"], lora_rank=a["lora_rank"], lora_alpha=a["lora_alpha"])


def save_checkpoint(run: Path, lm, opt, stream, gen, step, totals, keep: int) -> Path:
    ckdir = run / "checkpoints"
    ckdir.mkdir(parents=True, exist_ok=True)
    path = ckdir / f"step_{step:06d}.pt"
    tmp = path.with_suffix(".tmp")
    torch.save({"step": step, "adapter": lm.adapter_state_dict(), "optimizer": opt.state_dict(),
                "stream": stream.state(), "generator": gen.get_state(), "totals": totals}, tmp)
    tmp.rename(path)
    for old in sorted(ckdir.glob("step_*.pt"))[:-keep]:
        old.unlink()
    return path


def latest_checkpoint(run: Path) -> Path | None:
    found = sorted((run / "checkpoints").glob("step_*.pt"))
    return found[-1] if found else None


def warm_start(lm: BlockDiffusionLM, folder: Path) -> None:
    """Start from an exported adapter (a later phase continues an earlier one; the optimiser
    starts fresh, as after any warm restart of the learning rate)."""
    config, state = load_adapter(folder)
    mine = lm.config
    for key in ("block_size", "mask_token_id", "lora_rank", "lora_targets"):
        if getattr(config, key) != getattr(mine, key):
            raise ValueError(f"train.init_adapter: {folder} has {key}={getattr(config, key)!r} but the config "
                             f"asks for {getattr(mine, key)!r}; make the adapter section match")
    lm.load_adapter_state(state)
    log.info("warm start from %s (%s)", folder, json.dumps(config.extra))


def train(lm: BlockDiffusionLM, examples: list[Example], cfg: dict, run: Path, resume: bool,
          max_minutes: float | None = None, show_progress: bool = True) -> dict:
    """The training loop; returns the final totals. Used by the CLI and by the tests."""
    tcfg, seed = cfg["train"], cfg["seed"]
    certainty_weight, certainty_temperature = tcfg.get("certainty_weight", 0.0), tcfg.get("certainty_temperature", 1.0)
    if certainty_weight < 0 or certainty_temperature <= 0:
        raise ValueError(f"train.certainty_weight={certainty_weight!r}, train.certainty_temperature="
                         f"{certainty_temperature!r}: the weight must be >= 0 (0 turns the term off) "
                         "and the temperature > 0 (1 is plain entropy)")
    bs, acfg = lm.config.block_size, lm.config
    params = lm.trainable_parameters()
    opt = torch.optim.AdamW(params, lr=tcfg["lr"], weight_decay=tcfg["weight_decay"], betas=(0.9, 0.98))
    stream = PackedStream(examples, seed, tcfg["tokens_per_step"], bs)
    gen = torch.Generator().manual_seed(seed)
    step, totals = 0, {"rows": 0, "row_tokens": 0, "answer_tokens": 0, "supervised_tokens": 0, "seconds": 0.0}
    if resume:
        ck = latest_checkpoint(run)
        if ck is None:
            raise FileNotFoundError(f"--resume: no checkpoint under {run / 'checkpoints'}; start without --resume")
        state = torch.load(ck, weights_only=False)
        lm.load_adapter_state(state["adapter"])
        opt.load_state_dict(state["optimizer"])
        stream.load(state["stream"])
        gen.set_state(state["generator"])
        step, totals = state["step"], state["totals"]
        log.info("resumed from %s (step %d)", ck, step)
    elif tcfg.get("init_adapter"):
        warm_start(lm, Path(tcfg["init_adapter"]))
    run.mkdir(parents=True, exist_ok=True)
    metrics = (run / "metrics.jsonl").open("a")
    started, window = time.time(), []
    bar = tqdm(total=tcfg["max_steps"], initial=step, disable=not show_progress, mininterval=20,
               dynamic_ncols=False, ncols=100, file=sys.stderr)
    while step < tcfg["max_steps"]:
        t0 = time.time()
        batch = pack(stream.next_group(), bs, acfg.mask_token_id, acfg.pad_token_id, gen,
                     supervise_padding=tcfg.get("supervise_padding", False))
        for group in opt.param_groups:
            group["lr"] = lr_at(step, tcfg)
        parts = diffusion_loss_parts(lm, batch, certainty_weight, certainty_temperature)
        parts.total.backward()
        torch.nn.utils.clip_grad_norm_(params, tcfg["grad_clip"])
        opt.step()
        opt.zero_grad(set_to_none=True)
        step += 1
        dt = time.time() - t0
        totals["rows"] += 1
        totals["row_tokens"] += batch.length
        totals["answer_tokens"] += batch.answer_tokens
        totals["supervised_tokens"] += int(batch.targets.numel())
        totals["seconds"] += dt
        # the logged loss is the cross-entropy alone, comparable with runs without certainty forcing
        loss = parts.cross_entropy.detach()
        window.append(float(loss))
        bar.update(1)
        bar.set_postfix(loss=f"{sum(window[-20:]) / len(window[-20:]):.3f}")
        metrics.write(json.dumps({"step": step, "loss": round(float(loss), 4),
                                  "certainty": round(float(parts.certainty.detach()), 4), "lr": opt.param_groups[0]["lr"],
                                  "row_tokens": batch.length, "supervised": int(batch.targets.numel()),
                                  "sec": round(dt, 2)}) + "\n")
        metrics.flush()
        if step % tcfg["log_every"] == 0:
            log.info("step %d loss %.4f (avg20 %.4f) lr %.2e %.1fs/step tokens %d",
                     step, float(loss), sum(window[-20:]) / len(window[-20:]), opt.param_groups[0]["lr"],
                     dt, totals["row_tokens"])
        out_of_time = max_minutes is not None and (time.time() - started) / 60 >= max_minutes
        if step % tcfg["checkpoint_every"] == 0 or step == tcfg["max_steps"] or out_of_time:
            ck = save_checkpoint(run, lm, opt, stream, gen, step, totals, tcfg["keep_checkpoints"])
            save_adapter(lm, run / "adapter", extra={"step": step, **totals})
            log.info("checkpoint %s", ck)
        if out_of_time:
            log.info("stopping at step %d: max_minutes=%s reached (resume with --resume)", step, max_minutes)
            break
    bar.close()
    metrics.close()
    return {"step": step, **totals}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", required=True, type=Path)
    ap.add_argument("--resume", action="store_true", help="continue from runs/<name>/checkpoints")
    ap.add_argument("--max-minutes", type=float, default=None, help="stop (with a checkpoint) after this long")
    ap.add_argument("--export-only", action="store_true", help="write runs/<name>/adapter from the latest checkpoint")
    ap.add_argument("--export-to", type=Path, default=None, help="with --export-only: folder to write instead")
    args = ap.parse_args(argv)
    cfg = yaml.safe_load(args.config.read_text())
    run = RUNS / cfg["name"]
    run.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s",
                        handlers=[logging.FileHandler(run / "train.log"), logging.StreamHandler()])
    threads = cfg["train"].get("threads") or int(os.environ.get("OMP_NUM_THREADS", "1"))
    torch.set_num_threads(threads)
    torch.manual_seed(cfg["seed"])
    random.seed(cfg["seed"])
    from diffusion_engine.embedded import embedded_dtype, load_smollm2
    from diffusion_engine.structured.adapter import model_terminator
    from diffusion_engine.training.data import build_dataset

    # auto: bf16 where the CPU has bf16 matrix units (AMX), float32 where bf16 is emulated and slow
    dtype = embedded_dtype(cfg["dtype"], source=f"{args.config}: dtype")
    model, tokenizer = load_smollm2(dtype)
    lm = BlockDiffusionLM(model, adapter_config(cfg))
    if args.export_only:
        ck = latest_checkpoint(run)
        if ck is None:
            raise FileNotFoundError(f"no checkpoint under {run / 'checkpoints'} to export")
        state = torch.load(ck, weights_only=False)
        lm.load_adapter_state(state["adapter"])
        folder = args.export_to or run / "adapter"
        print(save_adapter(lm, folder, extra={"run": cfg["name"], "step": state["step"], **state["totals"]}))
        return
    t0 = time.time()
    with lm.adapter_off():  # the AR teacher is the untouched base
        # skeleton slots are padded with the terminator the structured engine will use at inference
        examples = build_dataset(model, tokenizer, cfg["data"], cfg["seed"], RUNS / "data",
                                 model_terminator(tokenizer, lm.config))
    log.info("dataset: %d examples (%.0fs); lora params %d; threads %d", len(examples), time.time() - t0,
             lm.lora.num_parameters(), threads)
    max_minutes = args.max_minutes if args.max_minutes is not None else cfg["train"].get("max_minutes")
    totals = train(lm, examples, cfg, run, args.resume, max_minutes)
    log.info("done: %s", json.dumps(totals))


if __name__ == "__main__":
    main()
