"""SlideAnalysis on the real demo lymph node with the shipped embedded models (no Qt)."""

from __future__ import annotations

import json
from importlib.resources import files

import numpy as np
import pytest

pytest.importorskip("torch")

from napari_pathalign.core.generators import run_to_end  # noqa: E402
from napari_pathalign.engine.maps import background_vocabulary  # noqa: E402
from napari_pathalign.io import open_slide  # noqa: E402
from napari_pathalign.reporting.analysis import SlideAnalysis  # noqa: E402
from napari_pathalign.reporting.drafting import iter_answer, iter_draft, statements_at  # noqa: E402

DEMO = files("napari_pathalign.resources") / "demo-lymph-node.tif"


@pytest.fixture(scope="module")
def analysis(models, tmp_path_factory):
    g, r, enc = models
    a = SlideAnalysis(
        open_slide(str(DEMO)), encoder=enc, model=g, retrieval_model=r, cache_dir=tmp_path_factory.mktemp("features")
    )
    stages = [p.stage for p in a.iter_prepare()]
    a.stages = stages
    return a


def test_prepare_reports_progress_and_computes_everything_once(analysis):
    stages = analysis.stages
    assert stages[0] == "models" and stages[-1] == "ready"
    assert {"features", "slide embedding", "attention", "regions"} <= set(stages)
    n = len(analysis.features.features)
    assert n > 50 and analysis.features.features.shape[1] == 404
    assert analysis.embedding("retrieval").embedding.shape == (1, 256)
    assert analysis.embedding("generation").embedding.shape == (32, 256)
    assert analysis.attention_shape == (2, 4, 32)  # 2 cross-attention layers, 4 heads, 32 queries
    with pytest.raises(ValueError, match="expected one of"):
        analysis.embedding("other")


def test_attention_selection_and_reduction(analysis):
    a = analysis.cross_attention  # (L, H, Q, N)
    one = analysis.attention_heatmap(layer=1, head=2, query=5)
    np.testing.assert_allclose(one.values, a[1, 2, 5], rtol=1e-6)
    mean = analysis.attention_heatmap()
    np.testing.assert_allclose(mean.values, a.mean(axis=(0, 1, 2)), rtol=1e-5)
    mx = analysis.attention_heatmap(query=3, reduce="max")
    np.testing.assert_allclose(mx.values, a[:, :, 3].max(axis=(0, 1)), rtol=1e-6)
    assert "query 3" in mx.label and mx.kind == "attention"
    weighted = analysis.attention_heatmap(text="metastatic carcinoma")
    assert weighted.kind == "attention-text-weighted" and "weighted" in weighted.label
    w = np.array(weighted.params["query_weights"])
    assert w.shape == (32,) and abs(w.sum() - 1) < 1e-3
    for bad in (dict(layer=2), dict(head=-1), dict(query=32), dict(reduce="median"), dict(query=1, text="x")):
        with pytest.raises(ValueError):
            analysis.attention_heatmap(**bad)
    assert len(analysis.query_heatmaps()) == 32


def test_text_heatmap_modes_and_bad_text(analysis):
    n = len(analysis.features.features)
    for mode in ("centred", "softmax", "raw"):
        h = analysis.text_heatmap("metastatic carcinoma", contrast=mode)
        assert h.values.shape == (n,) and np.isfinite(h.values).all() and h.params["contrast"] == mode
    soft = analysis.text_heatmap("adipose tissue", contrast="softmax")
    assert (soft.values > 0).all() and (soft.values < 1).all()
    assert analysis.text_heatmap("lymphocytes").values.std() > 0  # a map, not a constant
    for bad in ("", "   ", None):
        with pytest.raises(ValueError, match="empty"):
            analysis.text_heatmap(bad)
    with pytest.raises(ValueError, match="contrast"):
        analysis.text_heatmap("x", contrast="loud")


def test_background_vocabulary_leaves_out_the_texts_own_class():
    vocab = background_vocabulary("metastatic carcinoma")
    assert "metastatic carcinoma is present" not in vocab and "adipose tissue" in vocab
    assert "metastatic carcinoma" not in vocab


def test_tumour_text_heatmap_finds_the_tumour_focus(analysis):
    """The demo node's ground-truth class map (shipped beside it) says which patches lie on tumour."""
    from napari_pathalign.eval.class_maps import patch_class_fractions, read_class_map
    from napari_pathalign.eval.localisation import slide_auc

    cmap = read_class_map(str(DEMO))
    f = analysis.features
    on_tumour = patch_class_fractions(cmap, f.xy_level0, f.size_level0)[:, cmap.classes.index("tumour")] > 0.5
    assert 5 < on_tumour.sum() < len(on_tumour) - 5
    assert slide_auc(analysis.text_heatmap("metastatic carcinoma").values, on_tumour) > 0.8
    assert slide_auc(analysis.text_heatmap("lymphoid tissue").values, ~on_tumour) > 0.6


def test_zero_shot_probabilities_and_class_maps(analysis):
    z = analysis.zero_shot()  # the default set: the report ontology's 'diagnosis'
    assert set(z.probabilities) == {"tumour", "no tumour"}
    assert abs(sum(z.probabilities.values()) - 1) < 1e-6 and z.temperature > 1
    assert z.best == "tumour"  # the demo node holds a 22.6% tumour focus
    stacked = np.stack([z.heatmaps[c].values for c in z.probabilities])  # (C, N)
    np.testing.assert_allclose(stacked.sum(0), 1, atol=1e-5)
    custom = analysis.zero_shot(
        {"fat": ["adipose tissue", "mature fat"], "nodes": "lymphoid tissue", "tumour": ["metastatic carcinoma"]},
        model="generation",
    )
    assert len(custom.probabilities) == 3 and custom.model == "generation"
    for bad in ({"only": ["one class"]}, {"a": [], "b": ["x"]}, {"a": ["x"], "": ["y"]}, ["not", "a", "dict"]):
        with pytest.raises(ValueError):
            analysis.zero_shot(bad)


def test_region_restricts_to_the_polygon_and_reuses_features(analysis):
    f = analysis.features
    s = f.size_level0
    x0, y0 = f.xy_level0.min(0)
    poly = np.array([[x0, y0], [x0 + 4 * s, y0], [x0 + 4 * s, y0 + 20 * s], [x0, y0 + 20 * s]], float)
    region = analysis.region(poly)
    inside = (f.xy_level0[:, 0] + s / 2 < x0 + 4 * s) & (f.xy_level0[:, 1] + s / 2 < y0 + 20 * s)
    assert len(region.features.features) == inside.sum() > 0
    np.testing.assert_array_equal(region.features.features, f.features[inside])  # reused, not recomputed
    assert region.parent is analysis and region.ready
    assert not np.allclose(region.embedding("retrieval").embedding, analysis.embedding("retrieval").embedding)
    assert len(region.text_heatmap("metastatic carcinoma")) == inside.sum()
    assert abs(sum(region.zero_shot().probabilities.values()) - 1) < 1e-6
    with pytest.raises(ValueError, match="no analysed patch"):
        analysis.region([[0, 0], [5, 0], [5, 5]])
    with pytest.raises(ValueError, match="at least 3"):
        analysis.region([[0, 0], [5, 5]])


def test_raster_lies_on_the_slide_in_micrometres(analysis):
    h = analysis.text_heatmap("metastatic carcinoma")
    r = h.raster()
    mpp = analysis.slide.mpp
    assert r.units == "µm" and np.isclose(r.scale[0], h.size_level0 * mpp)
    rc = h.lattice_rc() - r.origin_rc
    for i in (0, len(h) // 2, len(h) - 1):
        centre_world = np.array(r.translate) + rc[i] * np.array(r.scale)  # (row, col) µm
        x, y = h.xy_level0[i]
        expect = np.array([y + h.size_level0 / 2 - 0.5, x + h.size_level0 / 2 - 0.5]) * mpp
        np.testing.assert_allclose(centre_world, expect, atol=1e-6)
        assert r.image[rc[i][0], rc[i][1]] == h.values[i]
    assert np.isnan(r.image).any()  # glass around the tissue stays empty


def test_slide_without_mpp_is_refused(wsi_dir):
    with pytest.raises(ValueError, match="microns-per-pixel"):
        SlideAnalysis(open_slide(str(wsi_dir / "tcga-cr-7395-01a-01-ts1.svs")))


def test_encoder_mismatch_and_bad_checkpoints_are_clear_errors(models, tmp_path):
    from napari_pathalign.models.checkpoint import CheckpointError
    from napari_pathalign.models.encoders import load_patch_encoder

    g, r, _ = models
    a = SlideAnalysis(
        open_slide(str(DEMO)),
        encoder=load_patch_encoder("test-tiny", device="cpu"),
        model=g,
        retrieval_model=r,
        cache_dir=tmp_path,
    )
    with pytest.raises(ValueError, match="pick 'embedded' as the encoder"):
        list(a.iter_prepare())
    assert a.features is None  # refused before any patch was embedded
    (tmp_path / "notmodel").mkdir()
    with pytest.raises(CheckpointError, match="not a PathAlign checkpoint"):
        list(SlideAnalysis(open_slide(str(DEMO)), model=tmp_path / "notmodel", cache_dir=tmp_path).iter_prepare())
    broken = tmp_path / "broken"
    broken.mkdir()
    src = files("napari_pathalign.resources") / "pathalign_embedded_r"
    (broken / "config.json").write_text((src / "config.json").read_text())
    (broken / "model.safetensors").write_bytes((src / "model.safetensors").read_bytes()[:5000])
    with pytest.raises(CheckpointError, match="truncated or corrupted"):
        list(SlideAnalysis(open_slide(str(DEMO)), model=broken, cache_dir=tmp_path).iter_prepare())


def test_a_slide_without_tissue_says_so(models, tmp_path):
    from napari_pathalign.io.write import write_pyramid_tiff

    g, r, enc = models
    blank = write_pyramid_tiff(tmp_path / "blank.tif", np.full((1024, 1024, 3), 245, np.uint8), 0.5)
    a = SlideAnalysis(open_slide(str(blank)), encoder=enc, model=g, retrieval_model=r, cache_dir=tmp_path)
    with pytest.raises(ValueError, match="no tissue found"):
        list(a.iter_prepare())
    with pytest.raises(RuntimeError, match="not prepared"):
        a.text_heatmap("x")


def test_cli_heatmap_and_zero_shot(tmp_path, capsys):
    from napari_pathalign.cli import main

    out = tmp_path / "tumour.geojson"
    args = [str(DEMO), "--cache-dir", str(tmp_path / "c"), "--device", "cpu"]
    assert main(["heatmap", *args, "--text", "metastatic carcinoma", "--out", str(out)]) == 0
    features = json.loads(out.read_text())["features"]
    assert len(features) > 50 and features[0]["geometry"]["type"] == "Polygon"
    assert main(["heatmap", *args, "--text", "x", "--out", str(out)]) == 2  # exists: refused, file kept
    assert "--overwrite" in capsys.readouterr().err
    assert main(["heatmap", *args, "--attention", "--layer", "0", "--query", "3", "--out", str(tmp_path / "a.h5")]) == 0
    assert main(["heatmap", *args, "--attention", "--layer", "9", "--out", str(tmp_path / "b.h5")]) == 2
    assert "out of range" in capsys.readouterr().err and not (tmp_path / "b.h5").exists()
    capsys.readouterr()
    assert main(["zero-shot", *args, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert abs(sum(result["probabilities"].values()) - 1) < 1e-6 and result["best"] in result["probabilities"]
    assert main(["zero-shot", *args, "--set", "nope"]) == 2


def test_draft_streams_and_every_sentence_has_support_and_evidence(analysis):
    from napari_pathalign.models.decoder import GenerationConfig

    parts = []
    draft = run_to_end(iter_draft(analysis), parts.append)
    assert len(parts) > 5 and all(b.startswith(a[: len(a) - 1]) for a, b in zip(parts, parts[1:]))  # it grows
    assert draft.text and draft.text == parts[-1] and "lymph node" in draft.text.lower()
    assert len(draft.sentences) >= 2
    for s in draft.sentences:
        assert 0 <= s.support <= 1 and len(s.evidence.top_patches) == 6 and s.evidence.heatmap.kind == "text"
    p = draft.provenance
    assert (
        p.model == "embedded"
        and p.retrieval_model == "embedded-r"
        and len(p.slide_fingerprint) == 16
        and p.prompt == "Final diagnosis:"
    )
    d = draft.to_dict()
    assert d["sentences"][0]["evidence_xy_level0"] and d["provenance"]["decoding"]["num_beams"] == 1
    beam = list(iter_draft(analysis, GenerationConfig(num_beams=3)))
    assert len(beam) == 1 and beam[0]  # beam search cannot stream: one piece
    stopped = iter_draft(analysis)
    next(stopped)
    stopped.close()  # Stop: the decoding thread ends, nothing hangs


def test_support_checks_each_claim_against_the_slide(analysis):
    """The demo node: metastatic carcinoma over 23 % of the tissue (moderate), the rest lymphoid."""
    from napari_pathalign.reporting.drafting import build_statements

    text = (
        "Lymph node, sentinel, excision: Metastatic carcinoma. Negative for metastatic carcinoma. "
        "Tumour forms a moderate proportion. Tumour forms a small focus. Background shows lymphoid "
        "tissue. Background shows desmoplastic stroma."
    )
    s = build_statements(analysis, text)
    assert [len(x.claims) for x in s] == [1] * 6
    right_call, wrong_call, right_extent, wrong_extent, right_tissue, wrong_tissue = s
    assert right_call.support > 0.9 > 0.1 > wrong_call.support
    assert right_extent.support > 0.5 > wrong_extent.support
    assert (
        right_tissue.support > 0.9 and wrong_tissue.support < 0.3 and wrong_tissue.flagged and not right_tissue.flagged
    )
    extent = right_extent.claims[0]
    assert extent.kind == "extent" and 0.1 < extent.measured < 0.35 and "measured at about" in extent.basis
    # what the measurement counted lies on the tumour (the demo node's class map says where it is)
    from napari_pathalign.eval.class_maps import patch_class_fractions, read_class_map
    from napari_pathalign.eval.localisation import slide_auc

    cmap, f = read_class_map(str(DEMO)), analysis.features
    on_tumour = patch_class_fractions(cmap, f.xy_level0, f.size_level0)[:, cmap.classes.index("tumour")] > 0.5
    measured = right_extent.evidence.measurement
    assert measured.kind == "measurement" and abs(float(measured.values.mean()) - float(extent.per_patch.mean())) < 1e-6
    assert slide_auc(measured.values, on_tumour) > 0.8
    assert right_call.evidence.measurement is None  # a diagnosis is the LM's choice: nothing measured
    assert "lymphoid tissue" in right_tissue.basis and all(0 <= c.probability <= 1 for x in s for c in x.claims)
    yes, no = (
        build_statements(analysis, "Yes.", "Is tumour present?", "Is tumour present?"),
        build_statements(analysis, "No.", "Is tumour present?", "Is tumour present?"),
    )
    assert yes[0].claims[0].kind == "answer" and yes[0].support > 0.8 > 0.2 > no[0].support
    specimen = build_statements(analysis, "Lymph node, sentinel, excision:")[0]
    assert not specimen.claims and "similarity rank" in specimen.basis  # nothing to check: the rank, said so
    assert (
        analysis.cache["claim_checker"].method() == "head" and "measurement head" in right_tissue.basis
    )  # the shipped head fits the shipped models


def test_zero_shot_measurement_without_a_head(analysis):
    """A model without a measurement head measures with its zero-shot maps, and says so."""
    from napari_pathalign.reporting.claims import ClaimChecker

    checker = ClaimChecker(analysis, head=None)
    assert checker.method() == "zero-shot"
    measured = checker.measure("lymph node")
    assert set(measured) == {"lymphoid tissue", "metastatic carcinoma"} and abs(sum(measured.values()) - 1) < 1e-5
    assert checker.organ("Tumour forms a small focus.") == "lymph node"  # no organ named: the slide itself says which
    assert checker.organ("Colon, sigmoid, biopsy:") == "colon"  # named in the text: taken as written
    right, wrong = checker.check(
        ["Background shows lymphoid tissue.", "Background shows desmoplastic stroma."], "Final diagnosis:"
    )
    assert right[0].probability > 0.8 > 0.3 > wrong[0].probability and "zero-shot map" in right[0].basis


def test_attribution_is_what_the_similarity_used(analysis):
    """Deleting the top 10 % patches by attribution lowers the similarity more than a random 10 %."""
    from napari_pathalign.eval.localisation import deletion_test

    text = "Metastatic carcinoma."
    (attribution,) = analysis.similarity_attribution([text])
    assert (
        attribution.kind == "attribution"
        and len(attribution) == len(analysis.features.xy_level0)
        and np.isfinite(attribution.values).all()
    )
    d = deletion_test(analysis, attribution, text, "retrieval")
    assert d.drop_top > d.drop_random and d.drop_top > 0
    with pytest.raises(ValueError):
        analysis.similarity_attribution([""])


def test_answers_history_region_and_statements_at(analysis):
    answer = run_to_end(
        iter_answer(analysis, "Is tumour present?", history=[("Which tissues are present?", "Lymphoid tissue.")])
    )
    assert answer.question == "Is tumour present?" and answer.text.startswith(("Yes", "No")) and not answer.history_used
    assert answer.answered and answer.intent["kind"] == "presence" and answer.intent["class"] == "tumour"
    (sentence,) = answer.sentences  # a closed question is answered by choice: one sentence, its probability
    assert 0.5 <= sentence.support <= 1 and sentence.claims[0].kind == "answer"
    assert sentence.evidence.measurement is not None and len(sentence.evidence.top_patches) > 0
    # a follow-up takes what it lacks from the conversation
    more = run_to_end(iter_answer(analysis, "And how much?", history=[("Is there metastasis?", answer.text)]))
    assert more.intent["kind"] == "extent" and more.intent["class"] == "metastatic carcinoma" and more.history_used
    assert "read with the conversation" in more.note and more.text.endswith(".")
    doc = more.to_dict()
    assert doc["intent"]["understood_as"] == "how much of the tissue is metastatic carcinoma?" and doc["answered"]
    # what the slide cannot tell is not answered, and carries no support
    age = run_to_end(iter_answer(analysis, "How old is the patient?"))
    assert not age.answered and age.text.startswith("I can't answer that from this slide") and not age.sentences
    for bad in ("", "   ", "x" * 5000):
        with pytest.raises(ValueError):
            next(iter_answer(analysis, bad))
    f = analysis.features
    region = analysis.region(
        np.array([[0, 0], [f.xy_level0[:, 0].max(), 0], [f.xy_level0[:, 0].max(), 600], [0, 600]], float)
    )
    regional = list(iter_answer(region, "Is tumour present?"))
    assert regional and region.statements is not analysis.statements
    here = statements_at(analysis, f.xy_level0[0] + 3)
    assert here.patch == 0 and here.statements and abs(sum(here.class_probabilities.values()) - 1) < 1e-5
    values = [v for _, v in here.statements]
    assert values == sorted(values, reverse=True) and all(0 <= v <= 1 for v in values)
    assert statements_at(analysis, (-50, -50)) is None


def test_retrieval_model_cannot_draft(models, tmp_path):
    g, r, enc = models
    a = SlideAnalysis(open_slide(str(DEMO)), encoder=enc, model=r, retrieval_model=r, cache_dir=tmp_path)
    list(a.iter_prepare())
    with pytest.raises(ValueError, match="no language model"):
        list(iter_draft(a))


def test_case_report_reads_back_as_parts():
    from napari_pathalign.reporting.drafting import case_report
    from napari_pathalign.train.reports import split_report

    text = case_report(
        [
            ("A", "Lymph node, sentinel, excision: Metastatic carcinoma."),
            ("B", "Lymph node, axillary, excision: No tumour identified."),
        ]
    )
    parts = split_report(text).parts
    assert set(parts) == {"A", "B"} and "Metastatic" in parts["A"] and "No tumour" in parts["B"]


def test_cli_draft_case_report_and_ask(tmp_path, capsys):
    from napari_pathalign.cli import main
    from napari_pathalign.train.reports import split_report

    common = ["--cache-dir", str(tmp_path / "c"), "--device", "cpu"]
    out = tmp_path / "report.json"
    assert main(["draft", str(DEMO), *common, "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["text"] and doc["provenance"]["model"] == "embedded" and doc["sentences"]
    assert all("support" in x and "claims" in x and x["evidence_xy_level0"] for x in doc["sentences"])
    assert any(c["kind"] == "diagnosis" for x in doc["sentences"] for c in x["claims"])
    assert (
        main(["draft", str(DEMO), *common, "--out", str(out)]) == 2 and "--overwrite" in capsys.readouterr().err
    )  # never replaced unasked
    case = tmp_path / "case.md"
    assert main(["draft", str(DEMO), "--case", str(DEMO), *common, "--out", str(case)]) == 0
    printed = capsys.readouterr().out
    text = printed[: printed.index("part A:")].strip()
    assert set(split_report(text).parts) == {"A", "B"}  # lettered parts, as training curation reads them back
    md = case.read_text()
    assert "FINAL DIAGNOSIS:" in md and "\nA. " in md and "\nB. " in md and "weakest claim" in md
    assert main(["ask", str(DEMO), "Is tumour present?", *common, "--json"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["answer"] and 0 <= answer["support"] <= 1 and answer["evidence"][0]["claims"][0]["kind"] == "answer"
    assert main(["ask", str(DEMO), "  ", *common]) == 2 and "empty" in capsys.readouterr().err
    assert (
        main(["draft", str(DEMO), *common, "--model", "embedded-r"]) == 2
        and "no language model" in capsys.readouterr().err
    )


def test_a_slide_unlike_the_training_tissue_is_said_so(models, analysis, tmp_path):
    """The real CMU-1 (skin) gets a warning with its draft; the held-out demo lymph node does not."""
    g, r, enc = models
    skin = SlideAnalysis(
        open_slide(str(files("napari_pathalign.resources") / "CMU-1-Small-Region.svs")),
        encoder=enc,
        model=g,
        retrieval_model=r,
        cache_dir=tmp_path,
    )
    list(skin.iter_prepare())
    draft = run_to_end(iter_draft(skin))
    scope = draft.in_scope
    assert scope is not None and scope.flagged and scope.score < 0.5
    doc = draft.to_dict()
    assert doc["provenance"]["in_scope"]["flagged"] and set(doc["provenance"]["in_scope"]) >= {"score", "basis"}
    # the draft begins by saying so, and no claim is supported beyond the in-scope probability
    assert doc["text"].startswith("OUT OF SCOPE") and "outside what the model was trained on" in draft.note
    assert all(s.support <= scope.score + 1e-9 for s in draft.sentences if s.claims)
    assert all(c.probability <= scope.score + 1e-9 for s in draft.sentences for c in s.claims)
    answer = run_to_end(iter_answer(skin, "Is tumour present?"))
    assert answer.shown_text.startswith("This tissue is outside what the model was trained on")
    assert not answer.answered and "I can't answer that from this slide" in answer.shown_text and not answer.sentences
    checked = skin.check("Metastatic carcinoma is present.")
    assert checked.to_dict()["in_scope"]["flagged"] and all(
        c.probability <= scope.score + 1e-9 for _, c in [(s, c) for s in checked.sentences for c in s.claims]
    )
    # the held-out demo lymph node is in scope: nothing capped, nothing prefixed
    inside = analysis.in_scope()
    assert inside is not None and not inside.flagged and inside.nearest_organ == "lymph node"


def test_a_second_analysis_reads_its_caches_and_the_01_path_keeps_working(analysis, models):
    """Analyse of a slide analysed before reads the features and the neighbourhood embeddings from the
    cache (the warm workspace), and ``napari_pathalign.pipeline.analysis.SlideAnalysis`` still drafts."""
    from napari_pathalign.pipeline.analysis import SlideAnalysis as SlideAnalysis01

    g, r, enc = models
    again = SlideAnalysis01(analysis.slide, encoder=enc, model=g, retrieval_model=r, cache_dir=analysis.cache_dir)
    regions = [p for p in again.iter_prepare() if p.stage == "regions"]
    assert len(regions) == 1 and regions[0].done == regions[0].total  # read back, not recomputed batch by batch
    assert list(analysis.cache_dir.glob("*.neighbourhoods.npy"))
    np.testing.assert_array_equal(again.neighbourhoods, analysis.neighbourhoods)
    draft = run_to_end(again.iter_draft())
    assert draft.text and draft.sentences and again.statements_at(again.features.xy_level0[0] + 3) is not None
    xy = again.features.xy_level0
    (x0, y0), (x1, y1) = xy.min(0), xy.max(0) + again.features.size_level0
    child = again.region(np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]]))
    assert isinstance(child, SlideAnalysis01) and child.parent is again and len(child.features.features) == len(xy)


def test_check_a_pathologists_report_against_the_slide(analysis, tmp_path, capsys):
    """Any text, checked claim by claim: the demo node has metastatic carcinoma over ~23 % of lymphoid tissue."""
    from napari_pathalign.cli import main

    report = (
        "LYMPH NODE, SENTINEL, EXCISION:\nMetastatic carcinoma is present.\nNo adenocarcinoma is seen.\n"
        "The tumour occupies between 10% and 30% of the node.\nThe tumour is extensive, more than 30%.\n"
        "Background: reactive lymphoid tissue.\nBackground: mature fat.\nSpecimen received in formalin."
    )
    checked = analysis.check(report)
    by_text = {s.text: s for s in checked.sentences}
    assert by_text["Metastatic carcinoma is present."].claims[0].kind == "diagnosis"
    assert by_text["No adenocarcinoma is seen."].claims[0].kind == "negative"
    right, wrong = (
        by_text["The tumour occupies between 10% and 30% of the node."],
        by_text["The tumour is extensive, more than 30%."],
    )
    assert right.support > 0.5 > wrong.support and wrong in [s for s, _ in checked.unsupported]
    assert (
        by_text["Background: reactive lymphoid tissue."].support
        > 0.9
        > 0.3
        > by_text["Background: mature fat."].support
    )
    d = checked.to_dict()
    line = next(s for s in d["sentences"] if s["text"] == "Specimen received in formalin.")
    assert line["support"] is None and "no claim" in line["why"] and d["ontology"] == "'embedded-demo' v1"
    assert all(c["kind"] in ("diagnosis", "negative", "tissue", "extent") for s in d["sentences"] for c in s["claims"])
    assert checked.sentences[1].evidence.heatmap.kind == "text"  # the same evidence objects as a draft's
    for bad, message in (
        ("", "empty"),
        ("x" * 1_048_576, "1,048,576 characters"),
        ("Specimen received in formalin. Two cassettes.", "nothing in this report can be checked"),
    ):
        with pytest.raises(ValueError, match=message):
            analysis.check(bad)
    # the command line: exit 0 and JSON of that shape, with the ontology given
    onto = tmp_path / "own-words.json"
    onto.write_text(
        json.dumps(
            {
                "name": "own-words",
                "version": 2,
                "extent": [
                    {"name": "limited", "upper": 0.15, "phrases": ["limited"]},
                    {"name": "bulky", "upper": 1.0, "phrases": ["bulky"]},
                ],
                "organs": [
                    {
                        "name": "node",
                        "words": ["node"],
                        "negative_phrases": ["no secondary deposits"],
                        "classes": [
                            {
                                "name": "secondary deposit",
                                "tumour": True,
                                "phrases": ["secondary deposit"],
                                "prompts": ["metastatic carcinoma"],
                                "label": "tumour",
                            },
                            {
                                "name": "nodal tissue",
                                "tumour": False,
                                "phrases": ["nodal tissue"],
                                "prompts": ["lymphoid tissue"],
                                "label": "normal",
                            },
                        ],
                    }
                ],
            }
        )
    )
    text = tmp_path / "report.txt"
    text.write_text("Node: a secondary deposit is seen, limited. The rest is nodal tissue.")
    args = ["check", str(DEMO), str(text), "--ontology", str(onto), "--cache-dir", str(analysis.cache_dir), "--json"]
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["ontology"] == "'own-words' v2"
    claims = [c for s in out["sentences"] for c in s["claims"]]
    assert {(c["kind"], c["value"]) for c in claims} == {
        ("diagnosis", "secondary deposit"),
        ("extent", "limited"),
        ("tissue", "nodal tissue"),
    }
    assert all(set(c) >= {"kind", "value", "phrase", "probability", "basis"} for c in claims)
    assert all(s["support"] is not None for s in out["sentences"])
    missing = tmp_path / "missing.txt"
    assert main(["check", str(DEMO), str(missing)]) == 2 and "does not exist" in capsys.readouterr().err
