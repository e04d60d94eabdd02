"""Checkpoints: our self-describing safetensors files and the released PAM ``.pth`` files.

Our own weights are one safetensors file per network. Its metadata records the format, the
network kind, the architecture (:class:`~napari_propsam.models.ArchConfig`), the preprocessing,
the training provenance and the package version; the loader checks all of them.

A released PAM checkpoint (``propmask.pth`` / ``box2mask.pth``) is read with
``torch.load(weights_only=True)`` (no code is unpickled), unwrapped from ``model_state_dict``,
stripped of ``module.`` prefixes and loaded with ``strict=True`` into the ``full`` architecture.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from ._version import __version__
from .models import FULL, ArchConfig, Box2Mask, PropMask

logger = logging.getLogger(__name__)

FORMAT = "napari-propsam/1"
NETWORKS = ("propmask", "box2mask")
WEIGHTS_DIR = Path(__file__).parent / "weights"

#: Preprocessing our networks are trained and run with (recorded in every checkpoint).
DEFAULT_PREPROCESSING: dict[str, Any] = {
    "propmask": {
        "normalisation": "clip to percentiles of the guiding mask, 0..255 uint8, (x/255-0.5)/0.5",
        "lower_percentile": 0.5,
        "upper_percentile": 99.5,
        "crop": "square, 1.5 x larger bbox side, min 16 px, zero pad bottom/right",
        "resize": "bilinear to input_size; masks bilinear then > 0.5",
    },
    "box2mask": {
        "normalisation": "2 * (clip(x) - vmin) / (vmax - vmin) - 1, candidate percentile windows",
        "crop": "the box, resized bilinearly to input_size, grey repeated to 3 channels",
    },
}


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable, or does not match the network it is loaded into."""


def _shape_mismatch(
    expected: Mapping[str, tuple[int, ...]], given: Mapping[str, tuple[int, ...]]
) -> str:
    """What differs between a model's parameter shapes and a checkpoint's ("" if nothing)."""
    missing = sorted(set(expected) - set(given))
    unexpected = sorted(set(given) - set(expected))
    wrong = sorted(
        f"{k}: checkpoint {given[k]} vs model {expected[k]}"
        for k in set(given) & set(expected)
        if given[k] != expected[k]
    )
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing keys, e.g. {missing[:5]}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected keys, e.g. {unexpected[:5]}")
    if wrong:
        parts.append(f"{len(wrong)} shape mismatches, e.g. {wrong[:3]}")
    return "; ".join(parts)


@dataclass
class LoadedNetwork:
    """A network with its weights and what its checkpoint says about it."""

    network: str
    model: nn.Module
    arch: ArchConfig
    source: str
    metadata: dict[str, Any] = field(default_factory=dict)


def build_network(network: str, arch: ArchConfig) -> nn.Module:
    """Instantiate ``"propmask"`` or ``"box2mask"`` with random weights."""
    if network == "propmask":
        return PropMask(arch)
    if network == "box2mask":
        return Box2Mask(arch)
    raise ValueError(f"unknown network {network!r}; expected one of {NETWORKS}")


def save_checkpoint(
    path: str | Path,
    model: nn.Module,
    *,
    provenance: Mapping[str, Any] | None = None,
    preprocessing: Mapping[str, Any] | None = None,
) -> Path:
    """Write a network as a self-describing safetensors file.

    Args:
        path: Destination (``.safetensors``).
        model: A :class:`PropMask` or :class:`Box2Mask`.
        provenance: Training provenance (data, steps, seed, wall time, ...), JSON-serialisable.
        preprocessing: Overrides of :data:`DEFAULT_PREPROCESSING` for this network.
    """
    network = "propmask" if isinstance(model, PropMask) else "box2mask"
    if not isinstance(model, PropMask | Box2Mask):
        raise TypeError(f"cannot save {type(model).__name__}; expected PropMask or Box2Mask")
    # Dynamic-network-architectures registers the encoder twice (encoder and decoder.encoder) and
    # aliases conv/all_modules; safetensors refuses shared storage, so store each tensor once
    # under its canonical (first) name and let load_state_dict(strict=False) + a check restore it.
    tensors: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for name, tensor in model.state_dict().items():
        key = tensor.data_ptr()
        if key in seen:
            continue
        seen.add(key)
        tensors[name] = tensor.detach().cpu().contiguous()
    meta = {
        "format": FORMAT,
        "network": network,
        "arch": json.dumps(model.cfg.to_dict()),
        "preprocessing": json.dumps(dict(preprocessing or DEFAULT_PREPROCESSING[network])),
        "provenance": json.dumps(dict(provenance or {})),
        "version": __version__,
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    save_file(tensors, str(tmp), metadata=meta)
    tmp.replace(path)  # atomic, so an interrupted save never leaves a half-written checkpoint
    return path


def _read_safetensors_header(path: Path) -> tuple[dict[str, str], dict[str, tuple[int, ...]]]:
    """The metadata and every tensor's shape, read from the header only (no tensor data)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        shapes = {k: tuple(int(n) for n in f.get_slice(k).get_shape()) for k in f.keys()}
        return dict(f.metadata() or {}), shapes


def _meta_network(network: str, arch: ArchConfig, source: str) -> nn.Module:
    """The network built on torch's ``meta`` device: every shape, no memory.

    A checkpoint's declared architecture is checked against its tensors on this skeleton before
    the real network is allocated, so a small file cannot make the loader build a huge one.
    """
    try:
        with torch.device("meta"):
            return build_network(network, arch)
    except Exception as err:  # noqa: BLE001 - torch/DNA raise many types for impossible shapes
        raise CheckpointError(
            f"checkpoint {source} declares an architecture that cannot be built ({arch}): {err}"
        ) from err


def _alias_names(model: nn.Module) -> dict[str, str]:
    """``{state-dict name: canonical name}``; parameters registered twice share one canonical
    name (the first). Works on ``meta`` networks, whose tensors all report the same pointer."""
    first: dict[int, str] = {}
    out = {}
    for name, tensor in model.state_dict(keep_vars=True).items():
        out[name] = first.setdefault(id(tensor), name)
    return out


def _check_shapes(
    model: nn.Module, shapes: Mapping[str, tuple[int, ...]], source: str, aliases: bool
) -> None:
    """Refuse a checkpoint whose tensor names or shapes do not fit ``model`` (a meta network).

    Args:
        model: The network the checkpoint declares, built on the meta device.
        shapes: ``{name: shape}`` of the checkpoint's tensors.
        source: The file, for messages.
        aliases: Names stored once for several aliased parameters are complete (our format).
    """
    expected = {k: tuple(v.shape) for k, v in model.state_dict(keep_vars=True).items()}
    given = dict(shapes)
    if aliases:
        for name, canonical in _alias_names(model).items():
            if name not in given and canonical in given:
                given[name] = given[canonical]
    problems = _shape_mismatch(
        {k: tuple(v) for k, v in expected.items()}, {k: tuple(v) for k, v in given.items()}
    )
    if problems:
        raise CheckpointError(
            f"checkpoint {source} does not match the architecture it declares: {problems}"
        )


def _check_backed(state: Mapping[str, torch.Tensor], source: str) -> None:
    """Refuse tensors whose data is not in the file (e.g. a 1-element storage expanded to a
    4096-channel weight): their shapes would claim a network the file cannot fill."""
    for name, t in state.items():
        need = t.numel() * t.element_size()
        if need and (not t.is_contiguous() or t.untyped_storage().nbytes() < need):
            raise CheckpointError(
                f"checkpoint {source}: tensor {name} claims shape {tuple(t.shape)} but the file "
                f"stores only {t.untyped_storage().nbytes()} bytes for it ({need} needed)"
            )


def _build_checked(
    network: str,
    arch: ArchConfig,
    shapes: Mapping[str, tuple[int, ...]],
    source: str,
    aliases: bool,
) -> nn.Module:
    """The real network, allocated only after its shapes matched the checkpoint's."""
    _check_shapes(_meta_network(network, arch, source), shapes, source, aliases)
    try:
        return build_network(network, arch)
    except Exception as err:  # noqa: BLE001 - e.g. out of memory for a genuinely huge network
        raise CheckpointError(f"cannot build the network of checkpoint {source}: {err}") from err


def _json_field(meta: Mapping[str, str], key: str, source: str) -> Any:
    try:
        return json.loads(meta[key])
    except (TypeError, ValueError) as err:
        raise CheckpointError(
            f"checkpoint {source}: its {key!r} metadata is not valid JSON ({err})"
        ) from err


def _load_into(model: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    """``load_state_dict(strict=True)`` with an error that names what does not fit."""
    expected = model.state_dict()
    problems = _shape_mismatch(
        {k: tuple(v.shape) for k, v in expected.items()},
        {k: tuple(v.shape) for k, v in state.items()},
    )
    if problems:
        raise CheckpointError(f"checkpoint {source} does not match the network: {problems}")
    try:
        model.load_state_dict(dict(state), strict=True)
    except (RuntimeError, TypeError, ValueError) as err:  # e.g. a dtype torch cannot copy
        raise CheckpointError(f"checkpoint {source} cannot be loaded: {err}") from err


def _complete_aliases(model: nn.Module, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Re-add the aliased names that :func:`save_checkpoint` stored only once."""
    by_param: dict[int, str] = {}
    expected = model.state_dict()
    for name, tensor in expected.items():
        by_param.setdefault(tensor.data_ptr(), name)
    out = dict(state)
    for name, tensor in expected.items():
        canonical = by_param[tensor.data_ptr()]
        if name not in out and canonical in state:
            out[name] = state[canonical]
    return out


def load_safetensors(path: str | Path, network: str | None = None) -> LoadedNetwork:
    """Load one of our checkpoints, checking format, network kind and architecture.

    Args:
        path: ``.safetensors`` file written by :func:`save_checkpoint`.
        network: Expected ``"propmask"`` / ``"box2mask"`` (None accepts either).

    Raises:
        CheckpointError: missing, corrupt, foreign, or mismatched file.
    """
    path = existing_checkpoint(path)
    try:
        meta, shapes = _read_safetensors_header(path)
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"cannot read checkpoint {path}: {err}") from err
    if meta.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} is not a napari-propsam checkpoint (format {meta.get('format')!r})"
        )
    kind = meta.get("network")
    if kind not in NETWORKS or (network is not None and kind != network):
        raise CheckpointError(f"{path} holds a {kind!r} network, expected {network or NETWORKS}")
    try:
        arch = ArchConfig.from_dict(json.loads(meta["arch"]))
    except (KeyError, ValueError, TypeError) as err:
        raise CheckpointError(f"{path} has no valid architecture record: {err}") from err
    info = {
        k: _json_field(meta, k, str(path)) if k in ("preprocessing", "provenance") else v
        for k, v in meta.items()
    }
    model = _build_checked(kind, arch, shapes, str(path), aliases=True)
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"cannot read checkpoint {path}: {err}") from err
    _load_into(model, _complete_aliases(model, state), str(path))
    return LoadedNetwork(kind, model.eval(), arch, str(path), info)


def existing_checkpoint(path: str | Path) -> Path:
    """``path`` if it is a file; a :class:`CheckpointError` that says what it is otherwise."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(
            f"{path} is a folder, not a checkpoint file: give a PropMask .safetensors or .pth "
            "file (a training run keeps it in RUN/propmask/propmask.safetensors)"
        )
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    return path


def _torch_load(path: Path) -> Any:
    """``torch.load(weights_only=True)`` with errors that say what we support.

    torch's own message for a file that needs unpickling advises ``weights_only=False``, which
    would run code from the file; that advice is never passed on.
    """
    import pickle
    import zipfile

    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"cannot read checkpoint {path}: it holds Python objects other than tensors, which "
            "napari-propsam never unpickles. Supported: our .safetensors files, and .pth files "
            "holding only tensors (a state dict, optionally under 'model_state_dict'), such as "
            "the released PAM checkpoints"
        ) from err
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as err:
        # torch's messages run on for several sentences of advice: keep the first one.
        text = str(err).strip()
        first = text.splitlines()[0].split(". ")[0][:200] if text else type(err).__name__
        if "weights_only" in first:
            first = "not a tensors-only PyTorch file"
        raise CheckpointError(
            f"cannot read checkpoint {path}: {first} (truncated, or not a PyTorch checkpoint)"
        ) from err
    except Exception as err:  # noqa: BLE001 - torch raises many types for corrupt files
        raise CheckpointError(
            f"cannot read checkpoint {path}: {type(err).__name__} (corrupt or not a checkpoint)"
        ) from err


def _strip(state: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    out = {}
    for k, v in state.items():
        if not isinstance(v, torch.Tensor):
            continue
        out[k[len("module.") :] if k.startswith("module.") else k] = v
    return out


def infer_arch(state: Mapping[str, torch.Tensor], input_size: int = 224) -> ArchConfig:
    """Architecture of a state dict in the released layout (PropMask or Box2Mask)."""
    prefix = "proposing_stage." if any(k.startswith("proposing_stage.") for k in state) else ""
    widths = []
    s = 0
    while f"{prefix}encoder.stages.{s}.0.convs.0.conv.weight" in state:
        widths.append(int(state[f"{prefix}encoder.stages.{s}.0.convs.0.conv.weight"].shape[0]))
        s += 1
    if not widths:
        return FULL
    keys = [k[len(prefix) :] for k in state if k.startswith(prefix)]
    n_attn = len({k.split(".")[1] for k in keys if k.startswith("cross_attns.")})
    n_conv = len({k.split(".")[5] for k in keys if k.startswith("encoder.stages.0.0.convs.")})
    n_heads = FULL.n_heads
    if n_attn:
        c = widths[-1]
        head_dim = int(state[f"{prefix}cross_attns.{n_attn - 1}.queries.weight"].shape[0])
        n_heads = max(1, c // head_dim)
    try:
        return ArchConfig(
            n_stages=len(widths),
            base_channels=widths[0],
            max_channels=max(widths),
            input_size=input_size,
            n_attn_stages=n_attn if prefix else FULL.n_attn_stages,
            n_heads=n_heads,
            n_conv_per_stage=n_conv or 2,
        )
    except ValueError:
        return FULL


def load_pam_checkpoint(path: str | Path, network: str | None = None) -> LoadedNetwork:
    """Load a released PAM ``.pth`` checkpoint safely (``weights_only=True``).

    The network kind is detected from the keys (``proposing_stage.`` = PropMask); the
    architecture is inferred from the tensor shapes (the released files give ``full``).

    Raises:
        CheckpointError: missing, unreadable (or would need code unpickling), or mismatched.
    """
    path = existing_checkpoint(path)
    obj = _torch_load(path)
    if isinstance(obj, Mapping):
        for key in ("model_state_dict", "state_dict", "model"):
            if key in obj and isinstance(obj[key], Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path} does not contain a state dict")
    state = _strip(obj)
    if not state:
        raise CheckpointError(f"{path} contains no tensors")
    kind = "propmask" if any(k.startswith("proposing_stage.") for k in state) else "box2mask"
    if network is not None and kind != network:
        raise CheckpointError(f"{path} holds a {kind} network, expected {network}")
    _check_backed(state, str(path))
    try:
        arch = infer_arch(state)
    except (KeyError, IndexError, ValueError, TypeError, ZeroDivisionError) as err:
        raise CheckpointError(f"{path}: cannot infer the architecture from its tensors") from err
    shapes = {k: tuple(v.shape) for k, v in state.items()}
    model = _build_checked(kind, arch, shapes, str(path), aliases=False)
    _load_into(model, state, str(path))
    return LoadedNetwork(kind, model.eval(), arch, str(path), {"format": "pam-release"})


#: What a training run's ``last.pt`` must hold to be resumed (napari_propsam.training.loop).
RESUME_KEYS = ("model", "optimizer", "scheduler", "rng", "torch_rng", "step", "next_volume", "best")


def check_resume_state(path: str | Path) -> None:
    """Refuse a training run's resume state (``last.pt``) that cannot be resumed.

    Training and fine-tuning continue from ``RUN/<network>/last.pt`` when it exists; a truncated
    or foreign file would fail with a raw traceback inside the training loop. Call this first.

    Args:
        path: The ``last.pt`` file (nothing is checked when it does not exist).

    Raises:
        CheckpointError: unreadable, or not the state our training loop writes; the message
            names the file and says to delete it (or choose another folder) to start over.
    """
    path = Path(path)
    if not path.exists():
        return
    fix = f"delete {path} (or choose another folder) to start over"
    try:
        state = _torch_load(existing_checkpoint(path))
    except CheckpointError as err:
        raise CheckpointError(f"cannot resume training: {err}; {fix}") from err
    if not isinstance(state, Mapping):
        raise CheckpointError(
            f"cannot resume training: {path} holds a {type(state).__name__}, not a resume "
            f"state; {fix}"
        )
    missing = [k for k in RESUME_KEYS if k not in state]
    model = state.get("model")
    if (
        missing
        or not isinstance(model, Mapping)
        or not all(isinstance(v, torch.Tensor) for v in model.values())
    ):
        what = f"lacks {missing}" if missing else "has no tensors under 'model'"
        raise CheckpointError(f"cannot resume training: {path} {what}; {fix}")


def load_network(path: str | Path, network: str | None = None) -> LoadedNetwork:
    """Load a checkpoint of either format, chosen by the file suffix."""
    path = Path(path)
    if path.suffix == ".safetensors":
        return load_safetensors(path, network)
    return load_pam_checkpoint(path, network)
