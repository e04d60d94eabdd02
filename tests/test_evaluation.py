"""The held-out benchmark harness: prompts, both methods on the same cases, settings, summary."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import make_tiny_bundle
from napari_propsam.config import PropagationConfig
from napari_propsam.evaluation import evaluate, heldout_volumes, loose_box, summarise


def test_heldout_volumes_are_iso_and_aniso_with_unseen_seeds():
    vols = heldout_volumes(2, ["glomeruli"], shape=(24, 48, 48))
    assert [v.spacing[0] for v in vols] == [1.0, 3.0]
    assert all(v.seed >= 100_000 for v in vols)


def test_loose_box_adds_a_tenth_per_side():
    section = np.zeros((40, 40), bool)
    section[10:20, 5:25] = True  # 10 x 20 px
    assert loose_box(section) == (9, 3, 21, 27)


def test_both_methods_run_on_the_same_cases_and_settings_reach_the_engine():
    vol = heldout_volumes(1, ["glomeruli"], shape=(24, 48, 48))[0]
    bundle = make_tiny_bundle(fg_bias=-5.0)  # predicts nothing next to the prompt
    offsets = (0.0, 0.2)
    results = evaluate([vol], model=bundle, axes=(0,), offsets=offsets, prompts=("mask", "box"))
    assert len(results) == len(offsets) * 2 * 2
    ours = [r for r in results if r.method == "propsam"]
    rw = [r for r in results if r.method == "random_walker"]
    assert [(r.case, r.prompt) for r in ours] == [(r.case, r.prompt) for r in rw]
    for r in results:
        assert 0.0 <= r.dsc <= 1.0 and r.seconds > 0
    # With nothing found beyond the prompt slice, a mask prompt scores the prompt slice only.
    assert all(0 < r.dsc < 0.5 for r in ours if r.prompt == "mask")
    report = summarise(results)
    assert "propsam" in report and "random_walker" in report and "glomeruli" in report

    # A min_area above every cross-section stops propagation at once: one round, fewer slices.
    # (thickness 2: the first round reaches 2 slices each way, so further rounds matter)
    big = PropagationConfig(thickness=2, min_area=1e9)
    few = evaluate(
        [vol],
        model=make_tiny_bundle(fg_bias=5.0),
        axes=(0,),
        prompts=("mask",),
        baseline=False,
        config=big,
    )
    many = evaluate(
        [vol], model=make_tiny_bundle(fg_bias=5.0), axes=(0,), prompts=("mask",), baseline=False
    )
    assert sum(r.slices for r in few) < sum(r.slices for r in many)


def test_quality_report_measures_ranking_catching_and_flagged_errors():
    from napari_propsam.evaluation import Case, Result, quality_report

    case = Case("v", "f", 1, 0, 0.0, 3, False)
    dscs = [0.95, 0.9, 0.85, 0.8, 0.6, 0.5, 0.92, 0.88, 0.3, 0.97]
    scores = [0.9, 0.85, 0.8, 0.75, 0.4, 0.5, 0.86, 0.84, 0.2, 0.95]
    rs = [
        Result(case, "propsam", "mask", d, 0.0, 0.0, 1.0, 10, s, 0.6, 0.1)
        for d, s in zip(dscs, scores, strict=True)
    ]
    q = quality_report(rs)
    assert q["spearman"] > 0.9
    assert q["failures"] == 3 and q["caught"] == pytest.approx(1 / 3)  # lowest 1 of 10
    assert q["error_share"] == pytest.approx(0.6) and q["slice_fraction"] == pytest.approx(0.1)
