"""What goes wrong with an archive, against a real Orthanc: each a clear ``SlideError`` naming server and remedy."""

from __future__ import annotations

import base64
import logging
import time
from dataclasses import replace

import numpy as np
import pytest

from napari_pathalign.io import SlideError, open_slide
from napari_pathalign.io.dicomweb import Credentials, DicomWebOptions
from napari_pathalign.io.dicomweb_slide import FrameDecodeError, open_dicomweb
from napari_pathalign.io.errors import (
    DicomWebAuthError,
    DicomWebConnectionError,
    NotASlideError,
    SeriesNotFoundError,
)
from tests.orthanc import Orthanc, series_url, slide_file, slide_url

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


# -- a damaged frame, a server that hangs: each against a real Orthanc of its own -------------------------------
HANGING = DicomWebOptions(connect_timeout_s=1, read_timeout_s=1, retries=1, backoff_s=0.05)
HANG_BOUND_S = 2 * (1 + 1) + 1.5  # two tries, each at most the connect and read timeouts, the backoff, slack
DAMAGED = (1, 2)  # (row, column) of the frame whose bytes are garbled in the damaged copy
CMU_LEVEL0 = "1.2.826.0.1.3680043.8.498.58740178995208579534253317996600852419.dcm"


def damaged_copy(path):
    """The CMU-1 level-0 instance as a new series whose frame DAMAGED is no JPEG: its first 64 bytes zeroed."""
    import pydicom
    from pydicom.encaps import encapsulate, generate_frames
    from pydicom.uid import generate_uid

    ds = pydicom.dcmread(path)
    frames = list(generate_frames(ds.PixelData, number_of_frames=int(ds.NumberOfFrames)))
    columns = -(-int(ds.TotalPixelMatrixColumns) // int(ds.Columns))
    k = DAMAGED[0] * columns + DAMAGED[1]
    frames[k] = bytes(64) + frames[k][64:]
    ds.PixelData = encapsulate(frames)
    ds.SeriesInstanceUID, ds.SOPInstanceUID = generate_uid(), generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    return ds


@pytest.fixture(scope="module")
def archive(tmp_path_factory, wsi_dir):
    """An Orthanc of these tests' own (they pause it) with CMU-1 and a damaged copy of it."""
    with Orthanc(tmp_path_factory.mktemp("archive")) as server:
        server.upload(*sorted((wsi_dir / "CMU-1-Small-Region-dicom").glob("*.dcm")))
        damaged = damaged_copy(wsi_dir / "CMU-1-Small-Region-dicom" / CMU_LEVEL0)
        server.upload_datasets(damaged)
        server.cmu = slide_url(server, wsi_dir, "cmu-1")
        server.damaged = (
            f"dicomweb+{server.dicomweb}/studies/{damaged.StudyInstanceUID}/series/{damaged.SeriesInstanceUID}"
        )
        server.damaged_uid = damaged.SOPInstanceUID
        yield server


@pytest.fixture
def local_cmu(wsi_dir):
    with open_slide(slide_file(wsi_dir, "cmu-1")) as slide:
        yield slide


def test_a_frame_that_does_not_decode_is_named_and_the_rest_still_reads(archive, local_cmu):
    row, col = DAMAGED
    with open_dicomweb(archive.damaged, Credentials(), QUICK) as slide:
        message = (
            rf"frame at row {row}, column {col} of pyramid level 0 \(frame 13 of instance {archive.damaged_uid}\) "
            r"arrived but could not be decoded \(.*\): the archive holds damaged pixel data there\. Other regions "
            rf"still read; ask the archive's administrators to check instance {archive.damaged_uid}"
        )
        with pytest.raises(FrameDecodeError, match=message) as info:
            slide.read_region((400, 200), (200, 200))  # frames (0, 1), (0, 2), (1, 1) and the damaged (1, 2)
        assert isinstance(info.value, SlideError) and not isinstance(info.value, DicomWebConnectionError)
        for xy, size in (((0, 0), (480, 240)), ((720, 240), (240, 240)), ((240, 480), (720, 240))):  # around it
            np.testing.assert_array_equal(slide.read_region(xy, size), local_cmu.read_region(xy, size))
        with pytest.raises(FrameDecodeError):  # asked again, it fails again: a failure is never cached
            slide.read_region((col * 240 + 10, row * 240 + 10), (8, 8))


def test_a_server_that_hangs_while_panning_times_out_in_the_set_time_and_recovers(archive, local_cmu):
    with open_dicomweb(archive.cmu, Credentials(), HANGING) as slide:
        for x in range(0, 960, 240):  # panning along the top
            slide.read_region((x, 0), (240, 240))
        archive.pause()
        try:
            start = time.monotonic()
            with pytest.raises(DicomWebConnectionError, match=r"timed out after 2 tries.*busy or hung.*read_timeout_s"):
                slide.read_region((0, 1200), (480, 480))  # 4 frames not fetched yet
            assert time.monotonic() - start < HANG_BOUND_S
            np.testing.assert_array_equal(
                slide.read_region((0, 0), (960, 240)), local_cmu.read_region((0, 0), (960, 240))
            )
        finally:
            archive.resume()
        region = ((0, 1200), (480, 480))  # the connection comes back by itself
        np.testing.assert_array_equal(slide.read_region(*region), local_cmu.read_region(*region))


def test_cancelling_a_worker_that_reads_from_a_hung_server_ends_it_in_the_set_time(archive, qtbot, tmp_path):
    """The analysis' feature worker (a napari generator worker): the server hangs after the tissue mask;
    Cancel (``quit``) ends the worker within the read timeout, not when the server wakes up."""
    pytest.importorskip("torch")
    from napari.qt.threading import thread_worker

    from napari_pathalign.core.grid_config import GridConfig
    from napari_pathalign.engine.features import iter_embed_slide
    from napari_pathalign.models.encoders import load_patch_encoder

    encoder = load_patch_encoder("embedded", device="cpu")
    options = replace(HANGING, cache_bytes=4 * 240 * 240 * 3)  # a few frames: patches need the server again
    slide = open_dicomweb(archive.cmu, Credentials(), options)

    def embed_while_the_server_hangs():
        job = iter_embed_slide(slide, encoder, GridConfig(), tmp_path, batch_size=4)
        first = next(job)  # the tissue mask and the grid are done, no patch is read yet
        archive.pause()
        yield first
        return (yield from job)

    outcome = {}
    errored = {"errored": lambda exc: outcome.setdefault("error", exc)}  # the dock shows it; here it is kept
    worker = thread_worker(embed_while_the_server_hangs, start_thread=False, connect=errored)()

    def cancel(_progress) -> None:  # what the dock's Cancel does, as soon as the job has started
        outcome.setdefault("cancelled", time.monotonic())
        worker.quit()

    worker.yielded.connect(cancel)
    try:
        with qtbot.waitSignal(worker.finished, timeout=int(3 * HANG_BOUND_S * 1000)):
            worker.start()
        assert time.monotonic() - outcome["cancelled"] < HANG_BOUND_S
        if "error" in outcome:  # the read in flight ended first, with the timeout's clear message
            assert isinstance(outcome["error"], DicomWebConnectionError) and "timed out" in str(outcome["error"])
        assert not list(tmp_path.glob("*.h5")), "a cancelled job wrote features"
    finally:
        archive.resume()
        slide.close()


def test_the_viewer_never_waits_long_for_a_hung_server_and_fills_in_when_it_answers(archive, local_cmu):
    """The viewer's reads (the dask chunks napari draws) wait at most ``display_wait_s`` for a frame: a hung
    archive gives blank tiles, said once, and a pan over it stalls once, not at every tile; once the archive
    answers, the fetches begun meanwhile arrive, are announced, and the tiles are the slide's own pixels."""
    faults, arrived = [], []
    options = replace(HANGING, display_wait_s=0.5)
    with open_dicomweb(archive.cmu, Credentials(), options) as slide:
        slide.watch_display(on_fault=faults.append, on_ready=lambda: arrived.append(time.monotonic()))
        level = slide.levels[0]  # what napari draws: 240-px chunks, one per frame
        np.testing.assert_array_equal(np.asarray(level[:240, :480]), local_cmu.read_region((0, 0), (480, 240)))
        assert not faults, "a server that answers draws the slide"
        archive.pause()
        try:
            start = time.monotonic()
            first = np.asarray(level[1200:1440, :240])  # a frame not fetched yet
            waited = time.monotonic() - start
            assert (first == 255).all() and 0.4 < waited < 1.5, waited
            assert len(faults) == 1 and "did not arrive within 0.5 s" in str(faults[0])
            start = time.monotonic()
            pan = np.asarray(level[1440:1920, :960])  # 8 more frames: blank at once while the fault is fresh
            assert (pan == 255).all() and time.monotonic() - start < 0.3
            assert len(faults) == 1, "one hang is said once"
            np.testing.assert_array_equal(  # what was fetched before still draws
                np.asarray(level[:240, :480]), local_cmu.read_region((0, 0), (480, 240))
            )
        finally:
            archive.resume()
        deadline = time.monotonic() + 10
        while not arrived and time.monotonic() < deadline:
            time.sleep(0.05)
        assert arrived, "the tiles fetched during the hang are announced when they arrive"
        time.sleep(0.5)
        deadline = time.monotonic() + 15
        while True:
            again = np.asarray(level[1200:1440, :240])
            if not (again == 255).all() or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        np.testing.assert_array_equal(again, local_cmu.read_region((0, 1200), (240, 240)))


def test_a_slide_opened_by_address_in_napari_survives_a_hung_archive(archive, make_napari_viewer, qtbot, monkeypatch):
    """The plugin's reader opens a ``dicomweb+http://...`` address; when the archive hangs before the first view
    is drawn, the window still draws (blank tiles) within the display wait, says so once, and redraws the slide
    when the archive answers again."""
    from napari_pathalign._napari.reader import get_reader

    said, redraws = [], []
    monkeypatch.setattr("napari_pathalign._napari.remote_display.show_warning", said.append)
    monkeypatch.setattr("napari_pathalign.io.dicomweb.DicomWebOptions.display_wait_s", 0.5)
    monkeypatch.setattr("napari_pathalign.io.dicomweb.DicomWebOptions.read_timeout_s", 1.0)
    monkeypatch.setattr("napari_pathalign.io.dicomweb.DicomWebOptions.retries", 1)
    viewer = make_napari_viewer(show=True)
    read = get_reader(archive.cmu)
    assert read is not None, "the reader takes a dicomweb+ address"
    ((data, kwargs, _),) = read(archive.cmu)
    slide = kwargs["metadata"]["slide"]
    assert slide.remote and kwargs["name"] == slide.path.name
    archive.pause()  # the archive hangs before any frame was fetched
    try:
        start = time.monotonic()
        layer = viewer.add_image(data, **kwargs)
        monkeypatch.setattr(layer, "refresh", lambda *a, **k: redraws.append(1))
        qtbot.wait(100)
        assert time.monotonic() - start < 3.0, "the window waited for the hung archive"
        qtbot.waitUntil(lambda: len(said) == 1, timeout=3000)
        assert "not answering" in said[0] and "keeps working" in said[0]
    finally:
        archive.resume()
    qtbot.waitUntil(lambda: len(redraws) > 0, timeout=15_000)  # the frames arrived: the slide is redrawn
    slide.close()
