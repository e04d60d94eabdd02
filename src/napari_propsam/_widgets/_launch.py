"""The main job's napari part: the sample stack with the PropSAM widget docked.

With a display, napari opens with the sample, its ground truth, one box per glomerulus on the
middle slice and the widget ready to Run. Headless, the same workflow runs by itself and writes
the labels (TIFF) and a screenshot (PNG).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

LABELS_NAME = "napari_labels.tif"
SCREENSHOT_NAME = "napari_screenshot.png"


@dataclass
class LaunchResult:
    """What a headless launch produced.

    Attributes:
        labels_path: The output labels, ``(Z, Y, X)`` int32 TIFF.
        screenshot_path: The screenshot PNG (None if it could not be rendered).
        label_ids: Ids written, one per box.
        dice: ``{ground-truth id: Dice of the object segmented from its box}``.
        error: Why the run failed, if it did (the files are written anyway).
    """

    labels_path: Path
    screenshot_path: Path | None
    label_ids: list[int] = field(default_factory=list)
    dice: dict[int, float] = field(default_factory=dict)
    error: str | None = None


def _has_display() -> bool:
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")) or os.name == "nt"


def boxes_from_truth(
    labels: np.ndarray, z: int, targets: tuple[int, ...], min_fraction: float = 0.25
) -> dict[int, np.ndarray]:
    """``{target id: (4, 2) napari rectangle corners}`` around the targets cut by slice ``z``.

    Corners are pixel centres of the section's first and last rows/columns moved out by half a
    pixel, so the rectangle covers exactly its bounding box. A target whose section on ``z`` is
    under ``min_fraction`` of its largest section gets no box: the slice only grazes its tip,
    where nobody would prompt.
    """
    out = {}
    for t in targets:
        obj = labels == t
        areas = obj.reshape(obj.shape[0], -1).sum(axis=1)
        rows, cols = np.nonzero(obj[z])
        if rows.size == 0 or areas[z] < min_fraction * areas.max():
            continue
        r0, r1 = rows.min() - 0.5, rows.max() + 0.5
        c0, c1 = cols.min() - 0.5, cols.max() + 0.5
        out[int(t)] = np.array([[r0, c0], [r0, c1], [r1, c1], [r1, c0]], float)
    return out


def prompt_slice(labels: np.ndarray, targets: tuple[int, ...]) -> int:
    """The middle slice, or the slice boxing the most targets if the middle boxes none."""
    mid = labels.shape[0] // 2
    if boxes_from_truth(labels, mid, targets):
        return mid
    counts = [len(boxes_from_truth(labels, z, targets)) for z in range(labels.shape[0])]
    return int(np.argmax(counts))


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    s = int(a.sum()) + int(b.sum())
    return 1.0 if s == 0 else 2.0 * float((a & b).sum()) / s


def _composite_screenshot(
    viewer: Any, widget: Any, image: Any, output: Any, z: int, path: Path
) -> None:
    """Without OpenGL the canvas cannot be rendered: save the docked widget (Qt draws it without
    GL) beside the prompt slice with the labels blended in napari's label colours."""
    from qtpy.QtCore import Qt
    from qtpy.QtGui import QColor, QImage, QPainter

    plane = np.asarray(image.data[z], dtype=np.float32)
    lo, hi = (float(v) for v in image.contrast_limits)
    grey = np.clip((plane - lo) / max(hi - lo, 1e-6), 0, 1)
    rgb = np.repeat(grey[..., None], 3, axis=2)
    lab = np.asarray(output.data[z])
    ids = np.unique(lab[lab > 0])
    for i in ids:
        colour = np.asarray(output.colormap.map(np.array([i])), float).reshape(-1)[:3]
        m = lab == i
        rgb[m] = 0.45 * rgb[m] + 0.55 * colour
    arr = np.ascontiguousarray((rgb * 255).astype(np.uint8))
    h, w = arr.shape[:2]
    slice_img = QImage(arr.data, w, h, 3 * w, QImage.Format_RGB888).copy()
    panel = widget.native.grab().toImage()
    height = max(panel.height(), 640)
    slice_img = slice_img.scaled(height, height, Qt.KeepAspectRatio, Qt.FastTransformation)
    canvas = QImage(slice_img.width() + panel.width(), height, QImage.Format_RGB888)
    canvas.fill(QColor(38, 41, 48))
    painter = QPainter(canvas)
    painter.drawImage(0, (height - slice_img.height()) // 2, slice_img)
    painter.drawImage(slice_img.width(), 0, panel)
    painter.end()
    if not canvas.save(str(path)):
        raise OSError(f"could not write {path}")
    del viewer  # the viewer is only named for symmetry with the rendered path


def _screenshot(
    viewer: Any, widget: Any, image: Any, output: Any, z: int, path: Path, real_gl: bool
) -> Path | None:
    try:
        if real_gl:
            viewer.window._qt_window.resize(1400, 860)
            viewer.reset_view()
            viewer.screenshot(str(path), canvas_only=False)
        else:
            _composite_screenshot(viewer, widget, image, output, z, path)
        return path
    except Exception:  # noqa: BLE001 - a screenshot must not sink the run's results
        logger.exception("could not write the screenshot")
        return None


def start_qt(headless: bool) -> bool:
    """Start Qt for a viewer: offscreen when ``headless`` and there is no display; without
    OpenGL if the platform has none.

    Returns:
        Whether the canvas has a real OpenGL context (else screenshots are composited).
    """
    if headless and not _has_display():
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from napari._qt.qt_event_loop import get_qapp

    get_qapp()
    from ._gl import allow_viewer_without_opengl

    return allow_viewer_without_opengl()


@dataclass
class DemoScene:
    """The sample stack in a viewer, one box per glomerulus on the prompt slice, the widget
    docked and ready to Run.

    Attributes:
        viewer: The napari viewer.
        widget: The docked :class:`~napari_propsam._widgets.widget.PropSAMWidget`.
        image: The ``(Z, Y, X)`` sample image layer.
        shapes: The Shapes layer of the boxes (the widget's prompt layer).
        sample: :func:`~napari_propsam._sample_data.load_sample`'s dict (labels, targets ...).
        z: The prompt slice.
        boxes: ``{ground-truth id: (4, 2) rectangle corners}``, in the Shapes layer's order.
    """

    viewer: Any
    widget: Any
    image: Any
    shapes: Any
    sample: dict[str, Any]
    z: int
    boxes: dict[int, np.ndarray]


def open_demo(viewer: Any, device: str, model: Any = None, predictor: Any = None) -> DemoScene:
    """Add the sample, its ground truth and the boxes to ``viewer`` and dock the widget.

    Args:
        viewer: A napari viewer (Qt started with :func:`start_qt`).
        device: ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"mps"``.
        model: ``model=`` value for the widget (None = bundled default).
        predictor: Advanced/tests: a PropMask stand-in.
    """
    from .._sample_data import glomeruli_sample, load_sample
    from .widget import PropSAMWidget

    sample = load_sample()
    layers = [
        getattr(viewer, f"add_{kind}")(data, **meta) for data, meta, kind in glomeruli_sample()
    ]
    image = layers[0]
    z = prompt_slice(sample["labels"], sample["targets"])
    boxes = boxes_from_truth(sample["labels"], z, sample["targets"])
    shapes = viewer.add_shapes(
        [np.column_stack([np.full(4, z, float), b]) for b in boxes.values()],
        shape_type="rectangle",
        edge_color="yellow",
        face_color="transparent",
        edge_width=1.5,
        name="PropSAM boxes",
        scale=image.scale,
    )
    widget = PropSAMWidget(viewer)
    viewer.window.add_dock_widget(widget, name="PropSAM", area="right")
    widget.image_layer = image
    widget.prompt_layer = shapes
    widget.configure(device=device)
    if model is not None:
        widget.set_model(model)
    widget.predictor_override = predictor
    viewer.dims.set_current_step(0, z)
    viewer.layers.selection.active = shapes
    return DemoScene(viewer, widget, image, shapes, sample, z, boxes)


def _score(
    result: Any, status: str, labels: np.ndarray, scene: DemoScene
) -> tuple[list[int], dict[int, float], str | None]:
    """``(ids written, {ground-truth id: Dice}, error or None)`` of a headless run.

    Args:
        result: The widget's run result (None if the run never started).
        status: The widget's status line, the error when the run never started.
        labels: ``(Z, Y, X)`` int32 output labels.
        scene: The demo (its boxes, in the order the widget numbered them, and ground truth).
    """
    error = None
    if result is None:
        error = status
    elif result.error or result.failed:
        error = "; ".join(filter(None, [result.error, *result.failed]))
    ids = list(result.label_ids) if result is not None else []
    dice: dict[int, float] = {}
    if result is not None:  # the widget numbers boxes in the Shapes layer's order
        for truth_id, label_id in zip(scene.boxes, result.prompt_ids, strict=True):
            seg = labels == label_id if label_id in ids else np.zeros_like(labels, bool)
            dice[truth_id] = _dice(seg, scene.sample["labels"] == truth_id)
    return ids, dice, error


def _run_headless(
    scene: DemoScene, out_dir: str | Path | None, timeout: float, real_gl: bool
) -> LaunchResult:
    """Run the widget on every box, then write the labels and a screenshot into ``out_dir``."""
    import tifffile

    out = Path(out_dir) if out_dir is not None else Path("out") / "napari"
    out.mkdir(parents=True, exist_ok=True)
    widget, image = scene.widget, scene.image
    result = widget.run(block=True, timeout=timeout)
    output = widget.output_layer
    if output is None:  # the run never started; keep the outputs' shape anyway
        output = scene.viewer.add_labels(
            np.zeros(image.data.shape, np.int32), name="PropSAM", scale=image.scale
        )
    labels = np.asarray(output.data, dtype=np.int32)
    ids, dice, error = _score(result, widget.controller.status.value, labels, scene)
    labels_path = out / LABELS_NAME
    tifffile.imwrite(str(labels_path), labels, compression="zlib")
    output.visible = True
    shot_path = out / SCREENSHOT_NAME
    shot = _screenshot(scene.viewer, widget, image, output, scene.z, shot_path, real_gl)
    for truth_id, d in dice.items():
        logger.info("napari widget: glomerulus %d  DSC %.3f", truth_id, d)
    if error:
        logger.error("napari widget run: %s", error)
    logger.info("wrote %s%s", labels_path, f" and {shot}" if shot else "")
    return LaunchResult(labels_path, shot, ids, dice, error)


def launch_viewer(
    headless: bool = False,
    out_dir: str | Path | None = None,
    *,
    model: Any = None,
    device: str = "auto",
    predictor: Any = None,
    timeout: float = 1800.0,
) -> LaunchResult | None:
    """Open napari with the sample and the PropSAM widget, or run that workflow headless.

    Args:
        headless: Run without a window: segment every boxed glomerulus, write the labels and a
            screenshot into ``out_dir``, close the viewer and return.
        out_dir: Folder for the headless outputs (default ``out/napari``).
        model: ``model=`` value for the widget (None = bundled default).
        device: ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"mps"``.
        predictor: Advanced/tests: a PropMask stand-in (see the widget's ``predictor_override``).
        timeout: Longest headless run in seconds (then the run is cancelled).

    Returns:
        Headless: a :class:`LaunchResult`. With a window: None, after the window is closed.
    """
    real_gl = start_qt(headless)
    import napari

    viewer = napari.Viewer(show=not headless, title="napari-propsam: PropSAM demo")
    try:
        scene = open_demo(viewer, device, model, predictor)
        if not headless:
            napari.run()
            return None
        return _run_headless(scene, out_dir, timeout, real_gl)
    finally:
        if headless:
            viewer.close()
