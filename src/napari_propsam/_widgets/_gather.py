"""Turning the widget's layers into the core's :class:`~napari_propsam.labeling.ObjectPrompt` list.

Runs on the main thread before a worker starts; reads only the displayed plane of the prompt
layers (never a whole volume) and raises :class:`~._layer_prompts.PromptError` with a message that
says what to do when the layers do not make a usable prompt.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from napari.components import ViewerModel
from napari.layers import Image, Labels, Layer, Shapes

from ..labeling import ObjectPrompt, SlicePrompt, assign_label_ids, slices_with_labels
from ..ownership import owned_component
from ..prompt_checks import prepare_mask
from ._layer_prompts import (
    PromptError,
    PromptPlane,
    box_object_ids,
    check_image,
    displayed_plane,
    full_resolution,
    rectangles,
    sketch_plane,
    sketches_on_plane,
)

logger = logging.getLogger(__name__)


@dataclass
class PromptSet:
    """The prompts found on the displayed plane of one prompt layer, before ids are assigned.

    Attributes:
        plane: The displayed plane.
        boxes: Per object its box (Shapes layers) or None.
        masks: Per object its ``(H, W)`` sketch (Labels layers) or None.
        wanted: Per object the label id it asks for, or None for a new id. Only a prompt that
            explicitly targets an existing object asks for one (a sketch painted in the output
            layer itself); a sketch's painted id otherwise only groups its prompt.
        names: Per object a short description for messages.
        box_keys: ``{object position: key}`` identifying each prompt (a box by its slice and
            rounded corners or by its layer and ``id`` feature, a sketch by its layer and
            painted id), so that running the same prompt again replaces its object under the
            same id instead of adding one.
        more: Per object its further prompts on other slices (same id, see
            :func:`read_prompt_layer`).
    """

    plane: PromptPlane
    boxes: list[tuple[float, float, float, float] | None] = field(default_factory=list)
    masks: list[np.ndarray | None] = field(default_factory=list)
    wanted: list[int | None] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    box_keys: dict[int, tuple] = field(default_factory=dict)
    more: list[tuple[SlicePrompt, ...]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.names)


@dataclass
class Gathered:
    """Everything a run needs from the layers.

    Attributes:
        image: The image layer.
        output: The output Labels layer.
        prompts: The objects, with their label ids.
        box_keys: See :attr:`PromptSet.box_keys`.
    """

    image: Image
    output: Labels
    prompts: list[ObjectPrompt]
    box_keys: dict[int, tuple] = field(default_factory=dict)


def read_prompt_layer(
    viewer: ViewerModel,
    image: Image,
    plane: PromptPlane,
    source: Layer | None,
    output: Labels | None = None,
) -> PromptSet:
    """Boxes (Shapes layer) or sketches (Labels layer) of ``source`` on the displayed plane.

    The objects are the prompts on the displayed slice. **Several prompts, one object**: a
    sketch's painted id, or a rectangle's ``id`` feature, painted / drawn on other slices of the
    same axis too adds those slices as further prompts of the same object. A sketch keeps its
    painted id only when ``source`` is the ``output`` layer itself (the user points at existing
    objects; then only the displayed slice is read); otherwise every sketch asks for a new id.

    Raises:
        PromptError: no prompt layer, or nothing on the displayed slice.
    """
    where = f"slice {plane.index} of axis {plane.axis}"
    if source is None:
        raise PromptError(
            "no prompt layer: click 'New box layer' and draw a rectangle, or "
            "'New sketch layer' and paint the object"
        )
    if isinstance(source, Shapes):
        return _read_boxes(viewer, image, plane, source)
    if not isinstance(source, Labels):
        raise PromptError(f"layer '{source.name}' is neither a Shapes nor a Labels layer")
    sketches = sketches_on_plane(source, image, plane)
    if not sketches:
        raise PromptError(
            f"nothing painted on {where} in '{source.name}': paint the "
            "object (one label per object) on the displayed slice"
        )
    found = PromptSet(plane)
    explicit = output is not None and source is output
    more = {} if explicit else _sketches_elsewhere(source, image, plane, list(sketches))
    for i, (label, mask) in enumerate(sketches.items()):
        found.boxes.append(None)
        found.masks.append(mask)
        found.wanted.append(label if explicit else None)
        found.more.append(more.get(label, ()))
        n = len(found.more[-1])
        extra = f" ({n + 1} slices)" if n else ""
        found.names.append(f"label {label}" if explicit else f"sketch {label}{extra}")
        if not explicit:
            found.box_keys[i] = ("sketch", id(source), plane.axis, int(label))
    return found


def _sketches_elsewhere(
    source: Labels, image: Image, plane: PromptPlane, labels: list[int]
) -> dict[int, tuple[SlicePrompt, ...]]:
    """``{label: prompts}`` of ``labels`` painted on other slices of the plane's axis."""
    if tuple(source.data.shape) != tuple(full_resolution(image).shape):
        return {}  # a 2D sketch layer has only the displayed slice
    where = slices_with_labels(source.data, labels, plane.axis)
    out: dict[int, tuple[SlicePrompt, ...]] = {}
    for label, indices in where.items():
        extra = []
        for k in indices:
            if k == plane.index:
                continue
            other = PromptPlane(plane.axis, k, plane.plane_shape)
            extra.append(SlicePrompt(k, mask=sketches_on_plane(source, image, other)[label]))
        if extra:
            out[label] = tuple(extra)
    return out


def _read_boxes(
    viewer: ViewerModel, image: Image, plane: PromptPlane, source: Shapes
) -> PromptSet:
    """:func:`read_prompt_layer` for a Shapes layer: one object per rectangle on the displayed
    slice, with the rectangles of the same ``id`` feature on other slices as further prompts."""
    found = PromptSet(plane)
    rects = rectangles(source, image, plane.axis, viewer)
    ids = box_object_ids(source)
    here = [(k, b) for k, b in rects if k == plane.index]
    if not here:
        raise PromptError(
            f"no rectangle on slice {plane.index} of axis {plane.axis} in '{source.name}': draw"
            " a box around the object on the displayed slice"
        )
    for i, (_k, b) in enumerate(here):
        oid = ids[b.shape_index]
        found.boxes.append(b.box)
        found.masks.append(None)
        found.wanted.append(None)
        if oid is None:
            found.more.append(())
            found.names.append(f"box {i + 1}")
            found.box_keys[i] = (plane.axis, plane.index, tuple(round(v, 1) for v in b.box))
            continue
        same = [(k, o) for k, o in rects if ids[o.shape_index] == oid and o is not b]
        if any(k == plane.index for k, _ in same):
            raise PromptError(
                f"two rectangles with id {oid} on slice {plane.index} in '{source.name}': an "
                "object has one box per slice; give one of them another id"
            )
        slices = {k: o for k, o in same}  # the last box of an id on a slice wins
        found.more.append(tuple(SlicePrompt(k, box=o.box) for k, o in sorted(slices.items())))
        n = len(found.more[-1])
        found.names.append(f"box id {oid}" + (f" ({n + 1} slices)" if n else ""))
        found.box_keys[i] = ("box-id", id(source), plane.axis, oid)
    return found


def gather_run(
    viewer: ViewerModel,
    image_layer: Layer | None,
    source: Layer | None,
    ensure_output: Callable[[Image], Labels],
    box_ids: dict[tuple, int],
    current_output: Labels | None = None,
) -> Gathered:
    """The prompts of a Run: every box or sketch of ``source`` on the displayed slice.

    Every object gets a new id above the output's highest id, except a prompt run before into
    the same output (it replaces its object under its id) and a sketch painted in the output
    layer itself (it targets that object explicitly).

    Args:
        viewer: The viewer (its dims say which plane is displayed).
        image_layer: The chosen image layer.
        source: The chosen prompt layer.
        ensure_output: Returns the output layer for the image (creating it if needed); called
            only once the prompts are known to be usable.
        box_ids: ``{(output layer id, *prompt key): label id}`` of earlier runs.
        current_output: The chosen output layer (None: a new one will be made).
    """
    image = check_image(image_layer)
    plane = displayed_plane(viewer, image)
    found = read_prompt_layer(viewer, image, plane, source, output=current_output)
    output = ensure_output(image)
    reused = {
        i: box_ids[(id(output), *k)]
        for i, k in found.box_keys.items()
        if (id(output), *k) in box_ids
    }
    # New ids only depend on the output's highest id: scan a zarr-backed output chunk by chunk
    # for it instead of handing the whole array over.
    ids = assign_label_ids(output.data, found.wanted, reused)
    prompts = [
        ObjectPrompt(
            plane.axis,
            plane.index,
            ids[i],
            box=found.boxes[i],
            mask=found.masks[i],
            name=found.names[i],
            more=found.more[i],
        )
        for i in range(len(ids))
    ]
    return Gathered(image, output, prompts, found.box_keys)


def gather_repropagate(
    viewer: ViewerModel,
    image_layer: Layer | None,
    output: Labels | None,
    earlier: tuple[int, tuple[int, ...]] | None = None,
) -> Gathered:
    """The prompts of *Re-propagate from this slice*: the selected label's mask on this slice,
    plus its mask on the object's earlier prompt slices.

    Args:
        viewer: The viewer (its dims say which plane is displayed).
        image_layer: The chosen image layer.
        output: The output layer holding the object.
        earlier: ``(axis, prompt slices)`` of the object's last run in this session, or None.
            Earlier prompt slices on the same axis where the object still has voxels stay
            prompts (their current mask in ``output``), so a correction adds to them.
    """
    image = check_image(image_layer)
    plane = displayed_plane(viewer, image)
    where = f"slice {plane.index} of axis {plane.axis}"
    if output is None:
        raise PromptError("choose the output labels layer that holds the object")
    if tuple(output.data.shape) != tuple(full_resolution(image).shape):
        raise PromptError(f"output layer '{output.name}' does not match the image shape")
    label_id = int(output.selected_label)
    sketch = sketch_plane(output, image, plane) == label_id
    if label_id <= 0 or not sketch.any():
        raise PromptError(
            f"label {label_id} is not painted on {where} of '{output.name}': select the "
            "object's label, repaint it on this slice, then re-propagate"
        )
    owned = owned_component(output.data, label_id, plane.axis, plane.index, sketch)
    if owned.n_objects > 1:
        # One id, several separate objects on this slice (ids merged by hand): re-propagating
        # would re-segment all of them, so the one not being corrected would change too.
        raise PromptError(
            f"label {label_id} marks {owned.n_objects} separate objects on {where} of "
            f"'{output.name}'; re-propagating would change all of them. Give the objects you "
            "are not correcting their own label (fill them with a new label), then re-propagate"
        )
    more = []
    if earlier is not None and earlier[0] == plane.axis:
        full = (slice(0, plane.plane_shape[0]), slice(0, plane.plane_shape[1]))
        for k in earlier[1]:
            if k == plane.index:
                continue
            other = PromptPlane(plane.axis, k, plane.plane_shape)
            m = (sketch_plane(output, image, other) == label_id) & owned.window(
                plane.axis, k, *full
            )
            if m.any():
                more.append(SlicePrompt(k, mask=m))
    prompt = ObjectPrompt(
        plane.axis,
        plane.index,
        label_id,
        mask=prepare_mask(sketch, plane.plane_shape),
        whole_slice=True,
        name=f"label {label_id}" + (f" ({len(more) + 1} slices)" if more else ""),
        more=tuple(more),
    )
    return Gathered(image, output, [prompt])


def output_shape_error(output: Labels, image: Image) -> PromptError | None:
    """The error for an output layer that does not match the image (None when it does)."""
    if tuple(output.data.shape) == tuple(full_resolution(image).shape):
        return None
    return PromptError(
        f"output layer '{output.name}' has shape {tuple(output.data.shape)}, image "
        f"'{image.name}' has {tuple(full_resolution(image).shape)}; choose another output layer"
    )


def default_prompt_layer(layers: list[Layer], made: list[Layer]) -> Shapes | Labels | None:
    """The Prompts chooser's default: the newest of ``made`` (layers made with New box / sketch)
    still in ``layers``, else the newest Shapes layer (boxes the user drew); never a Labels layer
    the user did not make as a prompt (an output, a ground truth)."""
    present = [layer for layer in made if layer in layers]
    if present:
        return present[-1]  # type: ignore[return-value]
    shapes = [layer for layer in layers if isinstance(layer, Shapes)]
    return shapes[-1] if shapes else None
