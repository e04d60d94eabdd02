"""Compute device selection: CUDA, then Apple MPS, then CPU, with an explicit override."""

from __future__ import annotations

import logging

import torch

logger = logging.getLogger(__name__)

DEVICE_CHOICES: tuple[str, ...] = ("auto", "cpu", "cuda", "mps")


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def available_devices() -> list[str]:
    """Device names usable on this machine, best first (always ends with ``"cpu"``)."""
    names = []
    if torch.cuda.is_available():
        names.append("cuda")
    if _mps_available():
        names.append("mps")
    names.append("cpu")
    return names


def select_device(device: str | torch.device | None = None) -> torch.device:
    """Resolve a device request.

    Args:
        device: None or ``"auto"`` picks CUDA, then MPS, then CPU. ``"cpu"``, ``"cuda"``,
            ``"cuda:1"``, ``"mps"`` or a ``torch.device`` is honoured if present.

    Raises:
        RuntimeError: the requested accelerator is not available here.
        ValueError: the name is not a device.
    """
    if device is None or (isinstance(device, str) and device.lower() == "auto"):
        return torch.device(available_devices()[0])
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"unknown device {device!r}; use one of {DEVICE_CHOICES}") from err
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(
                "device='cuda' was requested but PyTorch sees no CUDA GPU here "
                f"(torch {torch.__version__}); use device='auto' or 'cpu'"
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise RuntimeError(
                f"device {dev} requested but only {torch.cuda.device_count()} CUDA device(s) exist"
            )
    elif dev.type == "mps" and not _mps_available():
        raise RuntimeError("device='mps' was requested but Apple MPS is not available here")
    elif dev.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"unsupported device {device!r}; use one of {DEVICE_CHOICES}")
    return dev


def use_half(device: torch.device) -> bool:
    """Half precision only on a CUDA GPU; CPU and MPS stay in float32 for accuracy."""
    return device.type == "cuda"


_malloc_tuned = False


def tune_malloc() -> bool:
    """Stop glibc from handing large freed blocks back to the OS after every forward pass.

    By default glibc serves big allocations (activations, crops) with fresh ``mmap`` pages and
    unmaps them on free, so each forward pass page-faults its tensors in again: on the lite model
    that is a quarter of the CPU time in the kernel. Fixing the mmap threshold at 32 MiB and the
    trim threshold at 512 MiB keeps those pages in the heap (``benchmarks/bench_malloc.py``
    measures the effect). Setting only the trim threshold would be worse than nothing: it
    freezes the mmap threshold at its small default.

    The setting is process-wide, so the library never applies it on import: the ``propsam``
    command and the batch workers it starts call this; call it yourself in a script (or in
    napari's console) if you like. A no-op returning False where glibc is not the C library.

    Returns:
        True if both thresholds are set (now or by an earlier call).
    """
    global _malloc_tuned
    if _malloc_tuned:
        return True
    import ctypes
    import platform

    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # from glibc's <malloc.h>
    ok = libc.mallopt(m_mmap_threshold, 32 * 2**20) == 1
    ok = ok and libc.mallopt(m_trim_threshold, 512 * 2**20) == 1
    _malloc_tuned = ok
    if ok:
        logger.debug("glibc malloc: mmap threshold 32 MiB, trim threshold 512 MiB")
    return ok
