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


@dataclass
class _Run:
    """The mutable state of one training run: network, optimiser, data pool and counters.

    Everything ``last.pt`` stores lives here, so saving and resuming are the two ends of one
    object.
    """

    config: TrainConfig
    out: Path
    task: TaskConfig
    model: torch.nn.Module
    opt: torch.optim.Optimizer
    sched: Any
    rng: np.random.Generator
    provenance: dict[str, Any]
    step: int = 0
    next_volume: int = 0
    best: float = -1.0
    elapsed: float = 0.0
    pool_ids: list[int] = field(default_factory=list)

    @property
    def state_path(self) -> Path:
        return self.out / "last.pt"

    def restore(self) -> None:
        """Continue from ``last.pt`` (checked first: a damaged or foreign file is refused with
        its name, from any caller, before any optimiser state is touched)."""
        check_resume_state(self.state_path)
        st = torch.load(self.state_path, map_location="cpu", weights_only=True)
        try:
            self.model.load_state_dict(st["model"])
        except RuntimeError as err:
            raise CheckpointError(
                f"cannot resume training: {self.state_path} was written for another network "
                f"({str(err).splitlines()[0]}); delete it (or choose another folder)"
            ) from err
        self.opt.load_state_dict(st["optimizer"])
        self.sched.load_state_dict(st["scheduler"])
        self.rng.bit_generator.state = st["rng"]
        torch.set_rng_state(st["torch_rng"])
        self.step, self.next_volume = int(st["step"]), int(st["next_volume"])
        self.best = float(st["best"])
        self.pool_ids = [int(i) for i in st.get("pool_ids", [])]
        self.elapsed = float(st.get("elapsed", 0.0))
        logger.info("resumed %s at step %d", self.config.network, self.step)

    def save_state(self) -> None:
        tmp = self.state_path.with_suffix(".tmp")
        torch.save(
            {
                "model": self.model.state_dict(),
                "optimizer": self.opt.state_dict(),
                "scheduler": self.sched.state_dict(),
                "rng": self.rng.bit_generator.state,
                "torch_rng": torch.get_rng_state(),
                "step": self.step,
                "next_volume": self.next_volume,
                "pool_ids": self.pool_ids,
                "best": self.best,
                "elapsed": self.elapsed,
                "config": repr(self.config),
            },
            tmp,
        )
        tmp.replace(self.state_path)

    def record(self, path: Path) -> None:
        """Save the current weights as self-describing safetensors."""
        save_checkpoint(
            path,
            self.model,
            provenance={
                **self.provenance,
                "network": self.config.network,
                "steps": self.step,
                "seed": self.config.seed,
                "wall_seconds": round(self.elapsed, 1),
                "best_val_dice": round(self.best, 4),
                "train_config": asdict(self.config),
            },
        )

    def log(self, losses: list[float], val: str) -> None:
        """One CSV row per step; a progress line every ``log_every`` steps or validation."""
        config = self.config
        with (self.out / "log.csv").open("a") as f:
            f.write(
                f"{self.step},{losses[-1]:.5f},{self.sched.get_last_lr()[0]:.3g},"
                f"{self.elapsed:.1f},{val}\n"
            )
        if self.step % config.log_every == 0 or val:
            rate = self.elapsed / max(1, self.step)
            logger.info(
                "%s step %d/%d loss %.4f%s | %.2f s/step, ETA %s",
                config.network,
                self.step,
                config.steps,
                np.mean(losses[-config.log_every :]),
                f" val Dice {val}" if val else "",
                rate,
                _fmt_eta((config.steps - self.step) * rate),
            )


def _new_run(
    config: TrainConfig,
    out: Path,
    init_weights: str | Path | dict[str, torch.Tensor] | None,
    provenance: dict[str, Any] | None,
) -> _Run:
    """Network (random, or ``init_weights``), AdamW and the cosine schedule of a fresh run."""
    arch = PRESETS[config.arch] if isinstance(config.arch, str) else config.arch
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
    task = replace(config.task, input_size=arch.input_size)
    rng = np.random.default_rng(config.seed)
    return _Run(config, out, task, model, opt, sched, rng, dict(provenance or {}))


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
    run = _new_run(config, out, init_weights, provenance)
    if resume and run.state_path.is_file():
        run.restore()
    csv_path = out / "log.csv"
    if not csv_path.is_file() or run.step == 0:
        csv_path.write_text("step,loss,lr,seconds,val_dice\n")
    val_rng = np.random.default_rng(config.seed + 999_983)
    val_batches = [
        draw_batch(config.network, val_volumes, val_rng, replace(run.task, perturb_prob=0.0), 16)
        for _ in range(max(1, config.val_size // 16))
    ]
    # The pool is described by volume indices, so a resumed run rebuilds exactly the same pool.
    if not run.pool_ids:
        run.pool_ids = list(range(run.next_volume, run.next_volume + config.pool_size))
        run.next_volume += config.pool_size
    pool = [volumes(i) for i in run.pool_ids]
    _loop(run, pool, volumes, val_batches, should_stop, on_progress)
    run.save_state()
    final = out / f"{config.network}.safetensors"
    run.record(final)
    _plot(csv_path, out / "curves.png")
    return final


def _loop(
    run: _Run,
    pool: list[LabelledVolume],
    volumes: VolumeFactory,
    val_batches: Sequence[dict[str, torch.Tensor]],
    should_stop: Callable[[], bool] | None,
    on_progress: Callable[[int, int, float], None] | None,
) -> None:
    """Optimiser steps until ``config.steps`` (or a stop request), refreshing the pool."""
    config, model = run.config, run.model
    # Volume generation runs in a helper thread so the optimiser rarely waits for data.
    executor = ThreadPoolExecutor(1)
    pending: Future | None = (
        executor.submit(volumes, run.next_volume) if config.refresh_every else None
    )
    model.train()
    t_last = time.perf_counter()
    losses: list[float] = []
    try:
        while run.step < config.steps:
            if should_stop is not None and should_stop():
                logger.info("stop requested at step %d", run.step)
                break
            if pending is not None and run.step > 0 and run.step % config.refresh_every == 0:
                # Waiting (rarely) for the prefetched volume keeps the run deterministic.
                slot = int(run.rng.integers(config.pool_size))
                pool[slot], run.pool_ids[slot] = pending.result(), run.next_volume
                run.next_volume += 1
                pending = executor.submit(volumes, run.next_volume)
            batch = draw_batch(config.network, pool, run.rng, run.task, config.batch_size)
            loss, _, _ = forward_loss(model, config.network, batch, config.ce_weight)
            run.opt.zero_grad(set_to_none=True)
            loss.backward()
            run.opt.step()
            run.sched.step()
            run.step += 1
            losses.append(loss.item())
            now = time.perf_counter()
            run.elapsed += now - t_last
            t_last = now
            if on_progress is not None:
                on_progress(run.step, config.steps, losses[-1])
            val = ""
            if run.step % config.val_every == 0 or run.step == config.steps:
                score = validate(model, config.network, val_batches)
                val = f"{score:.4f}"
                if score > run.best:
                    run.best = score
                    run.record(run.out / f"{config.network}-best.safetensors")
            run.log(losses, val)
            if run.step % config.checkpoint_every == 0:
                run.save_state()
    finally:
        executor.shutdown(wait=False, cancel_futures=True)


def _fmt_eta(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h:d}:{m:02d}:{s:02d}"
