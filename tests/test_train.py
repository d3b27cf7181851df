"""Training end to end on tiny configs: overfit retrieval, checkpoints, resume, stage 2, the CLI."""

import json
import shutil

import numpy as np
import pytest
import torch

from napari_pathalign.cli import main
from napari_pathalign.io.features import SlideFeatures, write_features
from napari_pathalign.models.checkpoint import CheckpointError
from napari_pathalign.models.pathalign import PathAlign, PathAlignConfig
from napari_pathalign.train.causal_lm import CausalLMConfig, new_causal_lm, train_causal_lm
from napari_pathalign.train.config import TrainConfig
from napari_pathalign.train.dataset import FeatureBank
from napari_pathalign.train.loop import retrieval_top1, train

TINY_QFORMER = {
    "hidden_size": 32,
    "num_layers": 2,
    "num_heads": 2,
    "intermediate_size": 64,
    "cross_attention_frequency": 1,
    "dropout": 0.0,
}
REPORTS = [
    "Lymph node, excision: metastatic carcinoma.",
    "Lymph node, excision: no tumour seen.",
    "Colon, biopsy: invasive adenocarcinoma.",
    "Colon, biopsy: tubular adenoma.",
    "Stomach, biopsy: chronic gastritis.",
    "Skin, shave: basal cell carcinoma.",
]


def write_slide_features(folder, n_slides, seed=0, encoder="test-tiny"):
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n_slides):
        n = int(rng.integers(20, 60))
        f = SlideFeatures(
            rng.normal(size=(n, 32)).astype(np.float32),
            rng.integers(0, 40000, (n, 2)),
            224,
            448,
            0.5,
            0.25,
            (40000, 40000),
            encoder,
            "none",
        )
        paths.append(write_features(folder / f"slide{i}.h5", f))
    return paths


@pytest.fixture
def dataset(tmp_path):
    """Six slides; two are parts A/B of one report, one names a part its report does not have."""
    paths = write_slide_features(tmp_path / "feats", 7)
    two_part = f"FINAL DIAGNOSIS:\nA. {REPORTS[4]}\nB. {REPORTS[5]}\n"
    rows = [{"slide": f"slide{i}.svs", "report": REPORTS[i], "features": f"feats/{paths[i].name}"} for i in range(4)]
    rows += [{"slide": "slide4.svs", "report": two_part, "part": "A", "features": f"feats/{paths[4].name}"}]
    rows += [{"slide": "slide5.svs", "report": two_part, "part": "B", "features": f"feats/{paths[5].name}"}]
    rows += [{"slide": "slide6.svs", "report": two_part, "part": "C", "features": f"feats/{paths[6].name}"}]
    (tmp_path / "pairs.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    return tmp_path


def write_config(folder, name="train.json", **overrides):
    cfg = {
        "data": "pairs.jsonl",
        "out": "run",
        "encoder": "test-tiny",
        "epochs": 60,
        "batch_size": 6,
        "lr": 3e-3,
        "seed": 0,
        "device": "cpu",
        "model": {"qformer": {**TINY_QFORMER, "num_queries": 1}, "embed_dim": 32, "losses": ["itc"]},
    }
    cfg.update(overrides)
    (folder / name).write_text(json.dumps(cfg))
    return folder / name


def test_overfit_reaches_full_retrieval_and_checkpoint_round_trips(dataset, capsys):
    cfg = TrainConfig.from_json(write_config(dataset))
    logs = []
    result = train(cfg, log=logs.append)
    assert [u.slide for u in result.unmatched] == ["slide6.svs"] and any("part 'C'" in line for line in logs)
    assert result.history[-1]["train_top1"] == 1.0
    assert result.history[-1]["itc"] < 0.5 * result.history[0]["itc"]

    model = PathAlign.load(result.checkpoint, device="cpu")
    bank = FeatureBank(sorted((dataset / "feats").glob("slide[0-5].h5")))
    texts = REPORTS  # slides 4 and 5 were paired with their own part only
    assert retrieval_top1(model, bank, texts, None) == 1.0
    torch.manual_seed(1)
    untrained = PathAlign(model.cfg).eval()  # the same test fails for a model that learned nothing
    assert retrieval_top1(untrained, bank, texts, None) < 1.0
    # the loaded model gives the trained model's embeddings
    assert model.checkpoint_meta["extra"]["epoch"] == 60
    feats = bank.items[0]
    again = PathAlign.load(result.checkpoint, device="cpu").encode_slide(feats)
    assert np.allclose(again.embedding, model.encode_slide(feats).embedding, atol=1e-6)


def test_checkpoints_refuse_damage_and_mismatches(dataset):
    result = train(TrainConfig.from_json(write_config(dataset, epochs=1)), log=lambda s: None)
    ck = result.checkpoint
    model = PathAlign.load(ck, device="cpu")
    other = write_slide_features(dataset / "other", 1, encoder="phikon")[0]
    from napari_pathalign.io.features import read_features

    with pytest.raises(ValueError, match="re-embed the slide with --encoder test-tiny"):
        model.encode_slide(read_features(other))

    bad = dataset / "bad"
    shutil.copytree(ck, bad)
    data = (bad / "model.safetensors").read_bytes()
    (bad / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupted"):
        PathAlign.load(bad, device="cpu")

    shutil.rmtree(bad)
    shutil.copytree(ck, bad)
    meta = json.loads((bad / "config.json").read_text())
    meta["model"]["embed_dim"] = 64
    (bad / "config.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="wrong shape"):
        PathAlign.load(bad, device="cpu")

    meta["model"]["embed_dim"] = 32
    meta["text_tower_hash"] = "0123456789abcdef"
    (bad / "config.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="text tower"):
        PathAlign.load(bad, device="cpu")

    (bad / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        PathAlign.load(bad, device="cpu")
    with pytest.raises(CheckpointError, match="not a PathAlign checkpoint folder"):
        PathAlign.load(dataset / "nowhere", device="cpu")


def test_resume_continues_and_refuses_another_config(dataset):
    train(TrainConfig.from_json(write_config(dataset, epochs=2)), log=lambda s: None)
    result = train(TrainConfig.from_json(write_config(dataset, epochs=3)), resume=True, log=lambda s: None)
    assert [h["epoch"] for h in result.history] == [1, 2, 3]
    with pytest.raises(ValueError, match="another config"):
        train(TrainConfig.from_json(write_config(dataset, epochs=4, lr=1e-2)), resume=True, log=lambda s: None)


def test_stage2_trains_only_the_projection_into_a_frozen_lm(dataset):
    lm = new_causal_lm(
        [f"Final diagnosis: {r}" for r in REPORTS],
        dataset / "lm",
        CausalLMConfig(vocab_size=300, n_layer=1, n_head=2, n_embd=32),
    )
    train_causal_lm(lm, [f"Final diagnosis: {r}" for r in REPORTS], steps=100, batch_size=8, lr=3e-3, position_offset=4)
    g_model = {
        "qformer": {**TINY_QFORMER, "num_queries": 4},
        "embed_dim": 32,
        "text_trainable_layers": 1,
        "losses": ["itc", "itm", "itg"],
    }
    stage1 = train(
        TrainConfig.from_json(write_config(dataset, "g1.json", out="g1", epochs=2, model=g_model)), log=lambda s: None
    )
    assert {"itc", "itm", "itg", "train_top1"} <= set(stage1.history[-1])
    lm_before = {
        k: v.clone()
        for k, v in PathAlign.load(stage1.checkpoint, device="cpu", lm=None).state_dict().items()
        if k.startswith("qformer.")
    }
    cfg2 = write_config(dataset, "g2.json", out="g2", stage=2, init_from="g1/model", epochs=3, model={"lm": "lm"})
    stage2 = train(TrainConfig.from_json(cfg2), log=lambda s: None)
    assert stage2.history[-1]["lm"] < stage2.history[0]["lm"]
    model = PathAlign.load(stage2.checkpoint, device="cpu")
    after = model.state_dict()
    assert all(torch.equal(lm_before[k], after[k]) for k in lm_before)  # the Q-Former stayed as stage 1 left it
    stage1_text = PathAlign.load(stage1.checkpoint, device="cpu").state_dict()
    tuned = [k for k in after if k.startswith("text.model.encoder.layer.5.")]
    assert tuned and all(
        torch.equal(stage1_text[k], after[k]) for k in tuned
    )  # the tuned text layer travels into stage 2
    feats = FeatureBank([dataset / "feats" / "slide0.h5"]).items[0]
    draft = model.generate(model.encode_slide(feats), "Final diagnosis:")
    assert isinstance(draft, str) and len(draft) > 0
    with pytest.raises(CheckpointError, match="differs from the one this checkpoint was trained with"):
        other = new_causal_lm(
            ["something else entirely"], dataset / "lm2", CausalLMConfig(vocab_size=300, n_layer=1, n_head=2, n_embd=32)
        )
        PathAlign.load(stage2.checkpoint, device="cpu", lm=other)


def test_stage2_with_train_qformer_tunes_the_qformer(dataset):
    new_causal_lm(
        [f"Final diagnosis: {r}" for r in REPORTS],
        dataset / "lm",
        CausalLMConfig(vocab_size=300, n_layer=1, n_head=2, n_embd=32),
    )
    g_model = {"qformer": {**TINY_QFORMER, "num_queries": 4}, "embed_dim": 32, "losses": ["itc", "itg"]}
    stage1 = train(
        TrainConfig.from_json(write_config(dataset, "g1.json", out="g1", epochs=1, model=g_model)), log=lambda s: None
    )
    before = PathAlign.load(stage1.checkpoint, device="cpu", lm=None).state_dict()
    cfg2 = write_config(
        dataset, "g2.json", out="g2", stage=2, init_from="g1/model", epochs=2, model={"lm": "lm"}, train_qformer=True
    )
    model = PathAlign.load(train(TrainConfig.from_json(cfg2), log=lambda s: None).checkpoint, device="cpu")
    after = model.state_dict()
    moved = [k for k in before if k.startswith("qformer.") and not torch.equal(before[k], after[k])]
    assert any(".crossattention." in k for k in moved) and any("query_tokens" in k for k in moved)


def test_a_drafting_branch_trains_alone_and_the_readings_stay_as_they_were(dataset):
    new_causal_lm(
        [f"Final diagnosis: {r}" for r in REPORTS],
        dataset / "lm",
        CausalLMConfig(vocab_size=300, n_layer=1, n_head=2, n_embd=32),
    )
    g_model = {"qformer": {**TINY_QFORMER, "num_queries": 4}, "embed_dim": 32, "losses": ["itc"]}
    train(
        TrainConfig.from_json(write_config(dataset, "g1.json", out="g1", epochs=1, model=g_model)), log=lambda s: None
    )
    g2 = write_config(dataset, "g2.json", out="g2", stage=2, init_from="g1/model", epochs=1, model={"lm": "lm"})
    first = PathAlign.load(train(TrainConfig.from_json(g2), log=lambda s: None).checkpoint, device="cpu").eval()
    branch = {"lm": "lm", "draft_qformer": True}
    stage1_branch = {**g_model, "lm": "lm", "draft_qformer": True}
    with pytest.raises(ValueError, match="stage-2 setting"):  # a stage-1 branch would leave lm_proj untrained
        train(TrainConfig.from_json(write_config(dataset, "s1.json", out="s1", model=stage1_branch)))
    with pytest.raises(ValueError, match="stage-1 model"):  # its readings would have no trained projection
        train(
            TrainConfig.from_json(write_config(dataset, "b.json", out="b", stage=2, init_from="g1/model", model=branch))
        )
    cfg = write_config(dataset, "g3.json", out="g3", stage=2, init_from="g2/model", epochs=2, model=branch)
    model = PathAlign.load(train(TrainConfig.from_json(cfg), log=lambda s: None).checkpoint, device="cpu").eval()
    before, after = first.state_dict(), model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # nothing shared moved, lm_proj included
    moved = [k for k in after if k.startswith("draft_qformer.") and not torch.equal(after[k], before[k[6:]])]
    assert any(".crossattention." in k for k in moved)  # the branch trained

    rng = np.random.default_rng(1)
    feats, xy = rng.normal(size=(30, 32)).astype(np.float32), rng.integers(0, 9000, (30, 2))
    slide, old = model.encode_slide(feats, xy, 0.5), first.encode_slide(feats, xy, 0.5)
    np.testing.assert_allclose(slide.embedding, old.embedding, atol=1e-6)  # retrieval, maps: as stage 2 left them
    with torch.no_grad():
        torch.testing.assert_close(model.soft_prompt(slide, drafting=False), first.soft_prompt(old))  # the readings
        drafted = model.draft_proj(torch.from_numpy(slide.draft_queries)[None])
        torch.testing.assert_close(model.soft_prompt(slide), drafted)  # drafts read the branch
    assert isinstance(model.generate(slide), str)
    with pytest.raises(ValueError, match="draft_qformer"):
        PathAlignConfig.from_dict({"draft_qformer": True})


def test_cli_train_embeds_real_slides_then_trains(tmp_path, capsys):
    from tests.synthetic import write_pyramid

    rows = []
    for i in range(3):
        write_pyramid(tmp_path / f"s{i}.tif", shape=(1024, 1536 + 256 * i), levels=2)  # distinct content
        rows.append({"slide": f"s{i}.tif", "report": REPORTS[i]})
    (tmp_path / "pairs.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    cfg = write_config(
        tmp_path,
        epochs=2,
        batch_size=3,
        features_dir="features",
        grid={"patch_size": 64, "target_mpp": 1.0, "max_patches": 64},
    )
    assert main(["train", "--config", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert "checkpoint:" in out and "train_top1" in out
    assert len(list((tmp_path / "features").glob("*.h5"))) == 3  # embedded once, into the cache
    assert PathAlign.load(tmp_path / "run" / "model", device="cpu").cfg.patch_encoder == "test-tiny"


def test_cli_train_reports_bad_config(tmp_path, capsys):
    (tmp_path / "bad.json").write_text(json.dumps({"data": "x.jsonl", "out": "o", "epochs": 0}))
    assert main(["train", "--config", str(tmp_path / "bad.json")]) == 2
    assert "epochs must be >= 1" in capsys.readouterr().err
    (tmp_path / "bad.json").write_text(json.dumps({"data": "x.jsonl", "out": "o", "lr_max": 1}))
    assert main(["train", "--config", str(tmp_path / "bad.json")]) == 2
    assert "unknown keys ['lr_max']" in capsys.readouterr().err
    (tmp_path / "ok.json").write_text(json.dumps({"data": "missing.jsonl", "out": "o"}))
    assert main(["train", "--config", str(tmp_path / "ok.json")]) == 2
    assert "missing.jsonl does not exist" in capsys.readouterr().err


def test_config_defaults_are_a_valid_model():
    assert PathAlignConfig.from_dict({}).qformer.num_queries == 32


@pytest.mark.parametrize("name", ["train_config_r.json", "train_config_g.json", "train_config_g_stage2.json"])
def test_example_configs_are_valid(name):
    from pathlib import Path

    examples = Path(__file__).resolve().parents[1] / "examples"
    cfg = TrainConfig.from_json(examples / name)
    if cfg.stage == 1:
        PathAlignConfig.from_dict({**cfg.model, "qformer": {"feature_dim": 384, **cfg.model["qformer"]}})
    else:
        assert Path(cfg.model["lm"]).is_dir()  # the shipped frozen LM


def test_grouped_batches_hold_one_group_each_and_cover_every_row_once():
    import numpy as np

    from napari_pathalign.train.loop import epoch_batches

    groups = ["lymph node"] * 10 + ["colon"] * 7 + ["lung"] * 5
    batches = epoch_batches(np.random.default_rng(1), len(groups), 4, groups)
    assert sorted(np.concatenate(batches).tolist()) == list(range(len(groups)))
    assert all(len({groups[i] for i in b}) == 1 for b in batches), "a batch mixes groups"
    assert len(batches) == 3 + 2 + 2
    plain = epoch_batches(np.random.default_rng(1), len(groups), 4)
    assert sorted(np.concatenate(plain).tolist()) == list(range(len(groups))) and len(plain) == 6
