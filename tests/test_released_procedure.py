"""The released 3D procedure, voxel for voxel: our public API against the authors' notebook.

``tests/data/notebook_reference.npz`` holds the outputs of the authors' own notebook
(``tutorials/3d-propagation.ipynb`` of the PAM release) on three small volumes, for a tiny
random-weight PAM and for a deterministic stand-in network, with both intensity branches.
Random weights amplify every difference in pre- and post-processing, so a match of all twelve
outputs pins the crop, the per-slice uint8 scaling, the OpenCV resizes, the votes, the batch
padding, the stopping rule and the 6-connected component filter.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import ndimage
from torch import nn

import napari_propsam as ps
from napari_propsam.predictors import PropMaskPredictor

DATA = Path(__file__).parent / "data" / "notebook_reference.npz"
CASES = ("ellipsoid", "cone_aniso4", "glomerulus")
BRANCHES = {"CT": "ct-window", "MR": "percentile"}


@pytest.fixture(scope="module")
def ref():
    return np.load(DATA)


@pytest.fixture(scope="module")
def tiny_pth(ref, tmp_path_factory) -> Path:
    """The reference's tiny PAM saved as a released-format checkpoint."""
    state = {
        "module." + k[len("param/") :]: torch.from_numpy(ref[k])
        for k in ref.files
        if k.startswith("param/")
    }
    path = tmp_path_factory.mktemp("pam") / "propmask.pth"
    torch.save({"model_state_dict": state}, path)
    return path


@pytest.fixture
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class _Cfg:
    input_size = 224


class StubPropMask(nn.Module):
    """The reference's stand-in network, at 224 px.

    Foreground where the adjacent slice's scaled value is > 0 and within 12 dilations of the
    guiding mask; the logits are ``[0.5, fg]``.
    """

    cfg = _Cfg()

    def forward_flat(self, guide, mask, adjacent, index):
        region = np.stack(
            [ndimage.binary_dilation(m > 0.5, iterations=12) for m in mask.numpy()]
        )
        fg = (adjacent[:, 0] > 0) & torch.from_numpy(region)[index]
        logits = torch.stack([torch.full(fg.shape, 0.5), fg.float()], dim=1)
        return [logits]


def _inputs(ref, case):
    return dict(
        slice_index=int(ref[f"{case}/slice"]),
        mask=ref[f"{case}/prompt"],
        spacing=tuple(ref[f"{case}/spacing"]),
    )


@pytest.mark.parametrize("branch", sorted(BRANCHES))
@pytest.mark.parametrize("case", CASES)
def test_tiny_pam_checkpoint_matches_notebook(ref, tiny_pth, one_thread, case, branch):
    def run() -> np.ndarray:
        return ps.segment(
            ref[f"{case}/image"],
            model=tiny_pth,
            device="cpu",
            intensity=BRANCHES[branch],
            stop_rule="released",
            **_inputs(ref, case),
        )

    expected = ref[f"{case}/tiny/{branch}"]
    assert expected.sum() > 1000
    out = run()
    if not np.array_equal(out, expected):
        # oneDNN chooses its convolution kernels by the CPU's instruction set (AVX2, AVX-512),
        # and they round differently in the last bit; random weights can turn that into one
        # flipped voxel (seen on an AVX2 EPYC: 1 voxel of cone_aniso4-MR). ATen's own
        # convolution is the other CPU path; the procedure must match exactly through one.
        with torch.backends.mkldnn.flags(enabled=not torch.backends.mkldnn.enabled):
            out = run()
    assert np.array_equal(out, expected), f"{int((out != expected).sum())} voxels differ"


@pytest.mark.parametrize("branch", sorted(BRANCHES))
@pytest.mark.parametrize("case", CASES)
def test_stub_network_matches_notebook(ref, one_thread, case, branch):
    image = ref[f"{case}/image"]
    predictor = PropMaskPredictor(StubPropMask(), "cpu")
    out = np.zeros(image.shape, bool)
    for update in ps.propagate(
        image,
        predictor=predictor,
        intensity=BRANCHES[branch],
        stop_rule="released",
        **_inputs(ref, case),
    ):
        if update.final:
            ps.apply_update(out, update)
    expected = ref[f"{case}/stub/{branch}"]
    assert expected.sum() > 1000
    assert np.array_equal(out, expected), f"{int((out != expected).sum())} voxels differ"
