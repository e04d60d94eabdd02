"""Shared fixtures: tiny random-init networks and deterministic synthetic volumes."""

from __future__ import annotations

import gc
import os

import numpy as np
import pytest
import torch

from napari_propsam.models import ArchConfig, Box2Mask, PropMask
from napari_propsam.registry import ModelBundle
from napari_propsam.weights import LoadedNetwork

TINY = ArchConfig(n_stages=4, base_channels=4, max_channels=16, input_size=32, n_attn_stages=2)


def make_tiny_bundle(seed: int = 0, fg_bias: float | None = None) -> ModelBundle:
    """Random tiny PropMask + Box2Mask; ``fg_bias`` forces foreground (+) or background (-)."""
    torch.manual_seed(seed)
    pm, bm = PropMask(TINY).eval(), Box2Mask(TINY).eval()
    if fg_bias is not None:
        for net in (pm.proposing_stage, bm):
            for layer in net.decoder.seg_layers:
                torch.nn.init.zeros_(layer.weight)
                layer.bias.data = torch.tensor([0.0, fg_bias])
    return ModelBundle(
        "tiny",
        LoadedNetwork("propmask", pm, TINY, "<tiny>"),
        LoadedNetwork("box2mask", bm, TINY, "<tiny>"),
    )


class ThresholdPredictor:
    """Deterministic PropMask stand-in: foreground where the normalised crop is above a level.

    Records every call so tests can check batching and streaming order.
    """

    def __init__(self, level: float = 0.0) -> None:
        self.level = level
        self.calls: list[list[int]] = []

    def predict(self, tasks):
        self.calls.append([len(t.adjacent) for t in tasks])
        return [t.adjacent > self.level for t in tasks]


def ellipsoid_volume(
    shape=(48, 64, 64), center=(24, 32, 30), radii=(14, 12, 10), noise=5.0, seed=0
) -> tuple[np.ndarray, np.ndarray]:
    """A bright ellipsoid (100) in noisy background (0): ``(image float32, truth bool)``."""
    grids = np.ogrid[tuple(slice(0, s) for s in shape)]
    d = sum(((g - c) / r) ** 2 for g, c, r in zip(grids, center, radii, strict=True))
    truth = d < 1
    rng = np.random.default_rng(seed)
    image = (truth * 100.0 + rng.normal(0, noise, shape)).astype(np.float32)
    return image, truth


@pytest.fixture
def tiny_bundle() -> ModelBundle:
    return make_tiny_bundle()


@pytest.fixture
def ellipsoid():
    return ellipsoid_volume()


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice of two bool arrays (kept here so engine tests do not depend on the metrics module)."""
    s = a.sum() + b.sum()
    return 1.0 if s == 0 else 2.0 * float((a & b).sum()) / float(s)


class ObjectPredictor(ThresholdPredictor):
    """PropMask stand-in for prompts whose guide holds background (e.g. a whole box).

    The released procedure stretches every slice to its own range, so an empty slice's noise
    spans 0..255 and a plain threshold would "find" it. Like a trained network, this keeps only
    a thresholded component that overlaps the guiding mask and is at least a fifth of its size.
    """

    def __init__(self, level: float = 180.0) -> None:
        super().__init__(level)

    def predict(self, tasks):
        from scipy import ndimage

        self.calls.append([len(t.adjacent) for t in tasks])
        out = []
        for t in tasks:
            guide = np.asarray(t.guide_mask, bool)
            preds = []
            for adj in t.adjacent:
                labels, _ = ndimage.label(adj > self.level)
                ids, counts = np.unique(labels[guide & (labels > 0)], return_counts=True)
                keep = ids[counts >= max(4, guide.sum() // 5)]
                preds.append(np.isin(labels, keep) if keep.size else np.zeros(adj.shape, bool))
            out.append(np.stack(preds))
        return out


# The tests that take most of the suite's time: the notebook reproduction at 224 px, building
# the sdist and wheel (and the unpacked sdist's own suite), fresh interpreters for the deprecated
# aliases, multi-process/dask runs, training and the synthetic training data (full volumes of
# every family; devtools, never imported by the plugin). `make test` (the development loop)
# leaves them out; `make test-slow` runs only them, and CI (`.ci/run`) runs both.
SLOW_FILES = frozenset(
    {
        "test_released_procedure.py",
        "test_outofcore.py",
        "test_training.py",
        "test_cli_train.py",
        "test_packaging.py",
        "test_aliases.py",
        "test_synthetic.py",
        "test_synthetic_labelmaps.py",
    }
)
SLOW_TESTS = frozenset(
    {
        "test_suite_runs_from_the_unpacked_sdist",
        "test_results_identical_in_process_and_on_2_workers",
        "test_batch_in_process_and_on_one_worker_give_the_same_labels",
        "test_zarr_and_dask_inputs_match_numpy",
        "test_lazy_zarr_and_dask_match_numpy_and_large_ids",
        "test_volume_larger_than_ram_is_never_read_whole",
    }
)


def pytest_collection_modifyitems(config, items) -> None:
    for item in items:
        if item.path.name in SLOW_FILES or getattr(item, "originalname", "") in SLOW_TESTS:
            item.add_marker(pytest.mark.slow)


def pytest_configure(config) -> None:
    """Share the cores between xdist workers: each worker's torch would otherwise start one
    thread per core, and ``-n auto`` workers on a 2-core machine then fight over both cores."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))


def pytest_collection_finish(session) -> None:
    """Freeze what the imports made (torch, napari, Qt: ~400k objects) out of the collector.

    napari runs a full ``gc.collect()`` whenever a layer is removed, and so does closing a viewer;
    walking every imported object took about as long as a GUI test itself. Objects the tests make
    are still collected as usual.
    """
    gc.collect()
    gc.freeze()
