"""The plugin installs as napari finds it: manifest and sample slide inside a plain (non-editable) wheel."""

from __future__ import annotations

import subprocess
import sys
import zipfile

import pytest

from tests.conftest import ROOT


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> zipfile.ZipFile:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(ROOT)],
        check=True,
        capture_output=True,
    )
    (path,) = out.glob("napari_pathalign-*.whl")
    return zipfile.ZipFile(path)


def test_wheel_ships_manifest_sample_and_every_subpackage(wheel):
    names = set(wheel.namelist())
    assert "napari_pathalign/napari.yaml" in names
    assert "napari_pathalign/resources/CMU-1-Small-Region.svs" in names
    assert "napari_pathalign/reporting/ontology.schema.json" in names  # ontologies are checked against it
    assert "napari_pathalign/resources/embedded_ontology.json" in names
    packages = {p.parent.relative_to(ROOT).as_posix() for p in (ROOT / "napari_pathalign").rglob("__init__.py")}
    for package in packages:
        assert f"{package}/__init__.py" in names, f"{package} is missing from setup.cfg's packages"
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    text = wheel.read(entry_points).decode()
    assert "napari-pathalign = napari_pathalign:napari.yaml" in text
    assert "pathalign = napari_pathalign.cli:main" in text


def test_top_level_manifest_is_the_shipped_one():
    assert (ROOT / "napari.yaml").read_text() == (ROOT / "napari_pathalign" / "napari.yaml").read_text()


def test_npe2_finds_the_installed_manifest():
    from npe2 import PluginManifest

    manifest = PluginManifest.from_distribution("napari-pathalign")
    assert manifest.name == "napari-pathalign"
    patterns = manifest.contributions.readers[0].filename_patterns
    assert {"*.svs", "*.ndpi", "*.dcm", "*.ome.tif", "*.tiff"} <= set(patterns)


def test_cli_info_and_associated_on_request(wsi_dir, tmp_path):
    from napari_pathalign.cli import main

    assert main(["info", str(wsi_dir / "CMU-1-Small-Region.svs")]) == 0
    out = tmp_path / "label.png"
    assert main(["info", str(wsi_dir / "CMU-1-Small-Region.svs"), "--associated", "label", "--out", str(out)]) == 0
    from PIL import Image

    assert Image.open(out).size == (387, 463)
    assert main(["info", str(tmp_path / "missing.svs")]) == 2
