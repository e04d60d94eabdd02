"""Predictors: run Box2Mask and PropMask on crops, with the released pre/post-processing.

A predictor owns a network and a device; the propagation engine hands it crops already cut and
normalised to 0..255 and gets binary masks back at crop size. Anything with the same ``predict``
method (e.g. a deterministic stub in tests) can stand in for :class:`PropMaskPredictor`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F

from .config import BoxConfig
from .device import select_device, use_half
from .models import Box2Mask, PropMask
from .transforms import (
    merge_deep_supervision,
    resize_nearest_np,
    resize_uint8,
    scale_to_unit,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PropTask:
    """One guiding slice and the adjacent slices it guides, all cut with the same square window.

    Attributes:
        guide_image: ``(s, s)`` uint8 guiding slice, already clipped and scaled per slice.
        guide_mask: ``(s, s)`` bool guiding mask (the mean vote above 0.5).
        adjacent: ``(n, s, s)`` uint8 adjacent slices, scaled like the guide.
    """

    guide_image: np.ndarray
    guide_mask: np.ndarray
    adjacent: np.ndarray


class MaskPropagator(Protocol):
    """What the propagation engine needs from a PropMask predictor."""

    def predict(self, tasks: Sequence[PropTask]) -> list[np.ndarray]:
        """Return one ``(n_i, s_i, s_i)`` bool array per task."""
        ...


def _autocast(device: torch.device) -> contextlib.AbstractContextManager:
    if use_half(device):
        return torch.autocast(device_type=device.type, dtype=torch.float16)
    return contextlib.nullcontext()


class PropMaskPredictor:
    """PropMask inference on crops, as the released procedure runs it.

    Crops are resized to the network input with OpenCV (bilinear on uint8; the guiding mask by
    nearest neighbour), scaled to [-1, 1], predicted, the deep-supervision outputs averaged,
    argmax-ed and resized back with ``INTER_NEAREST``.

    Args:
        model: A PropMask network (weights loaded), or any ``nn.Module`` with the same
            ``forward_flat(guide (G,1,S,S), mask (G,S,S), adjacent (N,1,S,S), index (N,))``
            returning a list of ``(N, 2, h, w)`` logits and a ``cfg.input_size``.
        device: Device request (see :func:`napari_propsam.device.select_device`).
    """

    def __init__(self, model: PropMask, device: str | torch.device | None = None) -> None:
        self.device = select_device(device)
        self.model = model.to(self.device).eval()
        self.input_size = int(model.cfg.input_size)

    def _prepare(self, tasks: Sequence[PropTask]) -> tuple[torch.Tensor, ...]:
        size = self.input_size
        # Crops differ in size between tasks, so each is resized on its own first.
        g_img = np.concatenate([resize_uint8(t.guide_image[None], size) for t in tasks])
        g_mask = np.concatenate([resize_nearest_np(t.guide_mask[None] > 0, size) for t in tasks])
        adj = np.concatenate([resize_uint8(t.adjacent, size) for t in tasks])
        index = np.concatenate([np.full(len(t.adjacent), i) for i, t in enumerate(tasks)])
        dev = self.device
        return (
            scale_to_unit(g_img)[:, None].to(dev),
            torch.from_numpy(g_mask.astype(np.float32)).to(dev),
            scale_to_unit(adj)[:, None].to(dev),
            torch.from_numpy(index).long().to(dev),
        )

    @torch.inference_mode()
    def predict(self, tasks: Sequence[PropTask]) -> list[np.ndarray]:
        """Predict the object on every adjacent slice of every task in one forward pass.

        Returns:
            One ``(n_i, s_i, s_i)`` bool array per task, at that task's crop size.
        """
        tasks = [t for t in tasks]
        if not tasks:
            return []
        g, m, a, idx = self._prepare(tasks)
        with _autocast(self.device):
            outputs = self.model.forward_flat(g, m, a, idx)
        fg = merge_deep_supervision(outputs).argmax(dim=1).to(torch.uint8).cpu().numpy()
        result, start = [], 0
        for t in tasks:
            n, s = len(t.adjacent), t.guide_image.shape[-1]
            result.append(resize_nearest_np(fg[start : start + n], s))
            start += n
        return result


def _unit_window(crop: np.ndarray, vmin: float, vmax: float) -> np.ndarray:
    """Box2Mask training normalisation: ``2 * (clip(x) - vmin) / (vmax - vmin) - 1``."""
    span = max(vmax - vmin, 1e-6)
    return (2.0 * (np.clip(crop, vmin, vmax) - vmin) / span - 1.0).astype(np.float32)


class Box2MaskPredictor:
    """Box2Mask inference with the candidate-window search (docs/method.md, "Box prompts").

    Args:
        model: A Box2Mask network (weights loaded).
        device: Device request.
    """

    def __init__(self, model: Box2Mask, device: str | torch.device | None = None) -> None:
        self.device = select_device(device)
        self.model = model.to(self.device).eval()
        self.input_size = int(model.cfg.input_size)

    def _probabilities(self, crops: list[np.ndarray]) -> torch.Tensor:
        """Foreground probability at network resolution ``(S, S)``, soft-voted over the crops'
        normalisations and the deep-supervision outputs."""
        x = torch.from_numpy(np.stack(crops)).to(self.device)
        x = F.interpolate(x[:, None], size=(self.input_size,) * 2, mode="bilinear")
        x = x.expand(-1, 3, -1, -1).contiguous()
        with _autocast(self.device):
            outputs = self.model(x)
        top = outputs[0].shape[-2:]
        prob = torch.zeros(top, device=self.device)
        for o in outputs:
            o = F.interpolate(o.float(), size=top, mode="bilinear", align_corners=True)
            prob += torch.softmax(o, dim=1)[:, 1].mean(dim=0)
        return prob / len(outputs)

    def _to_crop(self, prob: torch.Tensor, shape: tuple[int, int]) -> np.ndarray:
        up = F.interpolate(prob[None, None], size=shape, mode="bilinear", align_corners=False)
        return up[0, 0].cpu().numpy() > 0.5

    @torch.inference_mode()
    def predict(self, crop: np.ndarray, config: BoxConfig | None = None) -> np.ndarray:
        """Segment the object inside a box crop.

        Args:
            crop: ``(h, w)`` raw intensities of the box region (any real dtype).
            config: Candidate windows and refinement (defaults if None).

        Returns:
            ``(h, w)`` bool mask (may be empty if the network sees no object).
        """
        config = config or BoxConfig()
        crop = np.asarray(crop, dtype=np.float32)
        pct = sorted({p for w in config.candidates for p in w})
        values = dict(zip(pct, np.percentile(crop, pct), strict=True))
        windows = [(values[lo], values[hi]) for lo, hi in config.candidates]
        windows = [(lo, hi) for lo, hi in windows if hi > lo] or [(crop.min(), crop.max())]
        prob = self._probabilities([_unit_window(crop, lo, hi) for lo, hi in windows])
        estimate = self._to_crop(prob, crop.shape)
        if config.refine and estimate.any():
            inside = crop[estimate]
            lo, hi = np.percentile(inside, [config.refine_lower, config.refine_upper])
            if hi > lo:
                refined = self._to_crop(
                    self._probabilities([_unit_window(crop, lo, hi)]), crop.shape
                )
                if refined.any():
                    return refined
                logger.info("Box2Mask refinement found nothing; keeping the candidate estimate")
        return estimate
