"""Options of the segmentation engine, shared by the API, the CLI and the widgets.

Every option lives in one frozen dataclass; :func:`split_options` routes ``**options`` of the
scripting API to the right one, so a typo is an error, not a silently ignored keyword.

Each option is declared once: its field's metadata holds its label, help text, unit, valid range
or choices, and where it is offered (``propsam`` flags, the widget's settings). The config
validates itself from that metadata, and the CLI (``cli/_common.py``) and the widget
(``_widgets/_settings.py``) build their arguments and controls from it; read it with
:func:`option_specs`.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field, fields, replace
from typing import Any

# Kept here (not imported from transforms) so the config stays free of numpy/torch/OpenCV.
INTENSITY_MODES: tuple[str, ...] = ("percentile", "ct-window")
STOP_RULES: tuple[str, ...] = ("symmetric", "released")


#: Upper bounds that keep a typo from allocating gigabytes (a crop is read and padded per slice).
MAX_CROP_RATIO = 20.0
MAX_MIN_CROP = 4096

#: Kinds of option: a real number, a whole number, True/False, one of ``choices``, or a sequence
#: of percentiles.
OPTION_KINDS: tuple[str, ...] = ("real", "whole", "flag", "choice", "percentiles")
#: Where the widget places an option: next to the model (``"basic"``) or under *Advanced*.
WIDGET_PLACES: tuple[str, ...] = ("basic", "advanced")


def _real(name: str, value: Any, lo: float, hi: float = math.inf, lo_open: bool = False) -> float:
    """``value`` as a finite float in ``[lo, hi]`` (``(lo, hi]`` with ``lo_open``), or a
    ValueError that names the option and says what is expected."""
    low = f"> {lo:g}" if lo_open else f">= {lo:g}"
    expected = f"a finite number {low}" + (f" and <= {hi:g}" if math.isfinite(hi) else "")
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be {expected}, got {value!r} ({type(value).__name__})")
    v = float(value)
    if not math.isfinite(v) or v > hi or v < lo or (lo_open and v == lo):
        raise ValueError(f"{name} must be {expected}, got {value!r}")
    return v


def _whole(name: str, value: Any, lo: int, hi: float = math.inf) -> int:
    """``value`` as an int in ``[lo, hi]`` (a float must be whole, e.g. 4.0), or a ValueError
    that names the option."""
    bound = f" and <= {int(hi)}" if math.isfinite(hi) else ""
    expected = f"a whole number >= {lo}{bound}"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be {expected}, got {value!r} ({type(value).__name__})")
    v = float(value)
    if not math.isfinite(v) or not v.is_integer() or v < lo or v > hi:
        raise ValueError(f"{name} must be {expected}, got {value!r}")
    return int(v)


def _flag(name: str, value: Any) -> bool:
    try:  # True/False, 0/1 and numpy booleans; a string or an array is refused
        ok = not isinstance(value, str | bytes) and value in (True, False)
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def _percentiles(name: str, values: Any) -> tuple[float, ...]:
    if isinstance(values, str | bytes) or not hasattr(values, "__iter__"):
        raise ValueError(f"{name} must be a sequence of percentiles in 0..100, got {values!r}")
    return tuple(_real(name, v, 0.0, 100.0) for v in values)


@dataclass(frozen=True)
class OptionSpec:
    """One engine option as its field's metadata declares it (read with :func:`option_specs`).

    Attributes:
        name: Field name, also the keyword of the scripting API.
        default: Field default.
        label: Short label, as the widget shows it.
        help: One-line help, as ``propsam --help`` shows it.
        kind: One of :data:`OPTION_KINDS`.
        unit: Unit of the value ("" when it has none).
        range: ``(low, high)`` of the values the engine accepts (``high`` may be ``inf``); for
            ``"percentiles"`` the range of each value; None for flags and choices.
        low_open: ``low`` itself is refused.
        choices: The valid values of a ``"choice"``.
        cli: Offered as a ``--flag`` by the commands that run the engine.
        widget: Where the widget offers it (one of :data:`WIDGET_PLACES`), or None.
        tooltip: The widget's tooltip, worded for its controls ("" = ``help``).
        widget_range: ``(min, max)`` of the widget's spin box, inside ``range``.
        step: Step of the widget's spin box.
        flag_name: The command-line flag without its dashes when it is not the field name
            (e.g. ``"split"`` for ``split_touching``, offered as ``--split/--no-split``).
    """

    name: str
    default: Any
    label: str
    help: str
    kind: str
    unit: str = ""
    range: tuple[float, float] | None = None
    low_open: bool = False
    choices: tuple[str, ...] = ()
    cli: bool = False
    widget: str | None = None
    tooltip: str = ""
    widget_range: tuple[float, float] | None = None
    step: float | None = None
    flag_name: str = ""

    @property
    def flag(self) -> str:
        """The command-line flag, e.g. ``--min-area``."""
        return "--" + (self.flag_name or self.name).replace("_", "-")

    def check(self, value: Any) -> Any:
        """``value`` validated and normalised (``4.0`` -> ``4`` for a whole number).

        Raises:
            ValueError: a value the engine refuses, with a message naming the option.
        """
        lo, hi = self.range if self.range is not None else (-math.inf, math.inf)
        if self.kind == "real":
            return _real(self.name, value, lo, hi, lo_open=self.low_open)
        if self.kind == "whole":
            return _whole(self.name, value, int(lo), hi)
        if self.kind == "flag":
            return _flag(self.name, value)
        if self.kind == "percentiles":
            return _percentiles(self.name, value)
        if value not in self.choices:
            raise ValueError(f"{self.name} must be one of {list(self.choices)}, got {value!r}")
        return value


def declare_option(
    label: str,
    help: str,
    kind: str,
    *,
    unit: str = "",
    range: tuple[float, float] | None = None,
    low_open: bool = False,
    choices: tuple[str, ...] = (),
    cli: bool = False,
    widget: str | None = None,
    tooltip: str = "",
    widget_range: tuple[float, float] | None = None,
    step: float | None = None,
    flag_name: str = "",
) -> dict[str, Any]:
    """Field metadata declaring one option (the attributes of :class:`OptionSpec`).

    Every config dataclass whose fields are options (:class:`PropagationConfig`,
    :class:`BoxConfig`, ``similar.SimilarConfig``) declares them with this, so the CLI flags,
    the widget's controls and the validation are generated from one place.
    """
    if kind not in OPTION_KINDS or (widget is not None and widget not in WIDGET_PLACES):
        raise ValueError(f"bad option declaration {label!r}: kind {kind!r}, widget {widget!r}")
    if (kind in ("real", "whole", "percentiles")) != (range is not None) or (
        (kind == "choice") != bool(choices)
    ):
        raise ValueError(f"option {label!r}: give a range for numbers, choices for a choice")
    return {
        "label": label, "help": help, "kind": kind, "unit": unit, "range": range,
        "low_open": low_open, "choices": choices, "cli": cli, "widget": widget,
        "tooltip": tooltip, "widget_range": widget_range, "step": step, "flag_name": flag_name,
    }  # fmt: skip


def option_specs(config: Any) -> tuple[OptionSpec, ...]:
    """The declared options of a config dataclass (or instance), in field order.

    Fields without option metadata are left out.

    Args:
        config: e.g. :class:`PropagationConfig` or ``PropagationConfig()``.
    """
    return tuple(
        OptionSpec(name=f.name, default=f.default, **f.metadata)
        for f in fields(config)
        if "kind" in f.metadata
    )


def checked_options(config: Any) -> dict[str, Any]:
    """Every declared option of ``config`` (a dataclass instance) validated against its
    metadata and normalised, by name; choices first, so a misspelt mode is reported before any
    number.

    Raises:
        ValueError: the first value the option's declaration refuses, naming the option.
    """
    specs = sorted(option_specs(config), key=lambda s: s.kind != "choice")
    return {s.name: s.check(getattr(config, s.name)) for s in specs}


@dataclass(frozen=True)
class PropagationConfig:
    """How PropMask propagates a 2D mask through a volume (the released procedure,
    ``docs/method.md``).

    Each field's metadata declares its label, help, unit and valid range (:func:`option_specs`);
    every field is validated, and normalised (``4.0`` -> ``4``), when the config is built.

    Attributes:
        thickness: Propagation thickness: how far each round reaches on each side of its guiding
            slice, in the physical units of ``spacing`` (the paper's default is 20 mm). When no
            spacing is given, the unit is slices.
        max_neighbours: Cap on the neighbours per side ``K`` (released code: 40).
        min_area: A frontier slice guides the next round only if its vote sum (the pixels'
            votes added up over every prediction of that slice) is above this; see
            ``stop_rule`` for the side(s) it applies to.
        crop_ratio: Side of the square crop relative to the guiding mask's larger extent.
        min_crop: Smallest crop side in pixels.
        lower_percentile: Normalisation lower percentile, taken inside the prompt mask.
        upper_percentile: Normalisation upper percentile, taken inside the prompt mask.
        max_batch: Most adjacent slices per forward pass; bounds memory and cancel latency.
        keep_prompt_component: Drop 3D components that do not touch the prompt (released code).
        max_rounds: Safety cap on propagation rounds per direction (0 = no cap).
        intensity: ``"percentile"`` clips every slice to the prompt's
            ``lower/upper_percentile`` intensities; ``"ct-window"`` (the notebook's
            ``MODALITY="CT"``) turns them into an integer window centre/width first. Either way
            each slice is then min-max scaled by its own range to uint8.
        stop_rule: ``"symmetric"`` (our default): both fronts continue while the frontier
            slice's vote sum is above ``min_area``. ``"released"``: the authors' code, which
            applies ``min_area`` towards slice 0 but continues towards the last slice while the
            vote sum is above 0.
    """

    thickness: float = field(
        default=20.0,
        metadata=declare_option(
            "Thickness",
            "propagation thickness in spacing units (slices without --spacing)",
            "real", unit="spacing units (slices without a spacing)", range=(0.0, math.inf),
            low_open=True, cli=True, widget="basic",
            tooltip="Propagation thickness per round, in the image's scale units "
            "(slices when the scale is 1)",
            widget_range=(0.1, 10000.0), step=1.0,
        ),
    )  # fmt: skip
    max_neighbours: int = field(
        default=40,
        metadata=declare_option(
            "Max neighbours", "cap on the neighbours per side K of one round", "whole",
            unit="slices", range=(1, math.inf),
        ),
    )  # fmt: skip
    min_area: float = field(
        default=100.0,
        metadata=declare_option(
            "Min area",
            "a front continues while its frontier slice's vote sum is above this (pixels; "
            "--stop-rule says on which side)",
            "real", unit="pixels", range=(0.0, math.inf), cli=True, widget="advanced",
            tooltip="Advanced: stop when the object's area on the front slice drops below "
            "this (pixels)",
            widget_range=(0.0, 1e7), step=10.0,
        ),
    )  # fmt: skip
    crop_ratio: float = field(
        default=1.5,
        metadata=declare_option(
            "Crop ratio", "side of the square crop relative to the object's larger extent",
            "real", unit="x object extent", range=(1.0, MAX_CROP_RATIO), cli=True,
            widget="advanced", tooltip="Advanced: crop side relative to the object's extent",
            widget_range=(1.0, 10.0), step=0.1,
        ),
    )  # fmt: skip
    min_crop: int = field(
        default=16,
        metadata=declare_option(
            "Min crop", "smallest crop side", "whole", unit="pixels", range=(2, MAX_MIN_CROP)
        ),
    )
    lower_percentile: float = field(
        default=0.5,
        metadata=declare_option(
            "Lower percentile", "normalisation lower percentile, taken inside the prompt mask",
            "real", unit="%", range=(0.0, 100.0),
        ),
    )  # fmt: skip
    upper_percentile: float = field(
        default=99.5,
        metadata=declare_option(
            "Upper percentile", "normalisation upper percentile, taken inside the prompt mask",
            "real", unit="%", range=(0.0, 100.0),
        ),
    )  # fmt: skip
    max_batch: int = field(
        default=32,
        metadata=declare_option(
            "Max batch", "most adjacent slices per forward pass (bounds memory and cancel "
            "latency)", "whole", unit="slices", range=(1, math.inf),
        ),
    )  # fmt: skip
    keep_prompt_component: bool = field(
        default=True,
        metadata=declare_option(
            "Keep prompt component", "drop 3D components that do not touch the prompt", "flag"
        ),
    )
    max_rounds: int = field(
        default=0,
        metadata=declare_option(
            "Max rounds", "safety cap on propagation rounds per direction (0 = no cap)",
            "whole", unit="rounds", range=(0, math.inf),
        ),
    )  # fmt: skip
    intensity: str = field(
        default="percentile",
        metadata=declare_option(
            "Intensity",
            "per-slice intensity clipping: percentile window of the prompt (default) or the "
            "released notebook's integer CT window",
            "choice", choices=INTENSITY_MODES, cli=True, widget="advanced",
            tooltip="Advanced: clip each slice to the prompt's percentile window (percentile) "
            "or to the released notebook's integer CT window (ct-window, for Hounsfield units)",
        ),
    )  # fmt: skip
    stop_rule: str = field(
        default="symmetric",
        metadata=declare_option(
            "Stop rule",
            "symmetric: both fronts stop at --min-area (default); released: the authors' code "
            "(--min-area towards slice 0 only)",
            "choice", choices=STOP_RULES, cli=True, widget="advanced",
            tooltip="Advanced: symmetric stops both fronts at Min area; released is the "
            "authors' code (Min area towards slice 0 only)",
        ),
    )  # fmt: skip

    def __post_init__(self) -> None:
        # Checked here, when the config is built, so a bad value fails before any work instead
        # of deep in the engine after Box2Mask ran.
        checked = checked_options(self)
        if not checked["lower_percentile"] < checked["upper_percentile"]:
            raise ValueError(
                "lower_percentile must be below upper_percentile, got "
                f"{self.lower_percentile!r} and {self.upper_percentile!r}"
            )
        for name, value in checked.items():
            object.__setattr__(self, name, value)

    def neighbours(self, spacing_along_axis: float | None) -> int:
        """Neighbours per side ``K = min(int(thickness / spacing), max_neighbours)``, at least 1.

        Args:
            spacing_along_axis: Slice spacing along the propagation axis, or None when units are
                unknown (then ``thickness`` counts slices).
        """
        step = 1.0 if spacing_along_axis is None else float(spacing_along_axis)
        if not (math.isfinite(step) and step > 0):
            raise ValueError(f"spacing must be positive, got {spacing_along_axis}")
        # int(thickness / spacing) exactly as the released code computes it; at least 1 so a
        # spacing above the thickness still propagates (the released code would stop at once).
        return max(1, min(int(self.thickness / step), self.max_neighbours))


@dataclass(frozen=True)
class BoxConfig:
    """How Box2Mask turns a box into the guiding mask (docs/method.md, "Box prompts").

    The crop is normalised with every ``(vmin, vmax)`` pair of percentile candidates; the softmax
    outputs are averaged into a first estimate, then the crop is normalised again from the
    percentiles inside that estimate and predicted once more. Each field's metadata declares its
    label, help, unit and valid range (:func:`option_specs`).

    Attributes:
        vmin_percentiles: Candidate lower percentiles of the box crop.
        vmax_percentiles: Candidate upper percentiles of the box crop.
        refine: Run the second, foreground-normalised pass.
        refine_lower: Lower percentile inside the first estimate for the second pass.
        refine_upper: Upper percentile inside the first estimate for the second pass.
    """

    vmin_percentiles: tuple[float, ...] = field(
        default=(5.0, 12.5, 20.0),
        metadata=declare_option(
            "Box lower percentiles", "candidate lower percentiles of the box crop",
            "percentiles", unit="%", range=(0.0, 100.0),
        ),
    )  # fmt: skip
    vmax_percentiles: tuple[float, ...] = field(
        default=(90.0, 92.5, 95.0),
        metadata=declare_option(
            "Box upper percentiles", "candidate upper percentiles of the box crop",
            "percentiles", unit="%", range=(0.0, 100.0),
        ),
    )  # fmt: skip
    refine: bool = field(
        default=True,
        metadata=declare_option(
            "Refine box", "run Box2Mask's second, foreground-normalised pass", "flag"
        ),
    )
    refine_lower: float = field(
        default=0.5,
        metadata=declare_option(
            "Refine lower percentile", "lower percentile inside the first estimate, for the "
            "second pass", "real", unit="%", range=(0.0, 100.0),
        ),
    )  # fmt: skip
    refine_upper: float = field(
        default=99.5,
        metadata=declare_option(
            "Refine upper percentile", "upper percentile inside the first estimate, for the "
            "second pass", "real", unit="%", range=(0.0, 100.0),
        ),
    )  # fmt: skip

    def __post_init__(self) -> None:
        checked = checked_options(self)
        vmin, vmax = checked["vmin_percentiles"], checked["vmax_percentiles"]
        if not vmin or not vmax:
            raise ValueError(
                "vmin_percentiles and vmax_percentiles need at least one candidate each"
            )
        for lo in vmin:
            for hi in vmax:
                if not lo < hi:
                    raise ValueError(
                        f"every vmin_percentiles value must be below every vmax_percentiles "
                        f"value, got the window ({lo:g}, {hi:g})"
                    )
        lower, upper = checked["refine_lower"], checked["refine_upper"]
        if not lower < upper:
            raise ValueError(
                f"refine_lower must be below refine_upper, got {lower:g} and {upper:g}"
            )
        for name, value in checked.items():
            object.__setattr__(self, name, value)

    @property
    def candidates(self) -> list[tuple[float, float]]:
        """All ``(vmin_percentile, vmax_percentile)`` windows."""
        return [(lo, hi) for lo in self.vmin_percentiles for hi in self.vmax_percentiles]


def _check_base(arg: str, base: Any, cls: type, other_arg: str, other: type) -> None:
    """Refuse a base config of the wrong class: swapped ``config``/``box_config`` would
    otherwise fail later with a confusing "unexpected field" error."""
    if base is None or isinstance(base, cls):
        return
    hint = f"; pass a {other.__name__} as {other_arg}=" if isinstance(base, other) else ""
    raise TypeError(f"{arg} must be a {cls.__name__} or None, got {type(base).__name__}{hint}")


def split_options(
    options: dict[str, Any],
    propagation: PropagationConfig | None = None,
    box: BoxConfig | None = None,
) -> tuple[PropagationConfig, BoxConfig]:
    """Route keyword options to the config they belong to.

    A keyword option overrides the same field of the base config, as
    :func:`dataclasses.replace` would.

    Args:
        options: e.g. ``{"thickness": 10, "min_area": 50, "vmin_percentiles": (5, 10)}``.
        propagation: Base propagation config (defaults if None).
        box: Base box config (defaults if None).

    Raises:
        TypeError: an option belongs to neither config, or a base config of the wrong type.
    """
    _check_base("config", propagation, PropagationConfig, "box_config", BoxConfig)
    _check_base("box_config", box, BoxConfig, "config", PropagationConfig)
    prop = propagation or PropagationConfig()
    boxc = box or BoxConfig()
    pnames = {f.name for f in fields(PropagationConfig)}
    bnames = {f.name for f in fields(BoxConfig)}
    unknown = set(options) - pnames - bnames
    if unknown:
        raise TypeError(f"unknown option(s) {sorted(unknown)}; valid: {sorted(pnames | bnames)}")
    p_kw = {k: v for k, v in options.items() if k in pnames}
    b_kw = {k: tuple(v) if isinstance(v, list) else v for k, v in options.items() if k in bnames}
    return replace(prop, **p_kw), replace(boxc, **b_kw)
