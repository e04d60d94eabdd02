"""Quality score and slices to review."""

from __future__ import annotations

import math

import numpy as np
import pytest

import napari_propsam as ps
from conftest import ThresholdPredictor, ellipsoid_volume
from napari_propsam.quality import REASONS, SliceStats, assess, slice_stats


def _stats(areas, agreements=None, centroids=None, votes=3):
    agreements = agreements or [1.0] * len(areas)
    centroids = centroids or [(10.0, 10.0)] * len(areas)
    return {
        i: SliceStats(a, g, votes, c)
        for i, (a, g, c) in enumerate(zip(areas, agreements, centroids, strict=True))
    }


def test_unanimous_smooth_object_scores_high_and_lists_nothing():
    areas = [int(110 - 0.1 * (i - 20) ** 2) for i in range(41)]
    q = assess(_stats(areas))
    assert q.score > 0.9 and q.slices_to_review == ()
    short = assess(_stats(areas[15:25]))
    assert short.score < q.score  # fewer slices: fewer chances to notice a failure


def test_disagreement_lowers_the_score_and_flags_the_slice_first():
    agreements = [1.0, 1.0, 0.5, 1.0, 0.9, 1.0, 1.0]
    q = assess(_stats([50, 80, 100, 110, 100, 80, 50], agreements))
    assert q.score < assess(_stats([50, 80, 100, 110, 100, 80, 50])).score
    first = q.slices_to_review[0]
    assert (first.index, first.reason) == (2, "vote disagreement")
    assert first.severity == pytest.approx(50.0)


def test_jumps_and_cut_ends_are_flagged_with_their_reason():
    areas = [100, 100] + [300] * 13
    cents = [(10.0, 10.0)] * 8 + [(30.0, 10.0)] * 7
    q = assess(_stats(areas, centroids=cents), cut_ends=[14])
    reasons = {r.index: r.reason for r in q.slices_to_review}
    assert reasons == {2: "area jump", 8: "centroid jump", 14: "end cut"}  # 3 of 15 (20 %)
    assert q.signals["end_cut"] == 1.0 and q.score < 0.6
    assert set(reasons.values()) <= set(REASONS)


def test_review_list_is_capped_at_a_fifth_of_the_slices():
    q = assess(_stats([100] * 20, [0.5] * 20))
    assert len(q.slices_to_review) == 4


def test_slice_stats_of_votes():
    mask = np.zeros((6, 6), bool)
    mask[1:3, 1:3] = True
    votes = np.zeros((6, 6), np.int32)
    votes[1:3, 1:3] = [[2, 2], [1, 1]]
    st = slice_stats(mask, votes, 2, (10, 20))
    assert st.area == 4 and st.agreement == pytest.approx(0.75)
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
