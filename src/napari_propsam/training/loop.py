"""Seeded, resumable training of PropMask / Box2Mask on CPU or GPU (docs/method.md, "Training").

Writes to ``out_dir``: ``last.pt`` (resume state, read back with ``weights_only=True``),
``log.csv`` (step, loss, lr, seconds, validation Dice), ``curves.png`` and the final and best
weights as self-describing safetensors (``<network>.safetensors``, ``<network>-best.safetensors``).
"""

from __future__ import annotations

import csv
import logging
import math
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..models import PRESETS, ArchConfig
from ..transforms import merge_deep_supervision
from ..weights import (
    CheckpointError,
    build_network,
    check_resume_state,
    load_network,
    save_checkpoint,
)
from .tasks import LabelledVolume, TaskConfig, sample_box2mask, sample_propmask_task

logger = logging.getLogger(__name__)

VolumeFactory = Callable[[int], LabelledVolume]


@dataclass(frozen=True)
class TrainConfig:
    """One training run.

    Attributes:
        network: ``"propmask"`` or ``"box2mask"``.
        arch: Architecture preset name (``"lite"``, ``"full"``, ``"tiny"``) or an ArchConfig.
        steps: Optimiser steps.
        batch_size: Tasks (PropMask) or crops (Box2Mask) per step.
        lr: Peak learning rate (None: 5e-4 PropMask, 1e-3 Box2Mask, as released).
        weight_decay: AdamW weight decay.
        eta_min: Cosine annealing floor.
        ce_weight: Weight of an added cross-entropy term (0 = soft Dice only, as published).
        seed: Seeds data, augmentation and initialisation.
        pool_size: Volumes kept in memory to sample from.
        refresh_every: Replace one pooled volume every this many steps (synthetic data only).
        val_every: Validate every this many steps.
        val_size: Validation samples.
        checkpoint_every: Save resume state every this many steps.
        log_every: Log progress (with ETA) every this many steps.
        threads: torch CPU threads (None = torch's default).
        task: Sampling and augmentation.
    """

    network: str = "propmask"
    arch: str | ArchConfig = "lite"
    steps: int = 3000
    batch_size: int = 8
    lr: float | None = None
    weight_decay: float = 1e-4
    eta_min: float = 1e-5
    ce_weight: float = 0.5
    seed: int = 0
    pool_size: int = 24
    refresh_every: int = 4
    val_every: int = 200
    val_size: int = 64
    checkpoint_every: int = 50
    log_every: int = 20
    threads: int | None = None
    task: TaskConfig = field(default_factory=TaskConfig)

    @property
    def peak_lr(self) -> float:
        if self.lr is not None:
            return self.lr
        return 5e-4 if self.network == "propmask" else 1e-3


def multiscale_soft_dice(
    outputs: Sequence[torch.Tensor], target: torch.Tensor, ce_weight: float = 0.0
) -> torch.Tensor:
    """Deep-supervision loss: each output upsampled to the label size, softmax foreground,
    ``1 - soft Dice`` per sample, averaged over samples and scales (+ optional cross-entropy).

    Args:
        outputs: ``(B, 2, h_i, w_i)`` logits.
        target: ``(B, S, S)`` float {0, 1}.
    """
    total = target.new_zeros(())
    for o in outputs:
        o = F.interpolate(o, size=target.shape[-2:], mode="bilinear", align_corners=False)
        p = torch.softmax(o, dim=1)[:, 1]
        inter = (p * target).sum(dim=(1, 2))
        denom = p.sum(dim=(1, 2)) + target.sum(dim=(1, 2))
        total = total + (1.0 - (2.0 * inter + 1.0) / (denom + 1.0)).mean()
        if ce_weight:
            total = total + ce_weight * F.cross_entropy(o, target.long())
    return total / len(outputs)


def hard_dice(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-sample Dice of ``(B, S, S)`` binary tensors (both empty = 1)."""
    inter = (pred * target).sum(dim=(1, 2))
    denom = pred.sum(dim=(1, 2)) + target.sum(dim=(1, 2))
    return torch.where(denom > 0, 2 * inter / denom.clamp(min=1), torch.ones_like(denom))


def _sample(network: str, vol: LabelledVolume, rng: np.random.Generator, cfg: TaskConfig):
    fn = sample_propmask_task if network == "propmask" else sample_box2mask
    return fn(vol, rng, cfg)


def draw_batch(
    network: str, pool: Sequence[LabelledVolume], rng: np.random.Generator, cfg: TaskConfig, n: int
) -> dict[str, torch.Tensor]:
    """Stack ``n`` samples drawn from random pooled volumes."""
    items = []
    tries = 0
    while len(items) < n:
        tries += 1
        if tries > 50 * n:
            raise RuntimeError(
                "could not draw training samples: the volumes hold no usable objects"
            )
        s = _sample(network, pool[int(rng.integers(len(pool)))], rng, cfg)
        if s is not None:
            items.append(s)
    return {k: torch.stack([it[k] for it in items]) for k in items[0]}


def forward_loss(model, network: str, batch: dict[str, torch.Tensor], ce_weight: float):
    """Loss and (merged) predictions of one batch."""
    if network == "propmask":
        outputs = model(batch["guide_x"], batch["guide_m"], batch["adj_x"])
        target = batch["adj_y"].flatten(0, 1)
    else:
        outputs = model(batch["x"])
        target = batch["y"]
    return multiscale_soft_dice(outputs, target, ce_weight), outputs, target


@torch.inference_mode()
def validate(model, network: str, batches: Sequence[dict[str, torch.Tensor]]) -> float:
    """Mean hard Dice over validation batches."""
    model.eval()
    scores = []
    for b in batches:
        _, outputs, target = forward_loss(model, network, b, 0.0)
        pred = merge_deep_supervision(outputs).argmax(1).float()
        scores.append(hard_dice(pred, target))
    model.train()
    return float(torch.cat(scores).mean())


def _plot(csv_path: Path, png_path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # plotting is a convenience; the CSV has the numbers
        logger.warning("matplotlib not installed; skipping %s", png_path)
        return
    rows = list(csv.DictReader(csv_path.open()))
    if not rows:
        return
    step = [int(r["step"]) for r in rows]
    loss = [float(r["loss"]) for r in rows]
    val = [(int(r["step"]), float(r["val_dice"])) for r in rows if r["val_dice"]]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(step, loss, lw=0.8, label="train loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    if val:
        ax2 = ax.twinx()
        ax2.plot(*zip(*val, strict=True), "o-", color="C1", label="val Dice")
        ax2.set_ylabel("validation Dice")
        ax2.set_ylim(0, 1)
        fig.legend(loc="upper center", ncol=2)
    fig.tight_layout()
    fig.savefig(png_path, dpi=100)
    plt.close(fig)


def train(
    config: TrainConfig,
    out_dir: str | Path,
    volumes: VolumeFactory,
    val_volumes: Sequence[LabelledVolume],
    *,
    init_weights: str | Path | dict[str, torch.Tensor] | None = None,
    resume: bool = True,
    provenance: dict[str, Any] | None = None,
    should_stop: Callable[[], bool] | None = None,
    on_progress: Callable[[int, int, float], None] | None = None,
) -> Path:
    """Train one network; resumable from ``out_dir/last.pt``.

    Args:
        config: The run.
        out_dir: Output folder.
        volumes: ``volumes(i)`` returns the i-th training volume (deterministic in ``i``).
        val_volumes: Held-out volumes for the validation samples.
        init_weights: Start from these weights (a checkpoint path or a state dict; fine-tuning)
            instead of random init.
        resume: Continue from ``out_dir/last.pt`` if present.
        provenance: Extra facts recorded in the saved weights.
        should_stop: Polled every step; True saves and returns early (e.g. a GUI cancel).
        on_progress: ``on_progress(step, steps, loss)`` after each step.

    Returns:
        Path of the final safetensors weights.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if config.threads:
        torch.set_num_threads(config.threads)
    arch = PRESETS[config.arch] if isinstance(config.arch, str) else config.arch
    cfg = replace(config.task, input_size=arch.input_size)
    torch.manual_seed(config.seed)
    model = build_network(config.network, arch)
    if isinstance(init_weights, dict):
        model.load_state_dict(init_weights)
    elif init_weights is not None:
        model.load_state_dict(load_network(init_weights, config.network).model.state_dict())
    opt = torch.optim.AdamW(model.parameters(), lr=config.peak_lr, weight_decay=config.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(
        opt, T_max=max(1, config.steps), eta_min=config.eta_min
    )
    rng = np.random.default_rng(config.seed)
    step, next_volume, best, elapsed = 0, 0, -1.0, 0.0
    pool_ids: list[int] = []
    state_path = out / "last.pt"
    if resume and state_path.is_file():
        # A damaged or foreign file is refused with its name, from any caller (CLI, widget,
        # or training.finetune() in a script), before any optimiser state is touched.
        check_resume_state(state_path)
        st = torch.load(state_path, map_location="cpu", weights_only=True)
        try:
            model.load_state_dict(st["model"])
        except RuntimeError as err:
            raise CheckpointError(
                f"cannot resume training: {state_path} was written for another network "
                f"({str(err).splitlines()[0]}); delete it (or choose another folder)"
            ) from err
        opt.load_state_dict(st["optimizer"])
        sched.load_state_dict(st["scheduler"])
        rng.bit_generator.state = st["rng"]
        torch.set_rng_state(st["torch_rng"])
        step, next_volume, best = int(st["step"]), int(st["next_volume"]), float(st["best"])
        pool_ids = [int(i) for i in st.get("pool_ids", [])]
        elapsed = float(st.get("elapsed", 0.0))
        logger.info("resumed %s at step %d", config.network, step)
    csv_path = out / "log.csv"
    if not csv_path.is_file() or step == 0:
        csv_path.write_text("step,loss,lr,seconds,val_dice\n")

    val_rng = np.random.default_rng(config.seed + 999_983)
    val_batches = [
        draw_batch(config.network, val_volumes, val_rng, replace(cfg, perturb_prob=0.0), 16)
        for _ in range(max(1, config.val_size // 16))
    ]
    # Volume generation runs in a helper thread so the optimiser rarely waits for data. The pool
    # is described by volume indices, so a resumed run rebuilds exactly the same pool.
    pool_n = config.pool_size
    if not pool_ids:
        pool_ids = list(range(next_volume, next_volume + pool_n))
        next_volume += pool_n
    pool = [volumes(i) for i in pool_ids]
    executor = ThreadPoolExecutor(1)
    pending: Future | None = executor.submit(volumes, next_volume) if config.refresh_every else None

    def save_state() -> None:
        tmp = state_path.with_suffix(".tmp")
        torch.save(
            {
                "model": model.state_dict(),
                "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(),
                "rng": rng.bit_generator.state,
                "torch_rng": torch.get_rng_state(),
                "step": step,
                "next_volume": next_volume,
                "pool_ids": pool_ids,
                "best": best,
                "elapsed": elapsed,
                "config": repr(config),
            },
            tmp,
        )
        tmp.replace(state_path)

    def record(path: Path) -> None:
        save_checkpoint(
            path,
            model,
            provenance={
                **(provenance or {}),
                "network": config.network,
                "steps": step,
                "seed": config.seed,
                "wall_seconds": round(elapsed, 1),
                "best_val_dice": round(best, 4),
                "train_config": asdict(config),
            },
        )

    model.train()
    t_last = time.perf_counter()
    losses: list[float] = []
    try:
        while step < config.steps:
            if should_stop is not None and should_stop():
                logger.info("stop requested at step %d", step)
                break
            if pending is not None and step > 0 and step % config.refresh_every == 0:
                # Waiting (rarely) for the prefetched volume keeps the run deterministic.
                slot = int(rng.integers(pool_n))
                pool[slot], pool_ids[slot] = pending.result(), next_volume
                next_volume += 1
                pending = executor.submit(volumes, next_volume)
            batch = draw_batch(config.network, pool, rng, cfg, config.batch_size)
            loss, _, _ = forward_loss(model, config.network, batch, config.ce_weight)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            losses.append(loss.item())
            now = time.perf_counter()
            elapsed += now - t_last
            t_last = now
            if on_progress is not None:
                on_progress(step, config.steps, losses[-1])
            val = ""
            if step % config.val_every == 0 or step == config.steps:
                score = validate(model, config.network, val_batches)
                val = f"{score:.4f}"
                if score > best:
                    best = score
                    record(out / f"{config.network}-best.safetensors")
            with csv_path.open("a") as f:
                f.write(
                    f"{step},{losses[-1]:.5f},{sched.get_last_lr()[0]:.3g},{elapsed:.1f},{val}\n"
                )
            if step % config.log_every == 0 or val:
                rate = elapsed / max(1, step)
                eta = (config.steps - step) * rate
                logger.info(
                    "%s step %d/%d loss %.4f%s | %.2f s/step, ETA %s",
                    config.network,
                    step,
                    config.steps,
                    np.mean(losses[-config.log_every :]),
                    f" val Dice {val}" if val else "",
                    rate,
                    _fmt_eta(eta),
                )
            if step % config.checkpoint_every == 0:
                save_state()
    finally:
        executor.shutdown(wait=False, cancel_futures=True)
    save_state()
    final = out / f"{config.network}.safetensors"
    record(final)
    _plot(csv_path, out / "curves.png")
    return final


def _fmt_eta(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h:d}:{m:02d}:{s:02d}"
