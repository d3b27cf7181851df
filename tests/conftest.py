"""Shared fixtures: real slides from ../shared/data and synthetic pyramids written into tmp_path."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

# napari reads its settings file at import: point it at a throw-away folder before any test
# imports napari, so tests never read or change the user's own preferences.
os.environ["NAPARI_CONFIG"] = str(Path(tempfile.mkdtemp(prefix="pathalign-napari-settings-")) / "settings.yaml")

import pytest  # noqa: E402

from tests.synthetic import write_pyramid  # noqa: E402

pytest_plugins = ["tests.orthanc"]  # the real Orthanc DICOMweb server fixtures

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
WSI = SHARED_DATA / "wsi"
OUTPUT = ROOT / "test-output"  # screenshots a person can look at after `make test`


@pytest.fixture(scope="session")
def wsi_dir() -> Path:
    if not WSI.is_dir():
        pytest.fail(f"real test slides not found at {WSI}; clone the project with ../shared beside it")
    return WSI


@pytest.fixture(scope="session")
def output_dir() -> Path:
    OUTPUT.mkdir(exist_ok=True)
    return OUTPUT


@pytest.fixture
def pyramid_tif(tmp_path) -> Path:
    return write_pyramid(tmp_path / "pyramid.tif")


def open_plugin_dock(make_napari_viewer, monkeypatch, slide, dock: str, cache_dir: Path):
    """A real viewer with ``slide`` open and the plugin's ``dock`` docked; the feature cache goes to
    ``cache_dir``, and errors the dock reports are collected in ``widget.errors`` (not shown)."""
    from napari_pathalign._napari.preferences import PLUGIN

    monkeypatch.setenv("XDG_CACHE_HOME", str(cache_dir))
    viewer = make_napari_viewer(show=True)
    layer = viewer.open(str(slide), plugin=PLUGIN)[0]
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, dock)
    viewer.layers.selection.active = layer
    errors = []
    monkeypatch.setattr("napari_pathalign._napari.status_line.show_error", errors.append)
    widget.errors = errors
    return viewer, layer, widget


@pytest.fixture(scope="session")
def models():
    """The embedded PathAlign-G, PathAlign-R and patch encoder on the CPU, loaded once for the session."""
    from napari_pathalign.models.encoders import load_patch_encoder
    from napari_pathalign.models.pathalign import PathAlign

    return (
        PathAlign.load("embedded", device="cpu"),
        PathAlign.load("embedded-r", device="cpu"),
        load_patch_encoder("embedded", device="cpu"),
    )


@pytest.fixture(scope="session")
def cmu1_level0_dicom(wsi_dir):
    """The level-0 instance of the real CMU-1 DICOM slide (2220 x 2967), metadata only: the source of DICOM results."""
    import pydicom

    files = sorted((wsi_dir / "CMU-1-Small-Region-dicom").glob("*.dcm"))
    volumes = [d for d in (pydicom.dcmread(f, stop_before_pixels=True) for f in files) if "VOLUME" in d.ImageType]
    return max(volumes, key=lambda d: d.TotalPixelMatrixColumns)
