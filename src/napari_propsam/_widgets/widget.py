"""The PropSAM dock widget: prompt on the displayed slice, stream objects into a Labels layer.

The widget only wires napari to the core: prompts are read from layers on the main thread
(:mod:`._gather`), a ``thread_worker`` runs :func:`napari_propsam.labeling.stream_objects` (or
:func:`napari_propsam.similar.find_similar_stream`), and each yielded slice update is turned into
voxel changes by :class:`napari_propsam.labeling.ObjectEdit` and written with
``Labels.data_setitem``, one undo step per object, or one for a whole *Find similar* run
(:mod:`._history`). The worker never touches a layer. The run lifecycle (start, stream, cancel,
roll back, report) and the footer belong to :class:`._controller.RunController`; each panel
registers its handlers there. The *Measure* and *Fine-tune* tabs live in :mod:`._measure` and
:mod:`._finetune`; the settings in :mod:`._settings`.

Programmatic use (scripts, tests, napari's console)::

    widget.image_layer = viewer.layers["image"]
    widget.prompt_layer = viewer.layers["boxes"]
    widget.set_model("path/to/propmask.pth")
    result = widget.run(block=True)   # RunResult(label_ids=[...], failed=[...], ...)
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import napari
from magicgui.widgets import ComboBox, Container, PushButton
from napari.layers import Image, Labels, Layer, Shapes
from qtpy.QtWidgets import QTabWidget

from ..config import PropagationConfig
from ..device import select_device
from ..registry import ModelSpec
from ..weights import CheckpointError
from . import _notify
from ._controller import RunController
from ._finetune import FinetunePanel
from ._gather import (
    Gathered,
    default_prompt_layer,
    gather_repropagate,
    gather_run,
    output_shape_error,
)
from ._history import UndoGroup, real_object
from ._layer_prompts import full_resolution
from ._layout import keep_width
from ._measure import MeasurePanel
from ._runner import RunResult, RunState, work
from ._series import SeriesPanel
from ._session import Session
from ._settings import Settings
from ._similar import SimilarPanel
from ._storage import new_labels_data
from ._stream import register_object_handlers
from ._tooltips import apply_tooltips

logger = logging.getLogger(__name__)

NEW_LAYER = "(new labels layer)"
#: The Prompts chooser's entry when no prompt layer is chosen: the chooser never defaults to a
#: Labels layer the user did not make as a prompt (the output, or a sample's ground truth).
NO_PROMPTS = "(none: New box / sketch layer)"
RUN_KEY = "Shift-R"
#: Adjacent slices per forward pass in the widget: small first passes put the first labels on
#: screen sooner (0.34 s instead of 0.85 s for a sample glomerulus on a CPU) for about 10% more
#: total time; the result does not depend on it (benchmarks/bench_gui_latency.py).
INTERACTIVE_MAX_BATCH = 8


class PropSAMWidget(Container):
    """Dock widget: segment 3D objects from boxes or sketches on the displayed slice.

    Args:
        viewer: The napari viewer the widget works on.
    """

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__(labels=True)
        self.viewer = real_object(viewer)  # a plugin proxy's layers would refuse _history's calls
        #: Tests and advanced scripting: a PropMask stand-in used instead of the model's network.
        self.predictor_override: Any = None
        #: Starts, streams, cancels and reports every run; owns the footer (bar, status, Cancel).
        self.controller = RunController("Draw a box or paint a sketch, then Run.")
        #: (output layer id, axis, slice, rounded box) -> label id, so re-running a box replaces
        #: its object instead of adding a duplicate under a new id (2D series: its own keys).
        self.known_ids: dict[tuple, int] = {}
        #: Prompt layers made with the New box / sketch buttons (the chooser's defaults).
        self._made_prompts: list[Layer] = []
        #: Called with the output layer after every run that wrote something (main thread).
        self.run_finished_callbacks: list[Callable[[Labels], None]] = (
            self.controller.finished_callbacks
        )
        self.settings = Settings()
        #: The objects segmented in this session (prompt slices, quality) per output layer.
        self.session = Session()
        self._make_inputs()
        self.extend([self._image, self._output, self.settings.model_row, self.settings.device])
        self.similar = SimilarPanel(self)
        self.series = SeriesPanel(self)
        self.measure = MeasurePanel(self)
        self.finetune = FinetunePanel(self)
        self._make_tabs()
        keep_width(self.native)  # long layer names and messages must not widen the dock
        apply_tooltips(self)
        register_object_handlers(self.controller, self._object_done)
        self.controller.busy_callbacks.append(self._on_busy)
        self._connect()

    def _make_inputs(self) -> None:
        """The layer choosers and the Segment tab's buttons."""
        self._image = ComboBox(
            label="Image",
            choices=self._image_choices,
            tooltip="3D image to segment (its scale is the voxel spacing)",
        )
        self._prompts = ComboBox(
            label="Prompts",
            choices=self._prompt_choices,
            tooltip="Shapes layer: each rectangle on the displayed slice is one object.\n"
            "Labels layer: each label painted on the displayed slice is one object.",
        )
        self._add_boxes = PushButton(text="New box layer")
        self._add_sketch = PushButton(text="New sketch layer")
        self._output = ComboBox(
            label="Output",
            choices=self._output_choices,
            tooltip="Labels layer the objects are written into",
        )
        self._run_btn = PushButton(text=f"Run ({RUN_KEY})")
        self._repropagate_btn = PushButton(
            text="Re-propagate from this slice",
            tooltip="Repaint the object (the output layer's selected label) on this slice, then "
            "propagate from it in both directions, replacing the object on the slices "
            "it reaches",
        )

    def _make_tabs(self) -> None:
        """The Segment, Measure and Fine-tune tabs, then the run footer under them."""
        new_row = Container(
            widgets=[self._add_boxes, self._add_sketch], layout="horizontal", labels=False, label=""
        )
        segment = Container(
            widgets=[
                self._prompts,
                new_row,
                self.series.enabled,
                self.settings.thickness,
                self.settings.advanced,
                self._run_btn,
                self._repropagate_btn,
                self.similar.container,
            ]
        )
        # magicgui has no tab container; the tabs and the footer are plain Qt children placed
        # after the magicgui rows (their magicgui wrappers are kept alive as attributes).
        self._tabs = QTabWidget()
        for panel, title in (
            (segment, "Segment"),
            (self.measure.container, "Measure"),
            (self.finetune.container, "Fine-tune"),
        ):
            self._tabs.addTab(panel.native, title)
        self._segment_tab = segment
        self.native.layout().addWidget(self._tabs)
        self.native.layout().addWidget(self.controller.footer.native)

    def _connect(self) -> None:
        """Buttons, the viewer's layer list and the Run shortcut."""
        self._run_btn.changed.connect(lambda: self.run())
        self._repropagate_btn.changed.connect(lambda: self.repropagate())
        self._add_boxes.changed.connect(self._new_box_layer)
        self._add_sketch.changed.connect(self._new_sketch_layer)
        for ev in ("inserted", "removed", "moved", "reordered"):
            emitter = getattr(self.viewer.layers.events, ev, None)
            if emitter is not None:
                emitter.connect(self._on_layers_changed)
        self._on_layers_changed()
        # Newest widget wins the shortcut (e.g. after the dock widget was closed and reopened).
        self.viewer.bind_key(RUN_KEY, self._on_run_key, overwrite=True)

    # --- the footer and the run's state (owned by :attr:`controller`) --------------------------

    @property
    def last_result(self) -> RunResult | None:
        """The result of the last run that ended."""
        return self.controller.last_result

    # --- layer choosers ----------------------------------------------------------------------

    def layers_of(self, kinds: tuple[type, ...]) -> list[tuple[str, Any]]:
        """``(name, layer)`` of every viewer layer of one of ``kinds``, for dropdowns."""
        return [(layer.name, layer) for layer in self.viewer.layers if isinstance(layer, kinds)]

    def _image_choices(self, _widget: Any = None) -> list[tuple[str, Any]]:
        return self.layers_of((Image,))

    def _prompt_choices(self, _widget: Any = None) -> list[tuple[str, Any]]:
        return [(NO_PROMPTS, NO_PROMPTS), *self.layers_of((Shapes, Labels))]

    def _output_choices(self, _widget: Any = None) -> list[tuple[str, Any]]:
        return [(NEW_LAYER, NEW_LAYER), *self.layers_of((Labels,))]

    def _on_layers_changed(self, event: Any = None) -> None:
        layer = getattr(event, "value", None)
        if layer is not None and hasattr(layer, "events") and event.type == "inserted":
            layer.events.name.connect(self._on_layers_changed)
        self._image.reset_choices()
        self._prompts.reset_choices()
        present = list(self.viewer.layers)
        self._made_prompts = [layer for layer in self._made_prompts if layer in present]
        if self._prompts.value is NO_PROMPTS or self._prompts.value == NO_PROMPTS:
            default = default_prompt_layer(present, self._made_prompts)
            if default is not None:
                self._prompts.value = default
        self._output.reset_choices()
        self.finetune.reset_choices()

    @property
    def image_layer(self) -> Image | None:
        """The image layer to segment."""
        return self._image.value

    @image_layer.setter
    def image_layer(self, layer: Image) -> None:
        self._image.reset_choices()
        self._image.value = layer

    @property
    def prompt_layer(self) -> Shapes | Labels | None:
        """The Shapes (boxes) or Labels (sketches) layer the prompts are read from (None: none
        chosen yet)."""
        value = self._prompts.value
        return value if isinstance(value, Shapes | Labels) else None

    @prompt_layer.setter
    def prompt_layer(self, layer: Shapes | Labels | None) -> None:
        self._prompts.reset_choices()
        self._prompts.value = NO_PROMPTS if layer is None else layer

    @property
    def output_layer(self) -> Labels | None:
        """The output Labels layer (None until one is chosen or created)."""
        value = self._output.value
        return value if isinstance(value, Labels) else None

    @output_layer.setter
    def output_layer(self, layer: Labels | None) -> None:
        self._output.reset_choices()
        self._output.value = NEW_LAYER if layer is None else layer

    def _new_prompt_layer(self, kind: type) -> Shapes | Labels | None:
        image = self.image_layer
        if image is None:
            _notify.error("open a 3D image first")
            return None
        geo = {"scale": image.scale, "translate": image.translate}
        if kind is Shapes:
            layer = self.viewer.add_shapes(
                ndim=image.ndim,
                name="PropSAM boxes",
                edge_color="yellow",
                face_color="transparent",
                **geo,
            )
            layer.mode = "add_rectangle"
        else:
            layer = self.viewer.add_labels(
                new_labels_data(full_resolution(image).shape), name="PropSAM sketch", **geo
            )
            layer.mode = "paint"
        self._made_prompts.append(layer)
        self.prompt_layer = layer
        return layer

    def _new_box_layer(self) -> None:
        self._new_prompt_layer(Shapes)

    def _new_sketch_layer(self) -> None:
        self._new_prompt_layer(Labels)

    # --- settings (delegated to :class:`Settings`) ---------------------------------------------

    def set_model(self, spec: ModelSpec, name: str | None = None) -> str:
        """Choose the model; see :meth:`Settings.set_model`. Returns the dropdown entry."""
        return self.settings.set_model(spec, name)

    @property
    def model_spec(self) -> ModelSpec:
        """The ``model=`` value of the current dropdown entry."""
        return self.settings.model_spec

    def options(self) -> dict[str, float]:
        """The engine options set in the widget (fields of :class:`PropagationConfig`)."""
        return self.settings.options()

    def configure(self, **settings: Any) -> None:
        """Set ``device``, ``thickness``, ``min_area``, ``crop_ratio``, ``overwrite`` by keyword.

        Raises:
            ValueError: an unknown device or a value the engine rejects.
        """
        self.settings.configure(**settings)

    @property
    def is_running(self) -> bool:
        """A run is going (or its worker is still winding down after a cancel)."""
        return self.controller.is_running

    # --- preparing a run ---------------------------------------------------------------------

    def ensure_output(self, image: Image) -> Labels:
        """The output layer for ``image``, created (zarr-backed when huge) if none is chosen.

        Raises:
            PromptError: the chosen output layer does not have the image's shape.
        """
        layer = self.output_layer
        if layer is None:
            active = self.viewer.layers.selection.active
            layer = self.viewer.add_labels(
                new_labels_data(full_resolution(image).shape),
                name=f"{image.name} PropSAM",
                scale=image.scale,
                translate=image.translate,
            )
            if active is not None:  # keep the user on the layer they draw prompts in
                self.viewer.layers.selection.active = active
            self.output_layer = layer
        elif (err := output_shape_error(layer, image)) is not None:
            raise err
        return layer

    def check_settings(self) -> None:
        """Refuse bad engine options or an unavailable device before anything changes.

        Raises:
            ValueError, RuntimeError: the reason.
        """
        PropagationConfig(**self.options())
        select_device(self.settings.device.value)

    def _gather(self, repropagate: bool) -> Gathered:
        self.check_settings()
        if repropagate:
            out = self.output_layer
            rec = None if out is None else self.session.get(out, int(out.selected_label))
            earlier = None if rec is None else (rec.axis, rec.prompt_slices)
            found = gather_repropagate(self.viewer, self.image_layer, out, earlier)
        else:
            found = gather_run(
                self.viewer,
                self.image_layer,
                self.prompt_layer,
                self.ensure_output,
                self.known_ids,
                current_output=self.output_layer,
            )
        self.settings.check_model(
            any(p.box is not None for p in found.prompts), self.predictor_override
        )
        return found

    # --- running -----------------------------------------------------------------------------

    def run(self, block: bool = False, timeout: float = 600.0) -> RunResult | None:
        """Segment every prompt on the displayed slice (the Run button / ``Shift-R``).

        Args:
            block: Wait (processing Qt events) until the run ends.
            timeout: Longest wait in seconds with ``block=True``; the run is cancelled after it.

        Returns:
            With ``block=True`` the :class:`RunResult`, else None (see :attr:`last_result`).
            None too when the run could not start (the reason is shown as a notification).
        """
        return self._start(repropagate=False, block=block, timeout=timeout)

    def repropagate(self, block: bool = False, timeout: float = 600.0) -> RunResult | None:
        """Re-propagate the output layer's selected label from its mask on the displayed slice.

        Same arguments and return value as :meth:`run`.
        """
        return self._start(repropagate=True, block=block, timeout=timeout)

    def refuse_if_running(self) -> bool:
        """Tell the user and return True when a run is going (runs never interleave)."""
        return self.controller.refuse_if_running()

    def not_started(self, err: Exception) -> None:
        """Report why a run could not start."""
        self.controller.not_started(err)

    def _start(self, repropagate: bool, block: bool, timeout: float) -> RunResult | None:
        if not repropagate and self.series.enabled.value:
            return self.series.start(block, timeout)
        if self.refuse_if_running():
            return None
        try:
            found = self._gather(repropagate)
        except (ValueError, RuntimeError, CheckpointError) as err:
            self.not_started(err)
            return None
        run = RunState(
            found.output,
            found.prompts,
            bool(self.settings.overwrite.value),
            found.box_keys,
            threading.Event(),
        )
        run.result.prompt_ids = [p.label_id for p in found.prompts]
        return self.launch(
            run,
            work,
            full_resolution(found.image),
            found.prompts,
            block=block,
            timeout=timeout,
            busy_text=f"Starting: {len(found.prompts)} object(s)…",
            spacing=tuple(float(s) for s in found.image.scale),
            model=self.model_spec,
            device=self.settings.device.value,
            predictor=self.predictor_override,
            cancel=run.cancel_event,
            max_batch=INTERACTIVE_MAX_BATCH,
            **self.options(),
        )

    def launch(
        self,
        run: RunState,
        body: Callable[..., Any],
        *args: Any,
        block: bool,
        timeout: float,
        busy_text: str,
        **kwargs: Any,
    ) -> RunResult | None:
        """Run the generator ``body(*args, **kwargs)`` in a worker and stream it into the output.

        See :meth:`RunController.launch`; ``block`` and ``timeout`` as for :meth:`run`.
        """
        return self.controller.launch(
            run, body, *args, block=block, timeout=timeout, busy_text=busy_text, **kwargs
        )

    def cancel(self) -> None:
        """Stop the run within about one forward pass; the current object is rolled back.

        With no run going, the footer's Cancel stops fine-tuning instead.
        """
        self.controller.cancel()

    def _on_run_key(self, _viewer: Any = None) -> None:
        self.run()

    def undo_group(self, layer: Labels) -> UndoGroup:
        """Open an undo group on ``layer``: the writes until its commit are one Ctrl+Z."""
        return self.controller.undo_group(layer)

    def set_indeterminate(self, busy: bool) -> None:
        """Show the footer bar as a busy indicator (a phase without a fraction) or as a bar."""
        self.controller.set_indeterminate(busy)

    def _object_done(self, run: RunState, position: int) -> None:
        """Remember a finished object: its box (re-running it replaces it) and its session."""
        prompt = run.prompts[position]
        if position in run.box_keys:
            self.known_ids[(id(run.output), *run.box_keys[position])] = prompt.label_id
        self.session.record(run.output, prompt, run.quality)

    def _on_busy(self, busy: bool) -> None:
        self._run_btn.enabled = not busy
        self._repropagate_btn.enabled = not busy
