"""Which models exist and how a ``model=`` argument resolves to loaded networks.

``model`` may be None (the bundled default), a bundled name (see :func:`list_models`), a path to a
PropMask checkpoint (our ``.safetensors`` or a released PAM ``.pth``), a mapping
``{"propmask": path, "box2mask": path}``, a :class:`ModelBundle`, or a :class:`PropMask` module.
Loaded networks are cached per file and modification time, so repeated calls are cheap.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

from torch import nn

from .models import Box2Mask, PropMask
from .weights import (
    WEIGHTS_DIR,
    CheckpointError,
    LoadedNetwork,
    existing_checkpoint,
    load_network,
)

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "lite"

#: Bundled weights: name -> (PropMask file, Box2Mask file, description).
BUNDLED: dict[str, tuple[str, str, str]] = {
    "lite": (
        "lite-propmask.safetensors",
        "lite-box2mask.safetensors",
        "napari-propsam default: narrow PropMask/Box2Mask trained on synthetic volumes (CPU-fast)",
    ),
}


@dataclass(frozen=True)
class ModelInfo:
    """A model the user can choose.

    Attributes:
        name: Name to pass as ``model=``.
        description: One line for humans.
        propmask: PropMask weights file.
        box2mask: Box2Mask weights file (None if the model has no box network).
        available: Whether the files exist on this installation.
    """

    name: str
    description: str
    propmask: Path
    box2mask: Path | None
    available: bool


@dataclass
class ModelBundle:
    """Loaded networks of one model."""

    name: str
    propmask: LoadedNetwork
    box2mask: LoadedNetwork | None


ModelSpec = Union[None, str, Path, Mapping[str, Any], ModelBundle, nn.Module]  # noqa: UP007

_cache: dict[tuple, LoadedNetwork] = {}
_lock = threading.Lock()


def list_models() -> list[ModelInfo]:
    """Bundled models (name, description, files, availability)."""
    out = []
    for name, (pm, bm, desc) in BUNDLED.items():
        p, b = WEIGHTS_DIR / pm, WEIGHTS_DIR / bm
        out.append(ModelInfo(name, desc, p, b, p.is_file() and b.is_file()))
    return out


def _load_cached(path: Path, network: str) -> LoadedNetwork:
    path = existing_checkpoint(path.expanduser().resolve())
    key = (str(path), path.stat().st_mtime_ns, network)
    with _lock:
        if key not in _cache:
            logger.info("loading %s weights from %s", network, path)
            _cache[key] = load_network(path, network)
        return _cache[key]


def _sibling_box2mask(path: Path) -> Path | None:
    """The Box2Mask file that belongs with a PropMask file, if there is one."""
    candidates = [path.with_name(path.name.replace("propmask", "box2mask"))]
    candidates.append(path.with_name("box2mask" + path.suffix))
    # Training and fine-tuning runs write RUN/propmask/propmask.safetensors and
    # RUN/box2mask/box2mask.safetensors: browsing to the former should find the latter.
    candidates.append(path.parent.parent / "box2mask" / ("box2mask" + path.suffix))
    for c in candidates:
        if c != path and c.is_file():
            return c
    return None


def _bundled_box2mask() -> LoadedNetwork | None:
    info = {m.name: m for m in list_models()}.get(DEFAULT_MODEL)
    if info is None or info.box2mask is None or not info.box2mask.is_file():
        return None
    return _load_cached(info.box2mask, "box2mask")


def resolve_model(model: ModelSpec = None) -> ModelBundle:
    """Turn a ``model=`` argument into loaded networks.

    Raises:
        CheckpointError: files missing, unreadable or mismatched.
        TypeError: an unsupported ``model`` value.
    """
    if isinstance(model, ModelBundle):
        return model
    if isinstance(model, PropMask):
        return ModelBundle("custom", LoadedNetwork("propmask", model, model.cfg, "<module>"), None)
    if isinstance(model, Mapping):
        if "propmask" not in model:
            raise TypeError("a model mapping needs a 'propmask' entry")
        pm = _load_cached(Path(model["propmask"]), "propmask")
        bm = model.get("box2mask")
        box = _load_cached(Path(bm), "box2mask") if bm is not None else _bundled_box2mask()
        return ModelBundle(Path(model["propmask"]).stem, pm, box)
    if model is None:
        model = DEFAULT_MODEL
    if isinstance(model, str) and model in BUNDLED:
        info = {m.name: m for m in list_models()}[model]
        if not info.available:
            raise CheckpointError(
                f"the bundled '{model}' weights are not installed ({info.propmask}); reinstall "
                "napari-propsam or pass model='path/to/propmask.pth'"
            )
        return ModelBundle(
            model,
            _load_cached(info.propmask, "propmask"),
            _load_cached(info.box2mask, "box2mask") if info.box2mask else None,
        )
    if isinstance(model, str | Path):
        path = Path(model)
        if not path.exists():
            names = ", ".join(BUNDLED)
            raise CheckpointError(
                f"model {str(model)!r} is neither a file nor a bundled model ({names})"
            )
        pm = _load_cached(path, "propmask")
        sib = _sibling_box2mask(path)
        box = _load_cached(sib, "box2mask") if sib is not None else _bundled_box2mask()
        if sib is None:
            logger.info("no box2mask file beside %s; box prompts use the bundled Box2Mask", path)
        return ModelBundle(path.stem, pm, box)
    if isinstance(model, Box2Mask):
        raise TypeError("model must be a PropMask (or a bundle); got a Box2Mask alone")
    raise TypeError(f"unsupported model specification: {type(model).__name__}")


def clear_cache() -> None:
    """Forget loaded networks (e.g. after replacing a weights file in place)."""
    with _lock:
        _cache.clear()
