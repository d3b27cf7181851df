"""What goes wrong with an archive, against a real Orthanc: each a clear ``SlideError`` naming server and remedy."""

from __future__ import annotations

import base64
import logging

import numpy as np
import pytest

from napari_pathalign.io import SlideError, open_slide
from napari_pathalign.io.dicomweb import Credentials, DicomWebOptions
from napari_pathalign.io.dicomweb_slide import open_dicomweb
from napari_pathalign.io.errors import (
    DicomWebAuthError,
    DicomWebConnectionError,
    NotASlideError,
    SeriesNotFoundError,
)
from tests.orthanc import Orthanc, series_url, slide_url

QUICK = DicomWebOptions(retries=1, backoff_s=0.05, connect_timeout_s=2)
PASSWORD = "s3cret-Pw!"


@pytest.fixture
def no_env_credentials(monkeypatch):
    for name in ("PATHALIGN_DICOMWEB_TOKEN", "PATHALIGN_DICOMWEB_USER", "PATHALIGN_DICOMWEB_PASSWORD"):
        monkeypatch.delenv(name, raising=False)


def test_a_server_that_goes_down_is_named_as_down(tmp_path, wsi_dir):
    with Orthanc(tmp_path) as server:
        server.upload(*sorted((wsi_dir / "CMU-1-Small-Region-dicom").glob("*.dcm")))
        url = slide_url(server, wsi_dir, "cmu-1")
        slide = open_dicomweb(url, Credentials(), QUICK)
        assert slide.read_region((0, 0), (100, 100)).shape == (100, 100, 3)
        server.stop(kill=True)  # a crash, a pulled cable
        with pytest.raises(DicomWebConnectionError, match=r"no answer after 2 tries.*server runs") as info:
            slide.read_region((1000, 1000), (100, 100))  # frames not fetched yet
        assert isinstance(info.value, SlideError) and "pyramid level 0" in str(info.value)
        np.testing.assert_array_equal(slide.read_region((0, 0), (50, 50)), slide.read_region((0, 0), (50, 50)))  # kept
        slide.close()
        with pytest.raises(DicomWebConnectionError, match=f"DICOMweb server {server.dicomweb}: could not search"):
            open_dicomweb(url, Credentials(), QUICK)


def test_an_unknown_series_or_study_is_named(orthanc, wsi_dir):
    url = slide_url(orthanc, wsi_dir, "cmu-1")
    with pytest.raises(SeriesNotFoundError, match=r"has no series 1\.2\.3 .*its series: .*\(SM\)"):
        open_slide(url.rsplit("/", 1)[0] + "/1.2.3")
    with pytest.raises(SeriesNotFoundError, match=r"has no study 1\.2\.3"):
        open_slide(f"dicomweb+{orthanc.dicomweb}/studies/1.2.3/series/4.5")


def test_a_series_that_is_not_a_slide_says_what_it_is(orthanc, tmp_path):
    from pydicom import examples

    ct = examples.ct  # a real 128 x 128 CT slice, pydicom's test data
    orthanc.upload_datasets(ct)
    path = tmp_path / "ct.dcm"
    ct.save_as(path, enforce_file_format=True)
    with pytest.raises(NotASlideError, match="is modality CT, not a whole-slide image; expected modality SM"):
        open_slide(series_url(orthanc, path))


def test_a_protected_archive_asks_for_credentials_and_never_shows_them(
    tmp_path, wsi_dir, monkeypatch, caplog, no_env_credentials
):
    with Orthanc(tmp_path, users={"pathologist": PASSWORD}) as server:
        server.upload(*sorted((wsi_dir / "CMU-1-Small-Region-dicom").glob("*.dcm")))
        url = slide_url(server, wsi_dir, "cmu-1")
        with pytest.raises(DicomWebAuthError, match=r"HTTP 401 \(no credentials were sent\); set PATHALIGN_DICOMWEB"):
            open_slide(url)
        monkeypatch.setenv("PATHALIGN_DICOMWEB_USER", "pathologist")
        monkeypatch.setenv("PATHALIGN_DICOMWEB_PASSWORD", "wrong-" + PASSWORD)
        with pytest.raises(DicomWebAuthError, match="the basic credentials were refused") as info:
            open_slide(url)
        assert PASSWORD not in str(info.value) and "pathologist" not in str(info.value)
        with pytest.raises(DicomWebAuthError, match="the bearer token credentials were refused") as info:
            open_dicomweb(url, Credentials(token="tok-" + PASSWORD))  # Orthanc itself knows only users
        assert PASSWORD not in str(info.value)

        monkeypatch.setenv("PATHALIGN_DICOMWEB_PASSWORD", PASSWORD)
        caplog.set_level(logging.DEBUG)
        with open_slide(url) as slide:
            assert slide.read_region((500, 500), (256, 256)).mean() < 250
            assert PASSWORD not in repr(slide) + slide.url + str(slide.path) + repr(slide.properties)
        secret = base64.b64encode(f"pathologist:{PASSWORD}".encode()).decode()
        assert caplog.records and PASSWORD not in caplog.text and secret not in caplog.text
