"""The distributions PyPI and the napari hub receive: metadata, wheel and sdist contents, and the
test suite running from an unpacked sdist (what a conda-forge recipe does).

The sdist and wheel are built once per session with ``python -m build --no-isolation`` from a copy
of the source tree, so the build leaves nothing behind in the working tree.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
import yaml
from packaging.metadata import Metadata
from packaging.requirements import Requirement

import napari_propsam

ROOT = Path(__file__).resolve().parents[1]
NAME = "napari_propsam"
VERSION = napari_propsam.__version__
# Not part of a source distribution: environments, caches, build output, local runs.
_NOT_SOURCE = shutil.ignore_patterns(
    ".git",
    ".venv",
    "build",
    "dist",
    "*.egg-info",
    "__pycache__",
    ".*_cache",
    ".hypothesis",
    "out",
    "runs",
)


@pytest.fixture(scope="module")
def dists(tmp_path_factory) -> dict[str, Path]:
    """``{"sdist": .tar.gz, "wheel": .whl}`` built from a copy of the tree (the wheel is built
    from the sdist, as pip does when it installs from an sdist)."""
    tmp = tmp_path_factory.mktemp("dists")
    tree = tmp / "tree"
    shutil.copytree(ROOT, tree, ignore=_NOT_SOURCE)
    out = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(tmp / "dist"), str(tree)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return {
        "sdist": tmp / "dist" / f"{NAME}-{VERSION}.tar.gz",
        "wheel": tmp / "dist" / f"{NAME}-{VERSION}-py3-none-any.whl",
    }


@pytest.fixture(scope="module")
def metadata(dists) -> Metadata:
    with zipfile.ZipFile(dists["wheel"]) as whl:
        raw = whl.read(f"{NAME}-{VERSION}.dist-info/METADATA").decode()
    return Metadata.from_email(raw, validate=True)  # raises on invalid core metadata


def _requirement(meta: Metadata, name: str, extra: str | None = None) -> Requirement:
    for req in meta.requires_dist or []:
        in_extra = req.marker is not None and req.marker.evaluate({"extra": extra or ""})
        if req.name == name and (in_extra if extra else req.marker is None):
            return req
    raise AssertionError(f"no requirement on {name} (extra={extra})")


def test_license_is_an_spdx_expression_with_its_file(metadata, dists):
    assert metadata.license_expression == "BSD-3-Clause"
    assert metadata.license_files == ["LICENSE"]
    assert not [c for c in metadata.classifiers if c.startswith("License ::")]  # superseded
    with zipfile.ZipFile(dists["wheel"]) as whl:
        text = whl.read(f"{NAME}-{VERSION}.dist-info/licenses/LICENSE").decode()
    assert "BSD 3-Clause" in text and "Copyright (c)" in text


def test_classifiers_urls_and_python_support(metadata):
    for prefix in (
        "Development Status :: ",
        "Framework :: napari",
        "Intended Audience :: ",
        "Operating System :: ",
        "Programming Language :: Python :: 3.11",
        "Topic :: Scientific/Engineering",
    ):
        assert any(c.startswith(prefix) for c in metadata.classifiers), prefix
    # the keys the napari hub shows
    for key in ("Homepage", "Source Code", "Bug Tracker", "Documentation", "User Support"):
        assert metadata.project_urls[key].startswith("https://"), key
    # zarr 3 (and so tifffile's zarr stores) needs 3.11, which is what the suite runs on
    assert str(metadata.requires_python) == ">=3.11"
    assert sys.version_info >= (3, 11)


def test_dependencies_are_bounded_where_a_release_breaks_us(metadata):
    assert _requirement(metadata, "zarr").specifier.contains("3.1.0")
    assert not _requirement(metadata, "zarr").specifier.contains("2.18.0")
    assert not _requirement(metadata, "tifffile").specifier.contains("2025.5.10")  # zarr-2 era
    dna = _requirement(metadata, "dynamic-network-architectures").specifier
    # 0.3.1 (torch + numpy only), not 0.4.x (timm -> torchvision pins torch)
    assert dna.contains("0.3.1") and not dna.contains("0.4.1") and not dna.contains("0.4.4")


@pytest.mark.parametrize("extra", ["all", "napari"])
def test_the_napari_extras_bring_a_qt_binding(metadata, extra):
    # napari alone cannot open a window; its "all" extra brings a Qt binding (template practice)
    napari = _requirement(metadata, "napari", extra)
    assert "all" in napari.extras


def test_readme_links_work_off_github(metadata):
    """PyPI and the hub render the README away from the repository: links must be absolute."""
    targets = re.findall(r"\]\(([^)\s]+)\)", metadata.description or "")
    targets += re.findall(r'src="([^"]+)"', metadata.description or "")
    assert targets, "the README has no links at all?"
    relative = [t for t in targets if not t.startswith(("https://", "http://", "#", "mailto:"))]
    assert not relative, relative


def test_wheel_carries_manifest_weights_one_sample_and_no_tests(dists):
    with zipfile.ZipFile(dists["wheel"]) as whl:
        names = set(whl.namelist())
        entry_points = whl.read(f"{NAME}-{VERSION}.dist-info/entry_points.txt").decode()
    assert f"{NAME}/napari.yaml" in names
    assert {
        f"{NAME}/weights/lite-propmask.safetensors",
        f"{NAME}/weights/lite-box2mask.safetensors",
    } <= names
    assert [n for n in names if n.endswith(".npz")] == [f"{NAME}/_sample/glomeruli.npz"]
    assert not [n for n in names if n.startswith("tests/")]
    assert "napari-propsam = napari_propsam:napari.yaml" in entry_points
    assert "propsam = napari_propsam.cli:main" in entry_points


def test_sdist_holds_the_whole_test_suite_docs_and_build_files(dists):
    with tarfile.open(dists["sdist"]) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    tests = {
        p.relative_to(ROOT).as_posix()
        for p in (ROOT / "tests").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }
    assert "tests/conftest.py" in tests and "tests/_widgets/conftest.py" in tests
    assert tests <= names, sorted(tests - names)
    docs = {p.relative_to(ROOT).as_posix() for p in (ROOT / "docs").rglob("*") if p.is_file()}
    assert "docs/install.md" in docs and docs <= names, sorted(docs - names)
    for f in ("Makefile", "constraints.txt", "LICENSE", "CITATION.cff", "CHANGELOG.md"):
        assert f in names, f
    assert [n for n in names if n.endswith("glomeruli.npz")] == [
        f"src/{NAME}/_sample/glomeruli.npz"
    ]


def test_suite_runs_from_the_unpacked_sdist(dists, tmp_path):
    """Every module collects, and tests using conftest fixtures and the helper modules of the
    test subfolders pass, with the sdist's own sources first on the path."""
    with tarfile.open(dists["sdist"]) as tar:
        tar.extractall(tmp_path, filter="data")
    src = tmp_path / f"{NAME}-{VERSION}"
    env = {**os.environ, "PYTHONPATH": str(src / "src"), "QT_QPA_PLATFORM": "offscreen"}
    where = subprocess.run(
        [sys.executable, "-c", "import napari_propsam; print(napari_propsam.__file__)"],
        cwd=src,
        env=env,
        capture_output=True,
        text=True,
    )
    assert Path(where.stdout.strip()).is_relative_to(src / "src"), where.stdout + where.stderr
    # One run: every module is collected (a missing conftest.py or helper module is a
    # collection error), and those below run, covering conftest fixtures and the helpers shared
    # between test folders.
    subset = "test_io or test_cli_measure or test_labeling or test_manifest"
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", subset],
        cwd=src,
        env=env,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    summary = run.stdout.strip().splitlines()[-1]
    passed = re.search(r"(\d+) passed", summary)
    assert passed and int(passed.group(1)) >= 20 and "deselected" in summary, summary
    assert "skipped" not in summary and "error" not in summary, summary


def test_citation_and_changelog(dists):
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert cff["cff-version"] == "1.2.0" and cff["title"] and cff["authors"]
    refs = [cff["preferred-citation"], *cff.get("references", [])]
    dois = {r.get("doi") for r in refs}
    assert "10.1038/s41746-025-02087-y" in dois  # PAM, npj Digital Medicine
    assert any("2408.13836" in str(r.get("url", "")) for r in refs)  # the PropSAM preprint
    assert cff["version"] == VERSION
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert re.search(rf"^## \[?{re.escape(VERSION)}\]?", changelog, re.M)
