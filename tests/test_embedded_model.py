"""The shipped embedded model: it loads offline from resources/ and gives its documented metrics."""

import json
from pathlib import Path

import numpy as np
import pytest

from napari_pathalign.core.resources import RESOURCES
from napari_pathalign.models.encoders import load_patch_encoder
from napari_pathalign.models.pathalign import PathAlign

TILES = Path(__file__).resolve().parents[2] / "shared" / "data" / "tiles"
DOCUMENTED = RESOURCES / "embedded_small_set.json"  # written by scripts/train_embedded_model.py --ship


def test_shipped_weights_load_offline():
    enc = load_patch_encoder("embedded", device="cpu")
    x = np.random.default_rng(0).integers(0, 256, (2, 224, 224, 3), dtype=np.uint8)
    f = enc.encode(x)
    assert f.shape == (2, 404) and np.isfinite(f).all()  # 384 CNN + 20 stain features
    g, r = PathAlign.load("embedded", device="cpu"), PathAlign.load("embedded-r", device="cpu")
    assert g.cfg.qformer.num_queries == 32 and g.lm is not None and r.cfg.qformer.num_queries == 1
    assert g.cfg.patch_encoder == r.cfg.patch_encoder == "embedded" and g.cfg.patch_encoder_hash == enc.weights_hash
    size = sum(
        p.stat().st_size for p in RESOURCES.rglob("*") if p.is_file() and ("embedded" in str(p.relative_to(RESOURCES)))
    )
    assert size <= 40e6, f"embedded weights take {size / 1e6:.1f} MB; the budget is 40 MB"


@pytest.mark.slow
def test_documented_metrics_on_a_small_fixed_set(tmp_path):
    """The same command as the model card, on 8 fixed slides from held-out tiles, within tolerance."""
    from napari_pathalign.demo.data import make_demo_data
    from napari_pathalign.eval.evaluate import evaluate

    doc = json.loads(DOCUMENTED.read_text())
    make_demo_data(
        TILES,
        tmp_path,
        slides=0,
        seed=doc["seed"],
        splits=("test",),
        test_slides=doc["slides"],
        progress=False,
        kinds=tuple(doc["kinds"]) if "kinds" in doc else None,
    )
    metrics = evaluate(
        PathAlign.load("embedded", device="cpu"),
        tmp_path / "test",
        PathAlign.load("embedded-r", device="cpu"),
        progress=False,
        chat=False,
    )
    for key, expected in doc["metrics"].items():
        assert metrics[key] == pytest.approx(expected, abs=0.1), (key, metrics[key], expected)
    for key, interval in metrics["ci95"].items():  # bootstrap intervals around the point values
        assert interval is None or interval[0] <= metrics[key] <= interval[1], (key, interval, metrics[key])
    assert metrics["ci95"]["retrieval_top1"] is not None and metrics["ci95"]["fact_recall"] is not None
    # and they are not the numbers of a model that learned nothing
    assert metrics["retrieval_top3"] >= 0.8 and metrics["vqa_tumour"] >= 0.75
