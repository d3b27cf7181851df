"""A slide from a real Orthanc through the whole pipeline: features, maps, a draft, a check, an answer, the library.

The feature cache keys a slide from a server on its DICOM UIDs, not on the address or the credentials, so
the same series on another server (here a second, password-protected Orthanc) is a cache hit.
"""

from __future__ import annotations

import base64
import pickle

import numpy as np
import pytest

pytest.importorskip("torch")

from napari_pathalign.core.generators import run_to_end  # noqa: E402
from napari_pathalign.core.grid_config import GridConfig  # noqa: E402
from napari_pathalign.engine.features import slide_fingerprint  # noqa: E402
from napari_pathalign.io import open_slide  # noqa: E402
from napari_pathalign.reporting.analysis import SlideAnalysis  # noqa: E402
from napari_pathalign.reporting.drafting import iter_answer, iter_draft  # noqa: E402
from tests.orthanc import SLIDES, Orthanc, slide_file, slide_url  # noqa: E402

USER, PASSWORD = "pathologist", "s3cret-Pw!"


@pytest.fixture(scope="module")
def protected(tmp_path_factory, wsi_dir):
    """A second archive, behind a password, holding the same CMU-1 series as the session's ``orthanc``."""
    with Orthanc(tmp_path_factory.mktemp("protected"), users={USER: PASSWORD}) as server:
        server.upload(*sorted(wsi_dir.glob(SLIDES["cmu-1"][1])))
        yield server


@pytest.fixture(scope="module")
def web_analysis(orthanc, wsi_dir, models, tmp_path_factory):
    """The CMU-1 slide over DICOMweb, analysed with the shipped embedded models (46 patches, a few seconds)."""
    g, r, enc = models
    slide = open_slide(slide_url(orthanc, wsi_dir, "cmu-1"))
    a = SlideAnalysis(slide, encoder=enc, model=g, retrieval_model=r, cache_dir=tmp_path_factory.mktemp("features"))
    a.stages = [p.stage for p in a.iter_prepare()]
    yield a
    slide.close()


def test_a_slide_from_the_server_is_keyed_on_its_dicom_uids(orthanc, wsi_dir, web_analysis):
    slide = web_analysis.slide
    pyramid = slide.properties["dicom.pyramid"]
    (entry,) = pyramid  # CMU-1: one pyramid instance, '<SOPInstanceUID> <columns>x<rows> <TransferSyntaxUID>'
    assert entry == "1.2.826.0.1.3680043.8.498.58740178995208579534253317996600852419 2220x2967 1.2.840.10008.1.2.4.50"
    fp = slide_fingerprint(slide)
    assert len(fp) == 16 and slide_fingerprint(slide.path) == fp  # callers that keep only the path
    copied = pickle.loads(pickle.dumps(slide.path))
    assert (copied.dicom_pyramid, copied.dicomweb_url) == (slide.path.dicom_pyramid, slide.url)
    other_address = slide.url.replace("127.0.0.1", "localhost")  # another root, the same series
    with open_slide(other_address) as again:
        assert again.properties["dicomweb.root"] != slide.properties["dicomweb.root"]
        assert slide_fingerprint(again) == fp
    with open_slide(slide_url(orthanc, wsi_dir, "boxes")) as other:
        assert slide_fingerprint(other) != fp
    assert slide_fingerprint(slide_file(wsi_dir, "cmu-1")) != fp  # a file keeps its byte hash
    with pytest.raises(ValueError, match="pass the open Slide"):
        slide_fingerprint(str(slide.path))  # a bare display path: nothing to hash
    assert slide.path.stem == slide.properties["dicom.SeriesInstanceUID"]  # cache files are named by the series


def test_analysis_of_a_slide_from_the_server_equals_the_file(web_analysis, wsi_dir, models, tmp_path):
    g, r, enc = models
    a = web_analysis
    assert a.stages[-1] == "ready" and {"features", "slide embedding", "attention", "regions"} <= set(a.stages)
    with open_slide(slide_file(wsi_dir, "cmu-1")) as local:
        b = SlideAnalysis(local, encoder=enc, model=g, retrieval_model=r, cache_dir=tmp_path)
        list(b.iter_prepare())
    fa, fb = a.features, b.features
    assert len(fa.features) > 20
    np.testing.assert_array_equal(fa.xy_level0, fb.xy_level0)
    np.testing.assert_allclose(fa.features, fb.features, rtol=0, atol=1e-5)
    np.testing.assert_allclose(a.embedding().vector, b.embedding().vector, atol=1e-5)
    heat, heat_local = a.text_heatmap("tumour"), b.text_heatmap("tumour")
    assert heat.values.shape == (len(fa.features),) and np.isfinite(heat.values).all()
    np.testing.assert_allclose(heat.values, heat_local.values, atol=1e-4)
    assert a.attention_heatmap().values.shape == (len(fa.features),)


def test_draft_check_and_answer_on_a_slide_from_the_server(web_analysis):
    a = web_analysis
    draft = run_to_end(iter_draft(a))
    assert draft.text.strip() and draft.sentences
    p = draft.provenance
    assert p.slide_fingerprint == slide_fingerprint(a.slide) and p.slide == str(a.slide.path)
    assert all(0 <= s.support <= 1 for s in draft.sentences)
    checked = a.check("Invasive adenocarcinoma is present. Background: mature fat.")
    assert [s.support is not None for s in checked.sentences] == [True, True]
    answer = run_to_end(iter_answer(a, "Is tumour present?"))  # CMU-1 is colon: the model may decline, and say so
    assert answer.text.strip() and answer.provenance.slide_fingerprint == p.slide_fingerprint


def test_the_same_series_on_another_server_with_credentials_is_a_cache_hit(
    protected, web_analysis, wsi_dir, models, monkeypatch
):
    g, r, enc = models
    url = slide_url(protected, wsi_dir, "cmu-1")
    monkeypatch.setenv("PATHALIGN_DICOMWEB_USER", USER)
    monkeypatch.setenv("PATHALIGN_DICOMWEB_PASSWORD", PASSWORD)

    def never(batch):
        raise AssertionError("patches were encoded again: the feature cache missed")

    with open_slide(url) as slide:
        monkeypatch.setattr(enc, "encode", never)
        again = SlideAnalysis(slide, encoder=enc, model=g, retrieval_model=r, cache_dir=web_analysis.cache_dir)
        features = [p for p in again.iter_prepare() if p.stage == "features"]
        assert len(features) == 1 and features[0].done == features[0].total  # read from the cache at once
        np.testing.assert_array_equal(again.features.features, web_analysis.features.features)


def test_a_slide_from_the_server_in_the_library_keeps_its_uids_not_the_credentials(
    protected, web_analysis, wsi_dir, models, monkeypatch, tmp_path
):
    from napari_pathalign.engine.library_build import iter_build, model_identity, slide_record
    from napari_pathalign.index import Library

    g, r, enc = models
    url = slide_url(protected, wsi_dir, "cmu-1")
    monkeypatch.setenv("PATHALIGN_DICOMWEB_USER", USER)
    monkeypatch.setenv("PATHALIGN_DICOMWEB_PASSWORD", PASSWORD)
    folder = tmp_path / "library"
    with Library.create(folder, **model_identity(r, enc)) as library:
        table = {url: {"report": "Colon: invasive adenocarcinoma.", "label": "adenocarcinoma"}}
        (result,) = run_to_end(iter_build([url], library, r, enc, GridConfig(), web_analysis.cache_dir, table))
        assert not result.error and result.id is not None and result.n_patches == len(web_analysis.features.features)
        record = library.get(result.id)
        assert record.path == url and record.fingerprint == slide_fingerprint(web_analysis.slide)
        assert record.extra["dicomweb.root"] == protected.dicomweb and record.label == "adenocarcinoma"
        assert record.extra["dicom.SeriesInstanceUID"] == web_analysis.slide.properties["dicom.SeriesInstanceUID"]
        assert record.extra["dicom.SOPInstanceUIDs"] == [
            "1.2.826.0.1.3680043.8.498.58740178995208579534253317996600852419"
        ]
        (hit,) = library.search(record.vector, k=1)
        with open_slide(hit.path) as reopened:  # what the Similar cases dock does with a hit
            assert reopened.read_region((500, 500), (64, 64)).mean() < 250
        # what the Similar cases dock passes: the open slide's path, which carries its address
        same, _ = slide_record(web_analysis.slide.path, r, enc, GridConfig(), web_analysis.cache_dir)
        assert same.path == web_analysis.slide.url and same.fingerprint == record.fingerprint
    secret = base64.b64encode(f"{USER}:{PASSWORD}".encode())
    for f in folder.iterdir():
        data = f.read_bytes()
        assert PASSWORD.encode() not in data and secret not in data and f"{USER}:".encode() not in data, f.name
