"""2D image series: carry an annotation from a few annotated images to every other image.

A series is a stack of separate 2D images (a folder of PNG/TIF files, or an ``(N, H, W)``
array whose first axis indexes images), not a volume: neighbouring images need not be similar
and there is no slice spacing. So instead of propagating slice by slice (where errors would chain
from image to image), every image is guided DIRECTLY by the nearest annotated image (ties go to
the earlier one), exactly as PropMask treats an adjacent slice (docs/method.md): the guide's
square crop window (``crop_ratio`` around the guide mask) is cut at the same position from the
target, both are normalised with the 0.5/99.5 percentiles inside the guide mask, and PropMask
predicts the target's mask in that window. Calls are batched up to ``max_batch`` targets.

Each object id of an annotation is propagated separately; where two ids are predicted on the
same pixel, the smaller id keeps it.

Images of different sizes are refused (with the sizes named): the crop window is carried over
at the same pixel position, which only means something when the images share one size. Resize
them to a common size first (e.g. ``skimage.transform.resize``).

Arrays are ``(N, H, W)`` (series axis first, then rows and columns, like ZYX volumes); no
napari imports here.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from .config import PropagationConfig, split_options
from .predictors import MaskPropagator, PropMaskPredictor, PropTask
from .prompt_checks import prepare_mask
from .registry import ModelSpec, resolve_model
from .transforms import crop_planes, prepare_guide, slices_to_uint8

logger = logging.getLogger(__name__)

__all__ = [
    "IMAGE_SUFFIXES",
    "SeriesUpdate",
    "nearest_guides",
    "propagate_series",
    "propagate_series_stream",
    "read_image",
    "read_series",
    "series_files",
    "to_grey",
]

#: File types :func:`read_series` reads from a folder.
IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp")

# Rec. 709 luma, the weights of skimage.color.rgb2gray.
_LUMA = np.array([0.2125, 0.7154, 0.0721], np.float32)


class SeriesUpdate(NamedTuple):
    """One image of the series is done.

    Attributes:
        index: Position of the image in the series.
        mask: ``(H, W)`` int32 labels of that image (0 = background, ids as annotated).
        progress: Fraction of the series done, 0..1 (1.0 on the last update).
    """

    index: int
    mask: np.ndarray
    progress: float


def _natural_key(name: str) -> list[Any]:
    """``img2.png`` before ``img10.png``: digit runs compare as numbers."""
    return [int(p) if p.isdigit() else p.lower() for p in re.split(r"(\d+)", name)]


def to_grey(image: np.ndarray) -> np.ndarray:
    """One ``(H, W)`` grey or ``(H, W, 3|4)`` RGB(A) image -> ``(H, W)`` float32 grey.

    Args:
        image: One image, ``(H, W)`` grey or ``(H, W, 3|4)`` RGB(A), any real dtype.

    Raises:
        ValueError: any other shape.
    """
    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[-1] in (3, 4):
        return (arr[..., :3].astype(np.float32) @ _LUMA).astype(np.float32)
    if arr.ndim != 2:
        raise ValueError(f"a series image must be 2D grey or RGB(A), got shape {arr.shape}")
    return arr.astype(np.float32)


def read_image(path: str | Path) -> np.ndarray:
    """One 2D image file as stored: ``(H, W)`` grey or ``(H, W, 3|4)`` RGB(A), its own dtype."""
    path = Path(path)
    if path.suffix.lower() in (".tif", ".tiff"):
        import tifffile

        return tifffile.imread(str(path))
    from skimage import io

    return io.imread(str(path))


def series_files(folder: str | Path) -> list[Path]:
    """The image files of a series folder, in natural name order (``img2`` before ``img10``).

    Files with other suffixes than :data:`IMAGE_SUFFIXES` and hidden files are ignored.

    Raises:
        ValueError: not a folder, or no images in it.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"{folder} is not a folder of images")
    files = sorted(
        (
            p
            for p in folder.iterdir()
            if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
        ),
        key=lambda p: _natural_key(p.name),
    )
    if not files:
        raise ValueError(
            f"no images in {folder} (looked for {', '.join(IMAGE_SUFFIXES)}); a series needs at "
            "least one 2D image file"
        )
    return files


def read_series(folder: str | Path) -> np.ndarray:
    """Read a folder of 2D images (PNG, TIF, JPG, BMP) as a series, in natural name order.

    Args:
        folder: Directory (see :func:`series_files` for which files count).

    Returns:
        ``(N, H, W)`` float32 grey images (RGB(A) converted with Rec. 709 luma).

    Raises:
        ValueError: not a folder, no images in it, or images of different sizes (named).
    """
    files = series_files(folder)
    images = [to_grey(read_image(p)) for p in files]
    _check_same_size(images, [p.name for p in files])
    logger.info("read %d images of %s from %s", len(images), images[0].shape, folder)
    return np.stack(images)


def _check_same_size(images: Sequence[np.ndarray], names: Sequence[str] | None = None) -> None:
    first = images[0].shape
    for i, im in enumerate(images):
        if im.shape != first:
            what = f"{names[i]} ({i})" if names else f"image {i}"
            base = f"{names[0]} (0)" if names else "image 0"
            raise ValueError(
                f"{what} is {im.shape[0]}x{im.shape[1]} but {base} is {first[0]}x{first[1]}; "
                "all images of a series must have one size (resize them first)"
            )


def _as_series(images: Any) -> np.ndarray:
    """A folder path, a sequence of 2D images or an ``(N, H, W[, C])`` array -> ``(N, H, W)``."""
    if isinstance(images, str | Path):
        return read_series(images)
    if isinstance(images, np.ndarray) or hasattr(images, "shape"):
        arr = np.asarray(images)
        if arr.ndim == 4 and arr.shape[-1] in (3, 4):
            arr = (arr[..., :3].astype(np.float32) @ _LUMA).astype(np.float32)
        if arr.ndim != 3:
            raise ValueError(
                f"a series must be (N, H, W) grey or (N, H, W, 3|4) RGB(A), got shape {arr.shape}"
            )
        series = arr.astype(np.float32, copy=False)
    else:
        listed = [to_grey(im) for im in images]
        if not listed:
            raise ValueError("the series is empty")
        _check_same_size(listed)
        series = np.stack(listed)
    if series.shape[0] == 0 or min(series.shape[1:]) < 1:
        raise ValueError(f"the series is empty: shape {series.shape}")
    if not np.all(np.isfinite(series)):
        raise ValueError("the series contains NaN or Inf values; replace them first")
    return series


def _check_annotations(
    annotations: Mapping[int, np.ndarray], n: int, plane: tuple[int, int]
) -> dict[int, np.ndarray]:
    """Validated ``{index: (H, W) int32 labels}`` (bool masks become id 1)."""
    if not annotations:
        raise ValueError("no annotations: annotate at least one image, e.g. {0: mask}")
    out = {}
    for key, ann in annotations.items():
        if isinstance(key, bool) or not float(key).is_integer():
            raise ValueError(f"annotation index must be an integer, got {key!r}")
        idx = int(key)
        if not 0 <= idx < n:
            raise ValueError(f"annotation index {idx} is out of range for a series of {n} images")
        arr = np.asarray(ann)
        if arr.shape != plane:
            raise ValueError(f"annotation {idx} has shape {arr.shape}, the images are {plane}")
        if arr.dtype.kind == "f" and not np.all(arr == np.round(arr)):
            raise ValueError(f"annotation {idx} must be a bool mask or integer labels")
        if arr.dtype.kind in "iu" and arr.min() < 0:
            raise ValueError(f"annotation {idx} has negative labels")
        out[idx] = arr.astype(np.int32)
    if not any(a.any() for a in out.values()):
        raise ValueError("the annotations are empty: paint at least one object")
    return out


def nearest_guides(n: int, annotated: Sequence[int]) -> dict[int, int]:
    """Guide of every image: the nearest annotated index, the earlier one on a tie.

    Args:
        n: Number of images.
        annotated: Annotated indices (guides).

    Returns:
        ``{target index: guide index}`` for every index not in ``annotated``.
    """
    guides = sorted({int(a) for a in annotated})
    if not guides:
        return {}
    return {t: _nearest(t, guides) for t in range(n) if t not in set(guides)}


def propagate_series_stream(
    images: Any,
    annotations: Mapping[int, np.ndarray],
    *,
    model: ModelSpec = None,
    device: str | torch.device | None = None,
    predictor: MaskPropagator | None = None,
    config: PropagationConfig | None = None,
    cancel: threading.Event | None = None,
    **options: Any,
) -> Iterator[SeriesUpdate]:
    """Propagate annotations to every image of a series, streaming one image at a time.

    Arguments are validated now; the work runs as the generator is iterated.

    Args:
        images: A folder of images (see :func:`read_series`), a sequence of ``(H, W)`` or
            ``(H, W, 3|4)`` images, or an ``(N, H, W)`` / ``(N, H, W, 3|4)`` array (first axis =
            image index). RGB(A) is converted to grey.
        annotations: ``{index: (H, W) mask}``: bool (one object, id 1) or int labels (each id
            > 0 one object, propagated separately) of the annotated images.
        model: Model (None = bundled default).
        device: Device request.
        predictor: Advanced/tests: a PropMask stand-in used instead of the model's network.
        config: :class:`PropagationConfig` (``crop_ratio``, ``min_crop``, percentiles,
            ``max_batch`` apply).
        cancel: When set, stops before the next forward pass.
        **options: Fields of :class:`PropagationConfig`.

    Yields:
        :class:`SeriesUpdate` ``(index, (H, W) int32 labels, progress)``: the annotated images
        first (their annotations, holes filled), then the others in index order as their
        forward passes finish.

    Raises:
        ValueError: empty folder or series, images of different sizes, annotation index out of
            range or of the wrong shape, empty annotations, constant intensities under an object.
        CheckpointError: the model cannot be loaded.
    """
    series = _as_series(images)
    cfg, _ = split_options(options, config, None)
    n, h, w = series.shape
    anns = _check_annotations(annotations, n, (h, w))
    guides, by_id = _prepare_guides(series, anns, cfg)
    if predictor is None:
        predictor = PropMaskPredictor(resolve_model(model).propmask.model, device)
    return _series_updates(series, anns, guides, by_id, predictor, cfg, cancel)


# A guide's ``(crop image, crop mask, (window, vmin, vmax))``, from transforms.prepare_guide.
_Guide = tuple[np.ndarray, np.ndarray, Any]


def _object_ids(labels: np.ndarray) -> Iterator[int]:
    """The ids > 0 of ``(H, W)`` labels, ascending."""
    return (int(v) for v in np.unique(labels) if v > 0)


def _prepare_guides(
    series: np.ndarray, anns: Mapping[int, np.ndarray], cfg: PropagationConfig
) -> tuple[dict[tuple[int, int], _Guide], dict[int, list[int]]]:
    """Window and normalisation per (guide image, id), checked now so bad objects fail early.

    Returns:
        ``({(guide, id): guide}, {id: [annotated images holding it, ascending]})``.

    Raises:
        ValueError: an object's guide cannot be prepared (e.g. constant intensities), named.
    """
    h, w = series.shape[1:]
    guides: dict[tuple[int, int], _Guide] = {}
    by_id: dict[int, list[int]] = {}
    for g in sorted(anns):
        for k in _object_ids(anns[g]):
            mask = prepare_mask(anns[g] == k, (h, w))
            try:
                guide = prepare_guide(series[g], mask, cfg)
            except ValueError as err:
                raise ValueError(f"object {k} on image {g}: {err}") from err
            guides[(g, k)] = (guide.image, guide.mask, (guide.window, *guide.bounds))
            by_id.setdefault(k, []).append(g)
    return guides, by_id


def _filled_annotation(ann: np.ndarray) -> np.ndarray:
    """``(H, W)`` int32 labels of an annotated image, each object's holes filled; where filled
    objects overlap, the smaller id keeps the pixel."""
    filled = np.zeros(ann.shape, np.int32)
    for k in _object_ids(ann):
        np.copyto(filled, np.int32(k), where=prepare_mask(ann == k, ann.shape) & (filled == 0))
    return filled


def _predict_chunk(
    chunk: Sequence[tuple[int, int, int]],
    series: np.ndarray,
    guides: Mapping[tuple[int, int], _Guide],
    predictor: MaskPropagator,
    out: dict[int, np.ndarray],
    remaining: dict[int, int],
) -> None:
    """One forward pass over ``(target, id, guide)`` jobs, painted into ``out[target]``.

    Each finished job decrements ``remaining[target]``.
    """
    h, w = series.shape[1:]
    groups: dict[tuple[int, int], list[int]] = {}
    for t, k, g in chunk:
        groups.setdefault((g, k), []).append(t)
    tasks = []
    for (g, k), ts in groups.items():
        guide_img, guide_mask, (win, vmin, vmax) = guides[(g, k)]
        crops = crop_planes(slices_to_uint8(series[ts], vmin, vmax), win)
        tasks.append(PropTask(guide_img, guide_mask, crops))
    preds = predictor.predict(tasks)
    for ((g, k), ts), pred in zip(groups.items(), preds, strict=True):
        win = guides[(g, k)][2][0]
        rows, cols = win.clipped((h, w))
        hh, ww = rows.stop - rows.start, cols.stop - cols.start
        for t, p in zip(ts, pred, strict=True):
            view = out[t][rows, cols]
            # Ids arrive in ascending order per target: the smaller id keeps overlaps.
            np.copyto(view, np.int32(k), where=p[:hh, :ww] & (view == 0))
            remaining[t] -= 1


def _series_updates(
    series: np.ndarray,
    anns: Mapping[int, np.ndarray],
    guides: Mapping[tuple[int, int], _Guide],
    by_id: Mapping[int, list[int]],
    predictor: MaskPropagator,
    cfg: PropagationConfig,
    cancel: threading.Event | None,
) -> Iterator[SeriesUpdate]:
    """The work of :func:`propagate_series_stream`, on arguments it has already checked."""
    n, h, w = series.shape
    done = 0
    for g in sorted(anns):
        done += 1
        yield SeriesUpdate(g, _filled_annotation(anns[g]), done / n)
    # Jobs ordered by target then id, so each image completes as early as possible.
    targets = [t for t in range(n) if t not in anns]
    jobs = [(t, k, _nearest(t, gs)) for t in targets for k, gs in sorted(by_id.items())]
    out = {t: np.zeros((h, w), np.int32) for t in targets}
    remaining = {t: len(by_id) for t in targets}
    next_target = 0  # position in ``targets`` of the next image to yield
    for start in range(0, len(jobs), cfg.max_batch):
        if cancel is not None and cancel.is_set():
            logger.info("series propagation cancelled")
            return
        _predict_chunk(
            jobs[start : start + cfg.max_batch], series, guides, predictor, out, remaining
        )
        while next_target < len(targets) and remaining[targets[next_target]] == 0:
            t = targets[next_target]
            next_target += 1
            done += 1
            yield SeriesUpdate(t, out.pop(t), done / n)


def _nearest(target: int, guides: Sequence[int]) -> int:
    """The guide nearest to ``target``; the earlier one on a tie."""
    return min(guides, key=lambda g: (abs(g - target), g))


def propagate_series(
    images: Any, annotations: Mapping[int, np.ndarray], **kwargs: Any
) -> np.ndarray:
    """Propagate annotations to every image of a series.

    Same arguments as :func:`propagate_series_stream`.

    Returns:
        ``(N, H, W)`` int32 labels, one plane per image (annotated images hold their
        annotations, holes filled).

    Example:
        >>> labels = napari_propsam.propagate_series("slides/", {0: first_mask})
    """
    series = _as_series(images)  # read a folder once, not once per use
    out = np.zeros(series.shape, np.int32)
    for upd in propagate_series_stream(series, annotations, **kwargs):
        out[upd.index] = upd.mask
    return out
