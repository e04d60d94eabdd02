"""Quality score and slices to review."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

import napari_propsam as ps
from conftest import ThresholdPredictor, ellipsoid_volume
from napari_propsam.quality import REASONS, SliceStats, assess, slice_stats


def _stats(areas, agreements=None, centroids=None, votes=3, contrast=5.0, prompt=None):
    agreements = agreements or [1.0] * len(areas)
    centroids = centroids or [(10.0, 10.0)] * len(areas)
    contrasts = contrast if isinstance(contrast, list) else [contrast] * len(areas)
    prompt = len(areas) // 2 if prompt is None else prompt
    return {
        i: SliceStats(a, g, votes, c, contrast=k, perimeter=int(2 * math.sqrt(math.pi * a)),
                      prompt=i == prompt)
        for i, (a, g, c, k) in enumerate(zip(areas, agreements, centroids, contrasts, strict=True))
    }  # fmt: skip


AREAS = [int(110 - 0.1 * (i - 20) ** 2) for i in range(41)]


def test_clean_object_scores_high_and_lists_nothing():
    q = assess(_stats(AREAS, contrast=10.0))
    assert q.score > 0.9 and q.slices_to_review == ()
    assert q.signals["open_ends"] == pytest.approx(70 / 110)


def test_weak_boundary_lowers_the_score_and_its_slices_are_listed_first():
    weak = [5.0] * 41
    weak[30:36] = [0.2] * 6
    q = assess(_stats(AREAS, contrast=weak))
    assert q.score < assess(_stats(AREAS)).score
    assert {r.index for r in q.slices_to_review[:6]} == set(range(30, 36))
    assert q.slices_to_review[0].reason == "weak boundary"


def test_a_leak_lowers_the_score_and_is_flagged():
    areas = AREAS[:25] + [300] * 8 + AREAS[33:]  # grows away from the prompt on 25..32
    cents = [(10.0, 10.0)] * 25 + [(25.0, 10.0)] * 8 + [(10.0, 10.0)] * 8
    touch = {s: 0.3 for s in range(25, 33)}
    stats = {
        s: replace(st, touch=touch.get(s, 0.0))
        for s, st in _stats(areas, centroids=cents, prompt=15).items()
    }
    q = assess(stats)
    clean = assess(_stats(AREAS, prompt=15))
    assert q.score < clean.score - 0.1
    assert q.signals["growth"] > 0.9 and q.signals["centroid_jump"] > 1
    assert set(q.review_indices) <= set(range(25, 33)) and len(q.review_indices) == 8
    assert {r.reason for r in q.slices_to_review} <= {"crop edge", "centroid jump"}


def test_cut_end_and_disagreement_are_reasons():
    agreements = [1.0] * 41
    agreements[10] = 0.5
    contrast = [5.0] * 30
    contrast[10] = contrast[29] = 0.1  # both listed; the reason says why beyond the contrast
    q = assess(_stats(AREAS[:30], agreements[:30], contrast=contrast), cut_ends=[29])
    reasons = {r.index: r.reason for r in q.slices_to_review}
    assert reasons[29] == "end cut" and reasons[10] == "vote disagreement"
    assert set(reasons.values()) <= set(REASONS)


def test_review_list_is_capped_at_a_fifth_of_the_slices():
    q = assess(_stats([100] * 20, [0.5] * 20, contrast=0.1))
    assert len(q.slices_to_review) == 4


def test_slice_stats_of_votes():
    mask = np.zeros((6, 6), bool)
    mask[1:3, 1:3] = True
    votes = np.zeros((6, 6), np.int32)
    votes[1:3, 1:3] = [[2, 2], [1, 1]]
    st = slice_stats(mask, votes, 2, (10, 20))
    assert st.area == 4 and st.agreement == pytest.approx(0.75) and st.minority == 0.5
    assert st.centroid == (11.5, 21.5)
    assert math.isnan(slice_stats(np.zeros_like(mask), votes, 2, (0, 0)).centroid[0])


class _Leaky(ThresholdPredictor):
    """Every second prediction spills into the background: guides disagree."""

    def __init__(self):
        super().__init__()
        self.n = 0

    def predict(self, tasks):
        out = []
        for t in tasks:
            self.n += 1
            p = t.adjacent > 0
            if self.n % 2:
                p = p | (np.arange(p.shape[-1]) < p.shape[-1] // 2)
            out.append(p)
        return out


def test_segment_with_quality_tracks_a_worse_result():
    image, truth = ellipsoid_volume(shape=(48, 64, 64), center=(24, 32, 30), radii=(16, 12, 10))
    kw = dict(slice_index=24, mask=truth[24], thickness=4)
    clean, qc = ps.segment(image, predictor=ThresholdPredictor(), with_quality=True, **kw)
    leaky, ql = ps.segment(image, predictor=_Leaky(), with_quality=True, **kw)
    assert clean.shape == image.shape and 0 <= ql.score < qc.score <= 1
    assert ql.slices_to_review and ql.slices_to_review[0].reason in REASONS
    assert np.array_equal(clean, ps.segment(image, predictor=ThresholdPredictor(), **kw))


def test_updates_carry_agreement_and_the_last_final_one_the_quality():
    image, truth = ellipsoid_volume(shape=(40, 48, 48), center=(20, 24, 24), radii=(12, 10, 10))
    ups = list(ps.propagate(image, slice_index=20, mask=truth[20], predictor=_Leaky(),
                            thickness=3))  # fmt: skip
    streamed = [u for u in ups if not u.final]
    assert all(u.agreement is None or 0 < u.agreement <= 1 for u in ups)
    assert any(u.agreement is not None and u.agreement < 1 for u in streamed)
    finals = [u for u in ups if u.final]
    assert finals[-1].quality is not None and all(u.quality is None for u in finals[:-1])


def test_segment_roi_with_quality_matches_segment():
    image, truth = ellipsoid_volume(shape=(40, 48, 48), center=(20, 24, 24), radii=(12, 10, 10))
    kw = dict(slice_index=20, mask=truth[20], predictor=ThresholdPredictor(), thickness=3)
    roi, q = ps.segment_roi(image, with_quality=True, **kw)
    full, qs = ps.segment(image, with_quality=True, **kw)
    assert np.array_equal(roi.to_volume(image.shape), full)
    assert q is not None and q.score == qs.score


def test_a_leak_into_a_neighbour_scores_lower_and_its_slices_are_flagged():
    shape = (48, 64, 64)
    image, truth = ellipsoid_volume(shape=shape, center=(24, 32, 24), radii=(16, 10, 9))
    grid = np.ogrid[tuple(slice(0, s) for s in shape)]
    blob = ((grid[0] - 34) / 8) ** 2 + ((grid[1] - 32) / 9) ** 2 + ((grid[2] - 42) / 10) ** 2 < 1
    leaky = image + 100 * (blob & ~truth)  # a bright neighbour touching the object on 27..41
    kw = dict(slice_index=16, mask=truth[16], thickness=4, with_quality=True)
    _, clean = ps.segment(image, predictor=ThresholdPredictor(), **kw)
    mask, leak = ps.segment(leaky, predictor=ThresholdPredictor(), **kw)
    assert (mask & blob & ~truth).any()  # the threshold stand-in does leak
    assert leak.score < clean.score
    assert leak.signals["growth"] > clean.signals["growth"] + 0.3 and leak.signals["touch"] > 0
    assert set(leak.review_indices) <= set(range(27, 42))
    assert "crop edge" in {r.reason for r in leak.slices_to_review}
