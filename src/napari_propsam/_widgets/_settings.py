"""The widget's settings: model choice, device and the engine options.

:class:`Settings` owns the magicgui widgets of the settings and knows how each maps onto the core's
``model=``, ``device=`` and :class:`~napari_propsam.config.PropagationConfig` arguments; the dock
widget only places them. Models are kept in a dropdown whose entries map to ``model=`` values
(bundled names, checkpoint paths, ``{"propmask": ..., "box2mask": ...}`` mappings, bundles).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from magicgui.widgets import CheckBox, ComboBox, Container, FloatSpinBox, PushButton

from ..config import INTENSITY_MODES, STOP_RULES, PropagationConfig
from ..device import DEVICE_CHOICES
from ..registry import BUNDLED, DEFAULT_MODEL, ModelBundle, ModelSpec, list_models
from ..weights import CheckpointError
from . import _notify

logger = logging.getLogger(__name__)

CHECKPOINT_SUFFIXES = (".pth", ".pt", ".safetensors")
_DEFAULTS = PropagationConfig()


def _spin(label: str, value: float, bounds: tuple[float, float, float], tooltip: str):
    """A float setting: ``bounds`` is ``(min, max, step)``."""
    lo, hi, step = bounds
    return FloatSpinBox(label=label, value=value, min=lo, max=hi, step=step, tooltip=tooltip)


class Settings:
    """Model, device and engine options of the dock widget.

    Attributes:
        model_row: The model dropdown with its *Browse…* button (shared by every panel).
        device: The device dropdown.
        thickness: Propagation thickness per round.
        advanced: *Min area*, *Crop ratio* and *Overwrite other labels*.
    """

    def __init__(self) -> None:
        self._specs: dict[str, ModelSpec] = {}
        self.model = ComboBox(label="Model", choices=self._model_choices)
        self.browse = PushButton(text="Browse…", tooltip="Use a PropMask .pth/.safetensors file")
        self.model_row = Container(
            widgets=[self.model, self.browse], layout="horizontal", labels=False, label="Model"
        )
        self.device = ComboBox(label="Device", choices=list(DEVICE_CHOICES), value="auto")
        self.thickness = _spin(
            "Thickness", _DEFAULTS.thickness, (0.1, 10000.0, 1.0),
            "Propagation thickness per round, in the image's scale units "
            "(slices when the scale is 1)",
        )  # fmt: skip
        self.min_area = _spin(
            "Min area", _DEFAULTS.min_area, (0.0, 1e7, 10.0),
            "Advanced: stop when the object's area on the front slice drops below this (pixels)",
        )  # fmt: skip
        self.crop_ratio = _spin(
            "Crop ratio", _DEFAULTS.crop_ratio, (1.0, 10.0, 0.1),
            "Advanced: crop side relative to the object's extent",
        )  # fmt: skip
        self.intensity = ComboBox(
            label="Intensity",
            choices=list(INTENSITY_MODES),
            value=_DEFAULTS.intensity,
            tooltip="Advanced: clip each slice to the prompt's percentile window (percentile) "
            "or to the released notebook's integer CT window (ct-window, for Hounsfield units)",
        )
        self.stop_rule = ComboBox(
            label="Stop rule",
            choices=list(STOP_RULES),
            value=_DEFAULTS.stop_rule,
            tooltip="Advanced: symmetric stops both fronts at Min area; released is the "
            "authors' code (Min area towards slice 0 only)",
        )
        self.overwrite = CheckBox(text="Overwrite other labels", value=False)
        self.advanced = Container(
            widgets=[
                self.min_area, self.crop_ratio, self.intensity, self.stop_rule, self.overwrite
            ],
            label="Advanced",
        )  # fmt: skip
        for info in list_models():
            self._add_choice(
                f"{info.name} (bundled{' default' if info.name == DEFAULT_MODEL else ''}"
                f"{'' if info.available else ', not installed'})",
                info.name,
            )
        if self._specs:
            self.model.value = next(iter(self._specs))
        self.browse.changed.connect(self._browse_model)

    # --- model choice ------------------------------------------------------------------------

    def _add_choice(self, key: str, spec: ModelSpec) -> str:
        base, n = key, 2
        while key in self._specs and self._specs[key] is not spec:
            key, n = f"{base} ({n})", n + 1
        self._specs[key] = spec
        self.model.reset_choices()
        return key

    def _model_choices(self, _widget: Any = None) -> list[str]:
        return list(self._specs)

    def set_model(self, spec: ModelSpec, name: str | None = None) -> str:
        """Choose the model: anything :func:`napari_propsam.propagate` accepts as ``model=``.

        None or a bundled name selects a bundled model; a path to a ``.pth``/``.safetensors``
        file, a :class:`~napari_propsam.ModelBundle`, a mapping or a network is added to the
        dropdown and selected.

        Args:
            spec: The ``model=`` value.
            name: Dropdown text for a new entry (default: derived from ``spec``).

        Returns:
            The dropdown entry now selected.

        Raises:
            FileNotFoundError: a path that is not a file.
            ValueError: a file that is not a checkpoint.
        """
        if spec is None:
            spec = DEFAULT_MODEL
        if isinstance(spec, str) and spec in BUNDLED:
            key = next(k for k, v in self._specs.items() if v == spec)
        elif isinstance(spec, ModelBundle):
            key = self._add_choice(name or f"{spec.name} (loaded)", spec)
        elif isinstance(spec, str | Path):
            path = Path(spec).expanduser()
            if not path.is_file():
                raise FileNotFoundError(f"model file not found: {path}")
            if path.suffix.lower() not in CHECKPOINT_SUFFIXES:
                kinds = ", ".join(CHECKPOINT_SUFFIXES)
                raise ValueError(f"{path.name} is not a checkpoint ({kinds})")
            path = path.resolve()
            existing = [k for k, v in self._specs.items() if v == str(path)]
            key = existing[0] if existing else self._add_choice(name or path.name, str(path))
        elif isinstance(spec, Mapping) and "propmask" in spec:
            key = self._add_choice(name or Path(spec["propmask"]).name, spec)
        else:
            key = self._add_choice(name or f"custom model ({type(spec).__name__})", spec)
        self.model.value = key
        return key

    @property
    def model_spec(self) -> ModelSpec:
        """The ``model=`` value of the current dropdown entry."""
        return self._specs[self.model.value]

    def _browse_model(self) -> None:
        from qtpy.QtWidgets import QFileDialog

        path, _ = QFileDialog.getOpenFileName(
            self.model_row.native,
            "Choose a PropMask checkpoint",
            "",
            "PropMask checkpoints (*.pth *.pt *.safetensors);;All files (*)",
        )
        if path:
            try:
                self.set_model(path)
            except (OSError, ValueError) as err:
                _notify.error(str(err))

    def check_model(self, has_boxes: bool, predictor_override: Any) -> None:
        """Refuse a model that cannot load, before anything is written.

        Args:
            has_boxes: Some prompt is a box (Box2Mask is needed even with a PropMask stand-in).
            predictor_override: The widget's PropMask stand-in, if any.

        Raises:
            CheckpointError: the bundled weights are not installed, or the file is gone.
        """
        spec = self.model_spec
        needs = predictor_override is None or has_boxes
        if needs and isinstance(spec, str) and spec in BUNDLED:
            info = {m.name: m for m in list_models()}[spec]
            if not info.available:
                raise CheckpointError(
                    f"the bundled '{spec}' model is not installed ({info.propmask.name} missing);"
                    " choose a PropMask .pth/.safetensors file with Browse…"
                )
        if isinstance(spec, str) and spec not in BUNDLED and not Path(spec).is_file():
            raise CheckpointError(f"model file not found: {spec}")

    # --- engine options ----------------------------------------------------------------------

    def options(self) -> dict[str, Any]:
        """The engine options set in the widget (fields of :class:`PropagationConfig`)."""
        return {
            "thickness": float(self.thickness.value),
            "min_area": float(self.min_area.value),
            "crop_ratio": float(self.crop_ratio.value),
            "intensity": str(self.intensity.value),
            "stop_rule": str(self.stop_rule.value),
        }

    def configure(
        self,
        *,
        device: str | None = None,
        thickness: float | None = None,
        min_area: float | None = None,
        crop_ratio: float | None = None,
        overwrite: bool | None = None,
        intensity: str | None = None,
        stop_rule: str | None = None,
    ) -> None:
        """Set the settings from a script (None leaves a setting as it is).

        Raises:
            ValueError: an unknown device or a value the engine rejects.
        """
        if device is not None and device not in DEVICE_CHOICES:
            raise ValueError(f"device must be one of {DEVICE_CHOICES}, got {device!r}")
        opts = self.options()
        new = {"thickness": thickness, "min_area": min_area, "crop_ratio": crop_ratio}
        opts.update({k: float(v) for k, v in new.items() if v is not None})
        opts.update({k: v for k, v in (("intensity", intensity), ("stop_rule", stop_rule)) if v})
        PropagationConfig(**opts)  # validate before touching any widget
        if device is not None:
            self.device.value = device
        self.thickness.value = opts["thickness"]
        self.min_area.value = opts["min_area"]
        self.crop_ratio.value = opts["crop_ratio"]
        self.intensity.value = opts["intensity"]
        self.stop_rule.value = opts["stop_rule"]
        if overwrite is not None:
            self.overwrite.value = bool(overwrite)
