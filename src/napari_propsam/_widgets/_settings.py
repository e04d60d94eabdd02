"""The widget's settings: model choice, device and the engine options.

:class:`Settings` owns the magicgui widgets of the settings and knows how each maps onto the core's
``model=``, ``device=`` and :class:`~napari_propsam.config.PropagationConfig` arguments; the dock
widget only places them. Models are kept in a dropdown whose entries map to ``model=`` values
(bundled names, checkpoint paths, ``{"propmask": ..., "box2mask": ...}`` mappings, bundles).

The engine controls are generated from the config's field metadata
(:func:`~napari_propsam.config.option_specs`): the options declared with ``widget=`` get a control
with the declared label, tooltip, range and choices, so ``config.py`` is the one place to change.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from magicgui.widgets import CheckBox, ComboBox, Container, FloatSpinBox, PushButton, SpinBox
from magicgui.widgets.bases import ValueWidget

from ..config import OptionSpec, PropagationConfig, option_specs
from ..device import DEVICE_CHOICES
from ..registry import BUNDLED, DEFAULT_MODEL, ModelBundle, ModelSpec, list_models
from ..weights import CheckpointError
from . import _notify

logger = logging.getLogger(__name__)

CHECKPOINT_SUFFIXES = (".pth", ".pt", ".safetensors")


def widget_options() -> tuple[OptionSpec, ...]:
    """The :class:`PropagationConfig` options the widget offers (declared with ``widget=``)."""
    return tuple(s for s in option_specs(PropagationConfig) if s.widget is not None)


def option_control(spec: OptionSpec) -> ValueWidget:
    """The control of one engine option: its label, tooltip, default and range or choices.

    Raises:
        ValueError: an option kind the widget has no control for, or a number without a
            ``widget_range`` (a spin box needs finite bounds).
    """
    tip = spec.tooltip or spec.help
    if spec.kind == "choice":
        return ComboBox(
            label=spec.label, choices=list(spec.choices), value=spec.default, tooltip=tip
        )
    if spec.kind == "flag":
        return CheckBox(text=spec.label, value=spec.default, tooltip=tip)
    if spec.kind in ("real", "whole") and spec.widget_range is not None:
        lo, hi = spec.widget_range
        kind = FloatSpinBox if spec.kind == "real" else SpinBox
        step = spec.step if spec.step is not None else 1
        return kind(label=spec.label, value=spec.default, min=lo, max=hi, step=step, tooltip=tip)
    raise ValueError(f"the widget has no control for option {spec.name!r} ({spec.kind})")


def _control_value(spec: OptionSpec, value: Any) -> Any:
    """A control's value as the config's type (spin boxes may hand back numpy or int)."""
    cast = {"real": float, "whole": int, "flag": bool, "choice": str}[spec.kind]
    return cast(value)


class Settings:
    """Model, device and engine options of the dock widget.

    Attributes:
        model_row: The model dropdown with its *Browse…* button (shared by every panel).
        device: The device dropdown.
        controls: The engine options' controls by option name, generated from the metadata of
            :class:`PropagationConfig`; each is also an attribute of that name (``thickness``,
            ``min_area``, ``crop_ratio``, ``intensity``, ``stop_rule``).
        thickness: Propagation thickness per round (placed by the dock widget).
        advanced: The options declared ``widget="advanced"`` (*Min area*, *Crop ratio*,
            *Intensity*, *Stop rule*) and *Overwrite other labels*.
    """

    def __init__(self) -> None:
        self._specs: dict[str, ModelSpec] = {}
        self.model = ComboBox(label="Model", choices=self._model_choices)
        self.browse = PushButton(text="Browse…", tooltip="Use a PropMask .pth/.safetensors file")
        self.model_row = Container(
            widgets=[self.model, self.browse], layout="horizontal", labels=False, label="Model"
        )
        self.device = ComboBox(label="Device", choices=list(DEVICE_CHOICES), value="auto")
        self._options = {spec.name: spec for spec in widget_options()}
        self.controls: dict[str, ValueWidget] = {}
        for name, spec in self._options.items():
            self.controls[name] = option_control(spec)
            setattr(self, name, self.controls[name])  # settings.thickness, settings.min_area, …
        self.overwrite = CheckBox(text="Overwrite other labels", value=False)
        advanced = [self.controls[n] for n, s in self._options.items() if s.widget == "advanced"]
        self.advanced = Container(widgets=[*advanced, self.overwrite], label="Advanced")
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
            name: _control_value(spec, self.controls[name].value)
            for name, spec in self._options.items()
        }

    def configure(
        self,
        *,
        device: str | None = None,
        overwrite: bool | None = None,
        **options: Any,
    ) -> None:
        """Set the settings from a script (None leaves a setting as it is).

        Args:
            device: ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"mps"``.
            overwrite: Let new objects take voxels of other labels.
            **options: Engine options the widget shows: ``thickness``, ``min_area``,
                ``crop_ratio``, ``intensity``, ``stop_rule``.

        Raises:
            ValueError: an unknown device or a value the engine rejects.
            TypeError: an option the widget does not show.
        """
        if device is not None and device not in DEVICE_CHOICES:
            raise ValueError(f"device must be one of {DEVICE_CHOICES}, got {device!r}")
        unknown = sorted(set(options) - set(self._options))
        if unknown:
            raise TypeError(f"unknown setting(s) {unknown}; valid: {sorted(self._options)}")
        opts = self.options()
        for name, value in options.items():
            if value is None or (self._options[name].kind == "choice" and value == ""):
                continue  # None (and, as before, an empty choice) leaves the setting as it is
            opts[name] = float(value) if self._options[name].kind == "real" else value
        PropagationConfig(**opts)  # validate before touching any widget
        if device is not None:
            self.device.value = device
        for name, value in opts.items():
            self.controls[name].value = value
        if overwrite is not None:
            self.overwrite.value = bool(overwrite)
