"""A department's own wording end to end: an ontology for an organ the code never mentions, a tiny
PathAlign trained on reports written in it (``pathalign train --ontology``), then ``pathalign check``
finds and checks claims in that phrasing. The slides are made of real demo tiles: the made-up
"glandula" has two tumour subtypes (Kather stroma tiles play the spindle neoplasm, adipose tiles the
clear-cell one) on acini (Kather mucosa)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.conftest import SHARED_DATA

pytest.importorskip("torch")
KATHER = SHARED_DATA / "tiles" / "kather2016"
GLAND = {
    "name": "glandula-own-words",
    "version": 1,
    "extent": [
        {"name": "limited", "upper": 0.4, "phrases": ["a limited portion"]},
        {"name": "diffuse", "upper": 1.0, "phrases": ["diffuse replacement"]},
    ],
    "organs": [
        {
            "name": "glandula",
            "words": ["glandula"],
            "negative_phrases": ["benign glandula, no neoplasm"],
            "classes": [
                {
                    "name": "spindle neoplasm",
                    "tumour": True,
                    "phrases": ["fusiform neoplasm"],
                    "prompts": ["fibrous stroma"],
                },
                {
                    "name": "clear-cell neoplasm",
                    "tumour": True,
                    "phrases": ["clear-cell neoplasm"],
                    "prompts": ["adipose tissue"],
                },
                {"name": "acini", "tumour": False, "phrases": ["native acini"], "prompts": ["benign colonic mucosa"]},
            ],
        }
    ],
}
# (tumour tile folder or None, share of tumour cells, report in the ontology's words)
CASES = [
    ("02_STROMA", 0.75, "Glandula, core: Fusiform neoplasm, diffuse replacement. Background: native acini."),
    ("07_ADIPOSE", 0.75, "Glandula, core: Clear-cell neoplasm, diffuse replacement. Background: native acini."),
    ("02_STROMA", 0.25, "Glandula, core: Fusiform neoplasm, a limited portion. Background: native acini."),
    ("07_ADIPOSE", 0.25, "Glandula, core: Clear-cell neoplasm, a limited portion. Background: native acini."),
    (None, 0.0, "Glandula, core: Benign glandula, no neoplasm. Background: native acini."),
]


def _slide(path, tumour_folder, share, seed):
    """A 6 x 6 mosaic of 150-px Kather tiles (0.495 µm/px): the first ``share`` of cells tumour, the rest mucosa."""
    from PIL import Image

    from napari_pathalign.io.write import write_pyramid_tiff

    rng = np.random.default_rng(seed)
    pick = lambda folder: sorted((KATHER / folder).iterdir())  # noqa: E731
    mucosa, tumour = pick("06_MUCOSA"), pick(tumour_folder) if tumour_folder else []
    cells = rng.permutation(36)
    rgb = np.zeros((900, 900, 3), np.uint8)
    for k, cell in enumerate(cells):
        source = tumour if k < round(share * 36) else mucosa
        tile = np.asarray(Image.open(source[int(rng.integers(len(source)))]).convert("RGB"))[:150, :150]
        r, c = divmod(int(cell), 6)
        rgb[r * 150 : (r + 1) * 150, c * 150 : (c + 1) * 150] = tile
    write_pyramid_tiff(path, rgb, mpp=0.495, tile=256, min_side=256)


@pytest.mark.slow
def test_train_on_a_made_up_organ_then_check_in_its_words(tmp_path, capsys):
    from napari_pathalign.cli import main
    from napari_pathalign.reporting.ontology import load_ontology
    from napari_pathalign.train.causal_lm import CausalLMConfig, new_causal_lm, train_causal_lm

    if not KATHER.is_dir():
        pytest.skip(f"the Kather tiles are not at {KATHER} (clone with shared/ beside the project)")
    onto = tmp_path / "glandula.json"
    onto.write_text(json.dumps(GLAND))
    rows = []
    for i, (folder, share, report) in enumerate(CASES * 2):  # two slides per case, different tiles
        _slide(tmp_path / f"g{i}.tif", folder, share, seed=i)
        rows.append({"slide": f"g{i}.tif", "report": "FINAL DIAGNOSIS:\n" + report})
    (tmp_path / "pairs.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    texts = [f"Final diagnosis: {c[2]}" for c in CASES]
    lm = new_causal_lm(texts, tmp_path / "lm", CausalLMConfig(vocab_size=200, n_layer=1, n_head=2, n_embd=32))
    train_causal_lm(lm, texts, steps=150, batch_size=8, lr=3e-3, position_offset=4)
    qformer = {
        "hidden_size": 64,
        "num_layers": 2,
        "num_heads": 2,
        "intermediate_size": 128,
        "cross_attention_frequency": 1,
    }
    common = {
        "data": "pairs.jsonl",
        "encoder": "embedded",
        "features_dir": "features",
        "device": "cpu",
        "seed": 0,
        "batch_size": 10,
        "lr": 2e-3,
        "grid": {"patch_size": 224, "target_mpp": 0.5, "max_patches": 64},
    }
    stage1 = dict(
        common,
        out="g1",
        epochs=8,
        model={"qformer": {**qformer, "num_queries": 4}, "embed_dim": 64, "losses": ["itc", "itg"]},
    )
    stage2 = dict(common, out="g2", epochs=8, stage=2, init_from="g1/model", model={"lm": "lm"}, calibration_data=".")
    # validation slides of known composition: pathalign train fits the model's measurement errors on them
    import csv

    from napari_pathalign.reporting.claims import Calibration, load_calibration, model_calibration

    with open(tmp_path / "slides.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["slide", "fractions"])
        for i, (folder, share, _) in enumerate(CASES * 2):
            name = {"02_STROMA": "spindle neoplasm", "07_ADIPOSE": "clear-cell neoplasm"}.get(folder)
            fractions = {"acini": round(1 - round(share * 36) / 36, 4)}
            if name:
                fractions[name] = round(round(share * 36) / 36, 4)
            w.writerow([f"g{i}.tif", json.dumps(fractions)])
    (tmp_path / "s1.json").write_text(json.dumps(stage1))
    (tmp_path / "s2.json").write_text(json.dumps(stage2))
    assert main(["train", "--config", str(tmp_path / "s1.json"), "--ontology", str(onto)]) == 0
    assert main(["train", "--config", str(tmp_path / "s2.json")]) == 0  # keeps the stage-1 model's ontology
    stored = tmp_path / "g2" / "model" / "ontology.json"
    trained_cal = json.loads((tmp_path / "g2" / "model" / "claim_calibration.json").read_text())
    assert trained_cal["provenance"]["command"] == "pathalign train (calibration_data)" and "zero-shot" in trained_cal
    assert load_ontology(stored) == load_ontology(onto).__class__.from_dict(GLAND, str(stored))
    capsys.readouterr()

    report = tmp_path / "report.txt"
    report.write_text(
        "GLANDULA, CORE BIOPSY:\nFusiform neoplasm, diffuse replacement.\nNo clear-cell neoplasm is seen.\n"
        "Background: native acini."
    )
    args = [
        "check",
        str(tmp_path / "g0.tif"),
        str(report),
        "--model",
        str(tmp_path / "g2" / "model"),
        "--retrieval-model",
        "",
        "--cache-dir",
        str(tmp_path / "features"),
        "--json",
    ]
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["ontology"] == "'glandula-own-words' v1"  # the model's own ontology, no --ontology needed
    claims = {(c["kind"], c["value"]): c for s in out["sentences"] for c in s["claims"]}
    assert set(claims) == {
        ("diagnosis", "spindle neoplasm"),
        ("extent", "diffuse"),
        ("negative", "clear-cell neoplasm"),
        ("tissue", "acini"),
    }
    assert all(0.0 <= c["probability"] <= 1.0 and c["basis"] for c in claims.values())
    # measured with the ontology's prompts: the shipped measurement head does not fit this model, and says so
    assert "zero-shot map" in claims[("extent", "diffuse")]["basis"]
    assert out["sentences"][0]["support"] is None  # the specimen line claims nothing

    model = tmp_path / "g2" / "model"
    common = ["--retrieval-model", "", "--cache-dir", str(tmp_path / "features")]
    assert main(["calibrate", str(model), str(tmp_path), *common]) == 2  # train's own calibration is kept unasked
    assert main(["calibrate", str(model), str(tmp_path), *common, "--overwrite"]) == 0
    assert "zero-shot tumour: true logit" in capsys.readouterr().out
    own = load_calibration(str(model / "claim_calibration.json"))["zero-shot"]
    assert isinstance(own["tumour"], Calibration) and own["tumour"] != load_calibration()["zero-shot"]["tumour"]

    class Held:  # what model_calibration reads of an analysis: its generation model's folder
        models = {"generation": type("M", (), {"source_path": model})()}

    assert model_calibration(Held())["zero-shot"]["tumour"] == own["tumour"]
    assert main(["calibrate", str(model), str(tmp_path), *common]) == 2  # never overwritten unasked
    assert "--overwrite" in capsys.readouterr().err
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "slides.csv").write_text("slide,fractions\ng0.tif,not json\ng1.tif,{}\ng2.tif,{}\n")
    assert main(["calibrate", str(model), str(tmp_path / "bad"), "--out", str(tmp_path / "x.json"), *common]) == 2
    assert "fractions is not a JSON object" in capsys.readouterr().err
