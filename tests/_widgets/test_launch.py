"""The main job's napari part, headless: sample + widget + boxes from ground truth -> files."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from qtpy.QtGui import QImage

from conftest import ObjectPredictor, make_tiny_bundle
from napari_propsam._sample_data import load_sample
from napari_propsam._widgets._launch import boxes_from_truth, launch_viewer, prompt_slice


def test_boxes_cover_each_target_section_exactly():
    labels = np.zeros((3, 10, 12), np.int32)
    labels[1, 2:5, 3:9] = 4
    labels[0, 0:8, 0:8] = 5  # slice 1 misses 5 and only grazes 6:
    labels[1, 9, 11] = labels[2, 0:6, 0:6] = 6
    corners = boxes_from_truth(labels, 1, (4, 5, 6, 7))
    assert list(corners) == [4]
    np.testing.assert_allclose(corners[4].min(0) + 0.5, (2, 3))
    np.testing.assert_allclose(corners[4].max(0) + 0.5, (5, 9))


@pytest.fixture
def fresh_napari_app(mock_app_model):
    """launch_viewer builds a real napari.Viewer, which registers napari's and the plugins'
    actions; give it an app model of its own, as make_napari_viewer does, so it never meets the
    actions of the shared test viewer (or of another test) in one registry."""
    from napari._qt._qapp_model.qactions import init_qactions
    from napari.plugins import _initialize_plugins

    _initialize_plugins.cache_clear()
    init_qactions.cache_clear()
    yield mock_app_model
    _initialize_plugins.cache_clear()
    init_qactions.cache_clear()


def test_headless_launch_writes_labels_and_screenshot(tmp_path, fresh_napari_app):
    sample = load_sample()
    z = prompt_slice(sample["labels"], sample["targets"])
    n_boxes = len(boxes_from_truth(sample["labels"], z, sample["targets"]))
    result = launch_viewer(
        headless=True,
        out_dir=tmp_path,
        model=make_tiny_bundle(fg_bias=5),
        predictor=ObjectPredictor(),
    )
    assert result.error is None
    labels = tifffile.imread(result.labels_path)
    assert labels.shape == sample["image"].shape and labels.dtype == np.int32
    assert result.label_ids == list(range(1, n_boxes + 1))
    assert set(np.unique(labels)) == {0, *result.label_ids}
    assert len(result.dice) == n_boxes
    shot = QImage(str(result.screenshot_path))
    assert not shot.isNull() and shot.width() > 600 and shot.height() > 400
