"""The *Fine-tune* tab: adapt the current model to the objects the user has corrected.

The image layer chosen at the top of the dock widget and a Labels layer chosen here (every
non-zero label is a training object) become one
:func:`~napari_propsam.training.labelled_from_arrays` volume; a ``thread_worker`` runs
:func:`~napari_propsam.training.finetune` from the model selected in the dropdown, with a
progress bar and the loss, and a Cancel that reaches ``finetune``'s ``should_stop``. When it is
done the new weights are added to the model dropdown and selected.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FileEdit,
    FloatSpinBox,
    PushButton,
    SpinBox,
)
from napari.layers import Labels
from superqt.utils import ensure_main_thread

from ..labeling import max_label
from ..weights import CheckpointError, check_resume_state
from . import _notify
from ._layer_prompts import PromptError, check_image, full_resolution
from ._layout import StatusLabel
from ._progress import format_seconds
from ._runner import qt_deleted

if TYPE_CHECKING:
    from ._controller import Job
    from .widget import PropSAMWidget

logger = logging.getLogger(__name__)

#: The Labels chooser's entry until the user picks the layer of corrected objects.
NO_LABELS = "(choose the corrected labels)"

DEFAULT_STEPS = 200
DEFAULT_LR = 1e-4


@dataclass
class FinetuneResult:
    """What a fine-tuning run did.

    Attributes:
        paths: ``{network: weights file}`` written (empty when it failed).
        model_key: The model dropdown entry added for the new weights (None unless it finished).
        cancelled: Cancel was pressed (the weights so far are saved but not added).
        error: Why it failed, if it did.
        losses: ``(network, step, loss)`` as reported during training.
    """

    paths: dict[str, Path] = field(default_factory=dict)
    model_key: str | None = None
    cancelled: bool = False
    error: str | None = None
    losses: list[tuple[str, int, float]] = field(default_factory=list)


@dataclass(frozen=True)
class FinetunePlan:
    """How a fine-tuning run is set up.

    Attributes:
        steps: Steps per network (with a time budget: the upper limit).
        lr: Peak learning rate.
        budget_s: Time budget in seconds (0: train ``steps`` steps).
        holdout: Hold out some objects and keep the weights that score best on them.
        estimate_only: Only measure a step and report the estimate; train nothing.
    """

    steps: int
    lr: float
    budget_s: float = 0.0
    holdout: bool = True
    estimate_only: bool = False


def _seconds_per_step(
    volume: Any, base: Any, networks: tuple[str, ...], lr: float, stop: threading.Event
) -> float:
    """Seconds of one training step of all ``networks`` together, measured on ``volume`` (two
    steps per network into a scratch folder; the second one is timed, the first warms up)."""
    import tempfile

    from ..training import finetune

    total = 0.0
    for net in networks:
        stamps: list[float] = []
        stamp = partial(lambda out, *_a: out.append(time.perf_counter()), stamps)
        with tempfile.TemporaryDirectory(prefix="propsam-estimate-") as tmp:
            finetune(
                [volume], tmp, base=base, networks=(net,), steps=2, lr=lr,
                should_stop=stop.is_set, on_progress=stamp,
            )  # fmt: skip
        total += stamps[-1] - stamps[0] if len(stamps) >= 2 else 0.0
    return total


def _finetune_work(
    image: Any,
    labels: Any,
    spacing: tuple[float, ...],
    name: str,
    out_dir: Path,
    base: Any,
    networks: tuple[str, ...],
    plan: FinetunePlan,
    stop: threading.Event,
    on_progress: Any,
    on_estimate: Any,
) -> dict[str, Path]:
    """Worker body: build the training volume, measure a step if needed, fine-tune (core calls
    only). Returns ``{network: weights}``: the best on the held-out objects when there are any."""
    from ..training import finetune, labelled_from_arrays, split_holdout

    # Layer data as it is (numpy, zarr or dask): only the annotated objects' region is read.
    volume = labelled_from_arrays(image, labels, spacing, name)
    train, held = split_holdout(volume) if plan.holdout else (volume, None)
    steps = plan.steps
    if plan.budget_s > 0 or plan.estimate_only:
        per_step = _seconds_per_step(train, base, networks, plan.lr, stop)
        if plan.budget_s > 0:
            steps = max(1, min(steps, int(plan.budget_s / max(per_step, 1e-6))))
        on_estimate(per_step, steps)
        if plan.estimate_only:
            return {}
    deadline = time.monotonic() + 1.1 * plan.budget_s if plan.budget_s > 0 else None
    logger.info(
        "fine-tuning on %d objects of '%s' (%s held out) into %s, %d steps",
        len(train.targets), name, len(held.targets) if held else 0, out_dir, steps,
    )  # fmt: skip
    paths = finetune(
        [train],
        out_dir,
        base=base,
        networks=networks,
        steps=steps,
        lr=plan.lr,
        val_volumes=[held] if held is not None else None,
        should_stop=lambda: stop.is_set() or (deadline is not None and time.monotonic() > deadline),
        on_progress=on_progress,
    )
    if held is not None:  # the training loop keeps <network>-best.safetensors by validation
        for net in list(paths):
            best = Path(out_dir) / net / f"{net}-best.safetensors"
            if best.is_file():
                paths[net] = best
    return paths


class FinetunePanel:
    """Widgets and state of the *Fine-tune* tab.

    Args:
        widget: The dock widget (its image layer, model dropdown and device).
    """

    def __init__(self, widget: PropSAMWidget) -> None:
        self._widget = widget
        self._job: Job | None = None  # the training going (its worker, via the controller)
        self._networks: tuple[str, ...] = ()
        self.result: FinetuneResult | None = None
        self.labels = ComboBox(
            label="Labels",
            choices=self._labels_choices,
            tooltip="Labels layer holding your corrected objects (voxel-aligned with the image);"
            " every non-zero label is a training object",
        )
        self.steps = SpinBox(
            label="Steps", value=DEFAULT_STEPS, min=1, max=1_000_000, tooltip="Steps per network"
        )
        self.lr = FloatSpinBox(
            label="Learning rate", value=DEFAULT_LR, min=1e-7, max=1e-1, step=1e-5,
            tooltip="Peak learning rate (small: the model is adapted, not retrained)",
        )  # fmt: skip
        self.lr.native.setDecimals(7)
        self.box2mask = CheckBox(text="Also adapt Box2Mask (box prompts)", value=True)
        self.budget = SpinBox(
            label="Time budget (min)", value=0, min=0, max=24 * 60,
            tooltip="Fine-tune for about this many minutes (0: train Steps steps). One step is "
            "measured first and the steps are set to fit, at most Steps",
        )  # fmt: skip
        self.holdout = CheckBox(
            text="Keep the best on held-out objects",
            value=True,
            tooltip="With 3 or more objects: hold out about 1 in 5, train on the rest and keep "
            "the weights that score best (Dice) on the held-out ones, not the last ones",
        )
        self.out_dir = FileEdit(
            label="Save to",
            mode="d",
            value="",
            tooltip="Folder for the new weights (a new folder per model; the same folder "
            "continues an interrupted run)",
        )
        self.estimate_btn = PushButton(
            text="Estimate time",
            tooltip="Time one training step on your labels (a few seconds) and show how long "
            "the chosen Steps would take; nothing is saved",
        )
        self.button = PushButton(text="Fine-tune")
        self.status = StatusLabel(value="Correct some objects, choose a folder, then Fine-tune.")
        self.container = Container(
            widgets=[
                self.labels,
                self.steps,
                self.budget,
                self.lr,
                self.box2mask,
                self.holdout,
                self.out_dir,
                self.estimate_btn,
                self.button,
                self.status,
            ]
        )
        self.button.changed.connect(lambda: self.start())
        self.estimate_btn.changed.connect(lambda: self.start(estimate_only=True))
        self.estimate: tuple[float, int] | None = None  # (seconds per step, steps) measured

    @property
    def progress(self) -> Any:
        """The progress bar (the dock's footer bar, shared with segmentation)."""
        return self._widget.controller.progress

    @property
    def cancel_btn(self) -> Any:
        """The Cancel button (the dock's footer button, shared with segmentation)."""
        return self._widget.controller.cancel_button

    def _labels_choices(self, _widget: Any = None) -> list[tuple[str, Any]]:
        # No default layer: training on the wrong one (the uncorrected output, or a sample's
        # ground truth) would silently teach the model the wrong thing.
        return [(NO_LABELS, NO_LABELS), *self._widget.layers_of((Labels,))]

    def reset_choices(self) -> None:
        """Refresh the Labels dropdown (the viewer's layers changed)."""
        self.labels.reset_choices()

    @property
    def labels_layer(self) -> Labels | None:
        """The Labels layer with the training objects (None until one is chosen)."""
        value = self.labels.value
        return value if isinstance(value, Labels) else None

    @labels_layer.setter
    def labels_layer(self, layer: Labels | None) -> None:
        self.labels.reset_choices()
        self.labels.value = NO_LABELS if layer is None else layer

    @property
    def is_running(self) -> bool:
        """A fine-tuning run is going."""
        return self._job is not None and self._job.running

    def _inputs(self, need_folder: bool = True) -> tuple[Any, Any, Labels, Path | None]:
        """The image layer, the labels data, the labels layer and the output folder, checked."""
        image = check_image(self._widget.image_layer)
        layer = self.labels_layer
        if layer is None:
            raise PromptError("choose the Labels layer that holds your corrected objects")
        if tuple(layer.data.shape) != tuple(full_resolution(image).shape):
            raise PromptError(
                f"labels layer '{layer.name}' has shape {tuple(layer.data.shape)}, image "
                f"'{image.name}' has {tuple(full_resolution(image).shape)}"
            )
        # A zarr-backed layer is scanned chunk by chunk, never loaded whole, for this check.
        if max_label(layer.data) <= 0:
            raise PromptError(
                f"labels layer '{layer.name}' has no annotated object: segment and correct at "
                "least one object (any non-zero label) before fine-tuning"
            )
        # The field's text, not its value: magicgui turns an empty field into the current folder.
        text = str(self.out_dir.line_edit.value).strip()
        if not need_folder:
            labels = np.array(layer.data) if isinstance(layer.data, np.ndarray) else layer.data
            return image, labels, layer, None
        if not text:
            raise PromptError("choose a folder to save the fine-tuned model in ('Save to')")
        out = Path(text).expanduser()
        if out.exists() and not out.is_dir():
            raise PromptError(f"'{out}' is a file; choose a folder to save the model in")
        # The training copies the labels: take them now, so painting during training is safe.
        labels = np.array(layer.data) if isinstance(layer.data, np.ndarray) else layer.data
        return image, labels, layer, out

    def start(
        self, block: bool = False, timeout: float = 3600.0, estimate_only: bool = False
    ) -> FinetuneResult | None:
        """Fine-tune the selected model on the chosen labels (the *Fine-tune* button).

        Args:
            block: Wait (processing Qt events) until training ends.
            timeout: Longest wait in seconds with ``block=True``; training is cancelled after it.
            estimate_only: Only time one step and show the estimate (*Estimate time*); see
                :attr:`estimate`.

        Returns:
            With ``block=True`` the :class:`FinetuneResult`, else None (see :attr:`result`).
            None too when it could not start (the reason is shown as a notification).
        """
        if self.is_running:
            _notify.info("fine-tuning is already running: wait for it or press Cancel")
            return None
        try:
            image, labels, layer, out = self._inputs(need_folder=not estimate_only)
            self._networks = ("propmask", "box2mask") if self.box2mask.value else ("propmask",)
            if out is not None:  # an interrupted run in the folder is continued: check it now
                for net in self._networks:
                    check_resume_state(out / net / "last.pt")
        except (ValueError, RuntimeError, CheckpointError) as err:
            self.status.value = f"Not started: {err}"
            _notify.error(str(err))
            return None
        if out is not None and (out / "propmask" / "last.pt").is_file():
            _notify.info(f"'{out}' holds an earlier run: continuing it")
        plan = FinetunePlan(
            int(self.steps.value), float(self.lr.value), 60.0 * float(self.budget.value),
            bool(self.holdout.value), estimate_only,
        )  # fmt: skip
        self.result = result = FinetuneResult()
        stop = threading.Event()
        first = "Timing one step…" if estimate_only or plan.budget_s else "Starting…"
        self._set_busy(True, f"Fine-tuning {' and '.join(self._networks)}: {first}")
        controller = self._widget.controller
        controller.set_indeterminate(True)  # building the volume, timing a step
        work = partial(
            _finetune_work, full_resolution(image), labels, tuple(float(s) for s in image.scale),
            layer.name, out, self._widget.model_spec, self._networks, plan, stop,
            self._on_progress, self._on_estimate,
        )  # fmt: skip
        self._job = controller.submit(
            "fine-tuning",
            work,
            on_returned=None if estimate_only else partial(self._on_returned, result, out),
            on_errored=partial(self._on_errored, result),
            on_finished=partial(self._on_finished, result, out, estimate_only),
            stop=stop,
            on_cancel=partial(self._on_cancel, result),
            footer=True,  # the footer's Cancel stops training when no segmentation runs
        )
        if block:
            controller.wait(self._job, timeout)
        return result if block else None

    def cancel(self) -> None:
        """Stop training after the current step (the weights so far are saved, not added)."""
        if self._job is not None:
            self._widget.controller.cancel_job(self._job)

    def _on_cancel(self, result: FinetuneResult) -> None:
        result.cancelled = True
        self.status.value = "Cancelling…"

    @ensure_main_thread
    def _on_estimate(self, per_step: float, steps: int) -> None:
        self.estimate = (float(per_step), int(steps))
        if qt_deleted(self.status):
            return
        total = per_step * steps
        self.status.value = (
            f"One step of {' + '.join(self._networks)}: {per_step:.2f} s; {steps} steps: about "
            f"{format_seconds(total)}"
        )
        self._widget.controller.show(self.status.value)

    @ensure_main_thread
    def _on_progress(self, network: str, step: int, steps: int, loss: float) -> None:
        # Called from the training thread; ensure_main_thread queues it onto the GUI thread.
        if self.result is not None:
            self.result.losses.append((network, int(step), float(loss)))
        if qt_deleted(self.progress):
            return
        pos = self._networks.index(network) if network in self._networks else 0
        frac = (pos + step / max(1, steps)) / max(1, len(self._networks))
        controller = self._widget.controller
        controller.set_indeterminate(False)
        controller.set_progress(frac)
        if self.is_running and not self._job.cancelled:
            if step == 1 or pos != getattr(self, "_net_pos", -1):
                self._net_pos, self._net_start = pos, time.monotonic()
            left = ""
            if step > 1:
                rate = (time.monotonic() - self._net_start) / (step - 1)
                rest = (steps - step) * rate * (1 + (len(self._networks) - pos - 1))
                left = f" · about {format_seconds(rest)} left"
            self.status.value = f"{network}: step {step}/{steps}, loss {loss:.4f}{left}"
            controller.show(f"Fine-tuning {self.status.value}")

    def _on_returned(self, result: FinetuneResult, out: Path, paths: dict[str, Path]) -> None:
        result.paths = {k: Path(v) for k, v in paths.items()}
        if result.cancelled or qt_deleted(self.status):
            return
        spec = {net: str(path) for net, path in result.paths.items()}
        result.model_key = self._widget.set_model(spec, name=f"fine-tuned: {out.name}")

    def _on_errored(self, result: FinetuneResult, err: Exception) -> None:
        # The controller has logged it with its traceback.
        result.error = str(err) or type(err).__name__
        _notify.error(f"fine-tuning failed: {result.error}")

    def _on_finished(self, result: FinetuneResult, out: Path | None, estimate: bool) -> None:
        if qt_deleted(self.status):
            return
        controller = self._widget.controller
        controller.set_indeterminate(False)
        if estimate and not (result.error or result.cancelled):
            controller.set_progress(1.0)
            self._set_busy(False, self.status.value)
            return
        if result.error:
            text = f"Failed: {result.error}"
        elif result.cancelled:
            text = f"Cancelled; the weights so far are in {out}" if result.paths else "Cancelled"

        else:
            controller.set_progress(1.0)
            text = f"Done: '{result.model_key}' is selected in the model dropdown."
            _notify.info(text)
        self._set_busy(False, text)

    def _set_busy(self, busy: bool, text: str) -> None:
        self.button.enabled = not busy
        self.estimate_btn.enabled = not busy
        if busy:
            self._widget.controller.set_progress(0.0)
        self.status.value = text
        self._widget.controller.show(text)
