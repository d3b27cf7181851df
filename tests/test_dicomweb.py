"""Slides from a real Orthanc over DICOMweb: the same lazy µm pyramid and the same pixels as from the file."""

from __future__ import annotations

import numpy as np
import pytest

from napari_pathalign.io import SlideError, open_slide
from napari_pathalign.io.dicomweb import Credentials, DicomWebAddress, DicomWebOptions, check_date
from napari_pathalign.io.dicomweb_slide import open_dicomweb
from tests.orthanc import TlsFront, slide_file, slide_url


@pytest.mark.parametrize("name", ["cmu-1", "highdicom", "boxes"])
def test_a_slide_from_the_server_is_the_slide_from_the_file(orthanc, wsi_dir, name):
    with open_slide(slide_url(orthanc, wsi_dir, name)) as web, open_slide(slide_file(wsi_dir, name)) as local:
        assert web.format == "dicomweb" and web.url.startswith("dicomweb+http://127.0.0.1:")
        assert web.level_shapes == local.level_shapes and web.downsamples == local.downsamples
        assert (web.mpp, web.mpp_source) == (local.mpp, local.mpp_source)
        assert web.n_stored_levels == local.n_stored_levels
        assert web.path.name == web.properties["dicom.SeriesInstanceUID"]
        h0, w0 = web.shape_level0
        rng = np.random.default_rng(0)
        for level in range(len(web.levels)):
            # corners, the middle, a window over the edge, and random ones
            size = (min(512, w0), min(512, h0))
            corners = [(0, 0), (w0 // 3, h0 // 3), (w0 - size[0] // 2, h0 - size[1] // 2)]
            corners += [(int(rng.integers(0, w0)), int(rng.integers(0, h0))) for _ in range(2)]
            for xy in corners:
                np.testing.assert_array_equal(web.read_region(xy, size, level), local.read_region(xy, size, level))
        np.testing.assert_array_equal(np.asarray(web.levels[-1]), np.asarray(local.levels[-1]))  # the dask path
        assert set(web.associated) == set(local.associated)
        for key in web.associated:
            np.testing.assert_array_equal(np.asarray(web.associated[key]), np.asarray(local.associated[key]))


def test_frames_are_fetched_on_demand_and_kept(orthanc, wsi_dir):
    with open_slide(slide_url(orthanc, wsi_dir, "cmu-1")) as slide:
        assert slide.tiles_decoded == 0  # opening reads metadata only
        a = slide.read_region((480, 480), (480, 480), 0)  # exactly 2 x 2 frames of 240 px
        assert slide.tiles_decoded == 4
        b = slide.read_region((480, 480), (480, 480), 0)
        assert slide.tiles_decoded == 4, "a frame already fetched was fetched again"
        np.testing.assert_array_equal(a, b)


def test_the_frame_cache_is_bounded(orthanc, wsi_dir):
    frame_bytes = 240 * 240 * 3
    options = DicomWebOptions(cache_bytes=3 * frame_bytes)
    with open_dicomweb(slide_url(orthanc, wsi_dir, "cmu-1"), credentials=Credentials(), options=options) as slide:
        for col in range(4):  # 4 frames through a cache of 3, one at a time (a region's frames arrive in any order)
            slide.read_region((240 * col, 0), (240, 240), 0)
        assert slide.tiles_decoded == 4
        slide.read_region((240 * 3, 0), (240, 240), 0)  # the newest frame stayed
        assert slide.tiles_decoded == 4
        slide.read_region((0, 0), (240, 240), 0)  # the oldest was evicted
        assert slide.tiles_decoded == 5


def test_https_verifies_the_certificate_by_default(orthanc, tmp_path, wsi_dir, monkeypatch):
    front = TlsFront(orthanc, tmp_path)
    try:
        url = slide_url(orthanc, wsi_dir, "cmu-1").replace(orthanc.dicomweb, front.dicomweb)
        assert url.startswith("dicomweb+https://")
        with pytest.raises(SlideError, match="TLS certificate could not be verified.*REQUESTS_CA_BUNDLE"):
            open_dicomweb(url, credentials=Credentials(), options=DicomWebOptions(retries=0))
        with open_dicomweb(url, Credentials(), DicomWebOptions(verify=str(front.certificate))) as slide:
            assert slide.read_region((100, 100), (64, 64)).mean() < 250  # tissue, through TLS
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(front.certificate))  # the usual way to trust a hospital CA
        with open_slide(url) as slide, open_slide(slide_file(wsi_dir, "cmu-1")) as local:
            region = ((700, 900), (300, 200), 1)
            np.testing.assert_array_equal(slide.read_region(*region), local.read_region(*region))
    finally:
        front.close()


@pytest.mark.parametrize(
    "url, expected",
    [
        (
            "dicomweb+https://pacs.example.org/dicom-web/studies/1.2.3/series/4.5",
            ("https://pacs.example.org/dicom-web", "1.2.3", "4.5"),
        ),
        ("dicomweb+http://h:8042/a/b/rs/studies/1.2/series/3", ("http://h:8042/a/b/rs", "1.2", "3")),
        ("https://pacs.example.org/dicom-web/", ("https://pacs.example.org/dicom-web", None, None)),
        ("dicomweb+https://pacs/dicom-web/studies/1.2", ("https://pacs/dicom-web", "1.2", None)),
    ],
)
def test_addresses_are_read(url, expected):
    address = DicomWebAddress.parse(url)
    assert (address.root, address.study_uid, address.series_uid) == expected
    assert DicomWebAddress.parse(address.url) == address


@pytest.mark.parametrize(
    "url, message",
    [
        ("ftp://pacs/studies/1/series/2", "not a DICOMweb address"),
        ("dicomweb+https://pacs/dicom-web/studies/1.2/series/abc", "SeriesInstanceUID 'abc' is not a DICOM UID"),
        ("dicomweb+https://pacs/dicom-web/studies/1.2/instances/3", "after /studies/ expected"),
        ("dicomweb+https:///dicom-web/studies/1/series/2", "names no server"),
    ],
)
def test_bad_addresses_say_what_is_expected(url, message):
    with pytest.raises(ValueError, match=message):
        DicomWebAddress.parse(url)
    if url.startswith("dicomweb+"):
        with pytest.raises(SlideError, match=message):
            open_slide(url)


def test_credentials_never_travel_in_the_address_nor_show_in_the_message():
    with pytest.raises(SlideError, match="PATHALIGN_DICOMWEB_USER") as info:
        open_slide("dicomweb+https://jane:hunter2@pacs/dicom-web/studies/1/series/2")
    assert "hunter2" not in str(info.value) and "jane" not in str(info.value)


def test_a_study_is_not_a_slide_and_a_web_page_is_not_a_file():
    with pytest.raises(SlideError, match="append /series/<SeriesInstanceUID>"):
        open_slide("dicomweb+https://pacs/dicom-web/studies/1.2")
    with pytest.raises(SlideError, match="dicomweb\\+https://"):
        open_slide("https://pacs/dicom-web/studies/1.2/series/3")


def test_credentials_come_from_the_environment_and_never_show():
    env = {"PATHALIGN_DICOMWEB_USER": "jane", "PATHALIGN_DICOMWEB_PASSWORD": "hunter2"}
    creds = Credentials.from_env(env)
    assert creds.kind == "basic" and "hunter2" not in repr(creds)
    token = Credentials.from_env({"PATHALIGN_DICOMWEB_TOKEN": "tok-secret"})
    assert token.kind == "bearer token" and "tok-secret" not in repr(token) + repr(token.auth())
    assert Credentials.from_env({}).kind == "none"
    with pytest.raises(ValueError, match="both a user name and a password"):
        Credentials.from_env({"PATHALIGN_DICOMWEB_USER": "jane"})
    with pytest.raises(ValueError, match="not both"):
        Credentials.from_env({**env, "PATHALIGN_DICOMWEB_TOKEN": "t"})


@pytest.mark.parametrize(
    "text, expected", [("20240131", "20240131"), ("2024-01-31", "20240131"), ("20240101-20240131", "20240101-20240131")]
)
def test_study_dates(text, expected):
    assert check_date(text) == expected


def test_a_bad_study_date_says_what_is_accepted():
    with pytest.raises(ValueError, match="expected YYYYMMDD"):
        check_date("31/01/2024")
