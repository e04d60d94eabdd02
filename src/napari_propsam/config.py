"""Options of the segmentation engine, shared by the API, the CLI and the widgets.

Every option lives in one frozen dataclass; :func:`split_options` routes ``**options`` of the
scripting API to the right one, so a typo is an error, not a silently ignored keyword.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, fields, replace
from typing import Any

# Kept here (not imported from transforms) so the config stays free of numpy/torch/OpenCV.
INTENSITY_MODES: tuple[str, ...] = ("percentile", "ct-window")
STOP_RULES: tuple[str, ...] = ("symmetric", "released")


#: Upper bounds that keep a typo from allocating gigabytes (a crop is read and padded per slice).
MAX_CROP_RATIO = 20.0
MAX_MIN_CROP = 4096


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
class PropagationConfig:
    """How PropMask propagates a 2D mask through a volume (the released procedure,
    ``docs/method.md``).

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

    thickness: float = 20.0
    max_neighbours: int = 40
    min_area: float = 100.0
    crop_ratio: float = 1.5
    min_crop: int = 16
    lower_percentile: float = 0.5
    upper_percentile: float = 99.5
    max_batch: int = 32
    keep_prompt_component: bool = True
    max_rounds: int = 0
    intensity: str = "percentile"
    stop_rule: str = "symmetric"

    def __post_init__(self) -> None:
        if self.intensity not in INTENSITY_MODES:
            raise ValueError(
                f"intensity must be one of {list(INTENSITY_MODES)}, got {self.intensity!r}"
            )
        if self.stop_rule not in STOP_RULES:
            raise ValueError(f"stop_rule must be one of {list(STOP_RULES)}, got {self.stop_rule!r}")
        # Every option is checked (and normalised: 4.0 -> 4) here, when the config is built, so
        # a bad value fails before any work instead of deep in the engine after Box2Mask ran.
        checked = {
            "thickness": _real("thickness", self.thickness, 0.0, lo_open=True),
            "max_neighbours": _whole("max_neighbours", self.max_neighbours, 1),
            "min_area": _real("min_area", self.min_area, 0.0),
            "crop_ratio": _real("crop_ratio", self.crop_ratio, 1.0, MAX_CROP_RATIO),
            "min_crop": _whole("min_crop", self.min_crop, 2, MAX_MIN_CROP),
            "lower_percentile": _real("lower_percentile", self.lower_percentile, 0.0, 100.0),
            "upper_percentile": _real("upper_percentile", self.upper_percentile, 0.0, 100.0),
            "max_batch": _whole("max_batch", self.max_batch, 1),
            "keep_prompt_component": _flag("keep_prompt_component", self.keep_prompt_component),
            "max_rounds": _whole("max_rounds", self.max_rounds, 0),
        }
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
    percentiles inside that estimate and predicted once more.

    Attributes:
        vmin_percentiles: Candidate lower percentiles of the box crop.
        vmax_percentiles: Candidate upper percentiles of the box crop.
        refine: Run the second, foreground-normalised pass.
        refine_lower: Lower percentile inside the first estimate for the second pass.
        refine_upper: Upper percentile inside the first estimate for the second pass.
    """

    vmin_percentiles: tuple[float, ...] = (5.0, 12.5, 20.0)
    vmax_percentiles: tuple[float, ...] = (90.0, 92.5, 95.0)
    refine: bool = True
    refine_lower: float = 0.5
    refine_upper: float = 99.5

    def __post_init__(self) -> None:
        vmin = _percentiles("vmin_percentiles", self.vmin_percentiles)
        vmax = _percentiles("vmax_percentiles", self.vmax_percentiles)
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
        lower = _real("refine_lower", self.refine_lower, 0.0, 100.0)
        upper = _real("refine_upper", self.refine_upper, 0.0, 100.0)
        if not lower < upper:
            raise ValueError(
                f"refine_lower must be below refine_upper, got {lower:g} and {upper:g}"
            )
        for name, value in (
            ("vmin_percentiles", vmin),
            ("vmax_percentiles", vmax),
            ("refine", _flag("refine", self.refine)),
            ("refine_lower", lower),
            ("refine_upper", upper),
        ):
            object.__setattr__(self, name, value)

    @property
    def candidates(self) -> list[tuple[float, float]]:
        """All ``(vmin_percentile, vmax_percentile)`` windows."""
        return [(lo, hi) for lo in self.vmin_percentiles for hi in self.vmax_percentiles]


def split_options(
    options: dict[str, Any],
    propagation: PropagationConfig | None = None,
    box: BoxConfig | None = None,
) -> tuple[PropagationConfig, BoxConfig]:
    """Route keyword options to the config they belong to.

    Args:
        options: e.g. ``{"thickness": 10, "min_area": 50, "vmin_percentiles": (5, 10)}``.
        propagation: Base propagation config (defaults if None).
        box: Base box config (defaults if None).

    Raises:
        TypeError: an option belongs to neither config.
    """
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
