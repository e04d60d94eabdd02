"""Reading prompts out of napari layers: which plane is displayed, boxes and sketches on it.

Pure layer-reading glue: no segmentation here. Everything is returned in the image layer's data
coordinates (ZYX, boxes ``(row0, col0, row1, col1)`` in the plane of the two remaining axes, in
ascending axis order, as the core expects).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
from napari.components import ViewerModel
from napari.layers import Image, Labels, Layer, Shapes

from ..labeling import sketch_masks

logger = logging.getLogger(__name__)


class PromptError(ValueError):
    """The layers do not make a usable prompt; the message says what to do."""


@dataclass(frozen=True)
class PromptPlane:
    """The displayed 2D plane, in the image layer's data coordinates.

    Attributes:
        axis: Image data axis perpendicular to the screen (the propagation axis).
        index: Slice index along ``axis``.
        plane_shape: ``(H, W)`` of the plane (the two other axes, ascending).
    """

    axis: int
    index: int
    plane_shape: tuple[int, int]


@dataclass(frozen=True)
class BoxPrompt:
    """A rectangle of a Shapes layer on the prompt plane.

    Attributes:
        box: ``(row0, col0, row1, col1)`` pixel edges in the plane, half-open.
        shape_index: Position of the rectangle in its Shapes layer.
    """

    box: tuple[float, float, float, float]
    shape_index: int


def full_resolution(image: Image) -> Any:
    """The ``(Z, Y, X)`` array PropSAM computes on: the image's data, or for a multiscale image
    (e.g. an OME-Zarr pyramid) its full-resolution level, still lazy."""
    return image.data[0] if getattr(image, "multiscale", False) else image.data


def check_image(layer: Layer | None) -> Image:
    """The image layer, if it is a 3D single-channel image (multiscale: level 0 is used)."""
    if layer is None:
        raise PromptError("no image layer: open a 3D image (File > Open, or a sample) first")
    if not isinstance(layer, Image):
        raise PromptError(f"layer '{layer.name}' is not an image layer")
    if layer.rgb:
        raise PromptError(f"image '{layer.name}' is RGB; PropSAM needs a greyscale 3D volume")
    if layer.ndim != 3:
        raise PromptError(
            f"image '{layer.name}' is {layer.ndim}D with shape {tuple(layer.data.shape)}; "
            "PropSAM segments 3D volumes (Z, Y, X)"
        )
    return layer


def displayed_plane(viewer: ViewerModel, image: Image) -> PromptPlane:
    """The plane of ``image`` that the viewer displays now.

    Raises:
        PromptError: 3D rendering, or the displayed axes are not two of the image's axes.
    """
    dims = viewer.dims
    if dims.ndisplay != 2:
        raise PromptError("switch the viewer to 2D view: prompts live on the displayed slice")
    # napari aligns a layer's axes with the trailing world dimensions.
    offset = dims.ndim - image.ndim
    shown = sorted(d - offset for d in dims.displayed if d >= offset)
    if len(shown) != 2:
        raise PromptError("the displayed plane must be two axes of the image")
    axis = ({0, 1, 2} - set(shown)).pop()
    data_point = image.world_to_data(np.asarray(dims.point, dtype=float))
    index = int(np.round(data_point[axis]))
    n = full_resolution(image).shape[axis]
    if not 0 <= index < n:
        raise PromptError(
            f"the displayed slice ({index} along axis {axis}) is outside image '{image.name}' "
            f"(0..{n - 1}); scroll to a slice of the image"
        )
    plane_shape = tuple(int(full_resolution(image).shape[a]) for a in shown)
    return PromptPlane(axis, index, plane_shape)  # type: ignore[arg-type]


def _plane_axes(axis: int) -> tuple[int, int]:
    return tuple(a for a in range(3) if a != axis)  # type: ignore[return-value]


def rectangles(
    shapes: Shapes, image: Image, axis: int, viewer: ViewerModel
) -> list[tuple[int, BoxPrompt]]:
    """Every rectangle of ``shapes`` that lies on one slice of ``axis``, as ``(slice, box)``.

    A napari pixel ``i`` spans ``[i - 0.5, i + 0.5]`` in data coordinates, so a rectangle corner
    at ``c`` is the pixel edge ``c + 0.5``; rotated rectangles use their bounding box. A 2D
    Shapes layer lies on the viewer's current slice.
    """
    out = []
    rows_ax, cols_ax = _plane_axes(axis)
    world_point = np.asarray(viewer.dims.point, dtype=float)
    for i, (verts, kind) in enumerate(zip(shapes.data, shapes.shape_type, strict=True)):
        if kind != "rectangle":
            continue
        pts = []
        for v in np.asarray(verts, dtype=float):
            w = world_point.copy()
            # A 2D Shapes layer lives on the trailing world axes; the rest is the viewer's slice.
            w[len(w) - shapes.ndim :] = shapes.data_to_world(v)
            pts.append(image.world_to_data(w))
        pts = np.asarray(pts)
        index = int(np.round(pts[:, axis].mean()))
        if np.any(np.abs(pts[:, axis] - index) >= 0.5):
            continue  # not flat in this axis (drawn in another plane)
        r = pts[:, rows_ax] + 0.5
        c = pts[:, cols_ax] + 0.5
        out.append((index, BoxPrompt((r.min(), c.min(), r.max(), c.max()), i)))
    return out


def boxes_on_plane(
    shapes: Shapes, image: Image, plane: PromptPlane, viewer: ViewerModel
) -> list[BoxPrompt]:
    """Rectangles of ``shapes`` that lie on the displayed slice, as boxes in the image's plane
    (see :func:`rectangles`)."""
    return [b for k, b in rectangles(shapes, image, plane.axis, viewer) if k == plane.index]


def box_object_ids(shapes: Shapes) -> list[int | None]:
    """Per shape, the object id in the layer's ``id`` feature column (None: no id).

    Rectangles that share an id are prompts of one object (one per slice).
    """
    features = getattr(shapes, "features", None)
    n = len(shapes.data)
    if features is None or "id" not in getattr(features, "columns", ()):
        return [None] * n
    out: list[int | None] = []
    for v in list(features["id"])[:n]:
        try:
            f = float(v)
        except (TypeError, ValueError):
            out.append(None)
            continue
        out.append(int(f) if np.isfinite(f) and f > 0 else None)
    return out + [None] * (n - len(out))


def sketch_plane(labels: Labels, image: Image, plane: PromptPlane) -> np.ndarray:
    """The ``(H, W)`` plane of a prompt Labels layer on the displayed slice.

    The layer must be voxel-aligned with the image: the same 3D shape (or a 2D layer with the
    plane's shape, when the image's Y/X plane is displayed).
    """
    shape = tuple(labels.data.shape)
    if getattr(labels, "multiscale", False):
        raise PromptError(f"labels layer '{labels.name}' is multiscale; use a plain labels layer")
    if shape == tuple(full_resolution(image).shape):
        index: list[object] = [slice(None), slice(None)]
        index.insert(plane.axis, plane.index)
        return np.asarray(labels.data[tuple(index)])
    if len(shape) == 2 and plane.axis == 0 and shape == plane.plane_shape:
        return np.asarray(labels.data)
    raise PromptError(
        f"labels layer '{labels.name}' has shape {shape}, which does not match image "
        f"'{image.name}' {tuple(full_resolution(image).shape)}"
    )


def sketches_on_plane(labels: Labels, image: Image, plane: PromptPlane) -> dict[int, np.ndarray]:
    """``{label: (H, W) bool mask}`` painted in ``labels`` on the displayed slice."""
    return sketch_masks(sketch_plane(labels, image, plane))
