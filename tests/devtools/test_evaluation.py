"""The held-out benchmark harness: prompts, both methods on the same cases, settings, summary."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import make_tiny_bundle
from napari_propsam.config import PropagationConfig
from napari_propsam.devtools.evaluation import evaluate, heldout_volumes, loose_box, summarise


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
    from napari_propsam.devtools.evaluation import Case, Result, quality_report

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


def test_spread_slices_take_the_largest_section_and_thirds_of_the_extent():
    obj = np.zeros((40, 8, 8), bool)
    obj[5:35, 2:6, 2:6] = True  # slices 5..34: extent 30
    obj[20, :, :] = True  # the largest cross-section
    from napari_propsam.devtools.evaluation import spread_slices

    assert spread_slices(obj, 0, 1) == [20]
    # Centres of 3 equal parts are 10, 20, 30 (from 5 + 5, 15, 25); 20 is the largest.
    assert spread_slices(obj, 0, 3) == [10, 20, 30]
    assert spread_slices(obj, 0, 2) == [12, 20]  # 12 and 27: 27 is replaced by 20
    tiny = obj.copy()
    tiny[8:13] = False
    tiny[8:13, 3, 3] = True  # 1-voxel sections: the prompt moves towards the largest one
    assert spread_slices(tiny, 0, 3) == [13, 20, 30]
    with pytest.raises(ValueError, match="at least 1"):
        spread_slices(obj, 0, 0)


def test_several_prompts_per_object_run_once_per_count_and_are_reported():
    vol = heldout_volumes(1, ["glomeruli"], shape=(24, 48, 48))[0]
    bundle = make_tiny_bundle(fg_bias=-5.0)  # predicts nothing next to the prompts
    results = evaluate(
        [vol], model=bundle, axes=(0,), prompts=("mask",), prompts_per_object=(1, 3)
    )
    ours = [r for r in results if r.method == "propsam"]
    rw = [r for r in results if r.method == "random_walker"]
    assert [r.case.n_prompts for r in ours] == [1, 3]
    assert [r.case.n_prompts for r in rw] == [1]  # the baseline takes one prompt slice
    one, three = ours
    assert one.case.offset == 0.0 and len(three.case.prompt_slices) == 3
    assert one.case.slice_index in three.case.prompt_slices and not three.error
    # Only the prompt slices are found: three prompt masks score more than one, so every
    # prompt reached the engine.
    assert 0 < one.dsc < three.dsc < 1
    report = summarise(results)
    assert "prompts=1" in report and "prompts=3" in report and "glomeruli p=3" in report
    assert "offset" not in report


def test_loose_box_cases_cut_the_largest_object_on_each_axis():
    from napari_propsam.devtools.evaluation import loose_box, loose_box_cases, prompt_slices
    from napari_propsam.devtools.synthetic import make_volume

    vol = make_volume("glomeruli", 5, (32, 48, 48))
    target = max(vol.targets, key=lambda t: int(np.count_nonzero(vol.labels == t)))
    obj = vol.labels == target
    cases = loose_box_cases([vol], axes=(0, 2))
    n0, n2 = len(prompt_slices(obj, 0)), len(prompt_slices(obj, 2))
    assert len(cases) == n0 + n2 and n0 > 0 and n2 > 0
    s = prompt_slices(obj, 2)[0][1]
    truth = obj[:, :, s]
    r0, c0, r1, c1 = loose_box(truth)
    family, crop, cut = cases[n0]
    assert family == "glomeruli"
    np.testing.assert_array_equal(crop, vol.image[r0:r1, c0:c1, s])
    np.testing.assert_array_equal(cut, truth[r0:r1, c0:c1])
