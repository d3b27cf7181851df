"""PathAlign model: tiny configs on random tensors for every path (shapes, masks, attention, losses, generation)."""

import numpy as np
import pytest
import torch

from napari_pathalign.models.losses import itg_attention_mask, sample_hard_negatives
from napari_pathalign.models.pathalign import PathAlign, PathAlignConfig, collate_slides
from napari_pathalign.models.qformer import QFormerConfig, positional_encoding
from napari_pathalign.train.causal_lm import CausalLMConfig, new_causal_lm, train_causal_lm

REPORTS = [
    "Lymph node with metastatic carcinoma.",
    "Lymph node negative for malignancy.",
    "Colon adenocarcinoma, moderately differentiated.",
    "Benign colonic mucosa with lymphoid aggregates.",
]


def tiny_qformer(num_queries=4, feature_dim=16) -> QFormerConfig:
    return QFormerConfig(
        feature_dim=feature_dim,
        hidden_size=32,
        num_layers=2,
        num_heads=2,
        intermediate_size=64,
        num_queries=num_queries,
        cross_attention_frequency=1,
        dropout=0.0,
    )


@pytest.fixture(scope="module")
def lm_dir(tmp_path_factory):
    """A tiny GPT-2 that has learned the report sentences (as the embedded LM learns its corpus)."""
    path = new_causal_lm(
        REPORTS * 3 + ["Final diagnosis:"],
        tmp_path_factory.mktemp("lm") / "lm",
        CausalLMConfig(vocab_size=300, n_layer=1, n_head=2, n_embd=32),
    )
    fit = train_causal_lm(
        path, [f"Final diagnosis: {r}" for r in REPORTS], steps=400, batch_size=8, lr=3e-3, position_offset=4
    )
    assert fit["last_loss"] < 0.5 * fit["first_loss"]
    return path


@pytest.fixture(scope="module")
def model(lm_dir):
    torch.manual_seed(0)
    cfg = PathAlignConfig(
        qformer=tiny_qformer(),
        embed_dim=16,
        lm=str(lm_dir),
        losses=["itc", "itm", "itg", "lm"],
        patch_encoder="test-tiny",
    )
    return PathAlign(cfg).eval()


def random_slides(counts=(5, 9, 7), dim=16, seed=0):
    rng = np.random.default_rng(seed)
    return [(rng.normal(size=(n, dim)).astype(np.float32), rng.integers(0, 20000, (n, 2)), 0.5) for n in counts]


def test_shapes_and_padding_masks(model):
    slides = random_slides()
    batch = collate_slides(slides)
    assert batch.features.shape == (3, 9, 16) and batch.valid.sum(1).tolist() == [5, 9, 7]
    out = model.qformer(batch.features, batch.xy_um, batch.valid, output_attentions=True)
    assert out.queries.shape == (3, 4, 32)
    assert out.cross_attentions.shape == (2, 3, 2, 4, 9)  # (layers, B, heads, Q, N)
    assert out.cross_attentions[:, 0, :, :, 5:].abs().max() == 0  # padding gets no attention
    assert torch.allclose(out.cross_attentions.sum(-1), torch.ones(2, 3, 2, 4), atol=1e-5)
    # a slide batched with bigger ones gives the same queries as alone: the mask works
    alone = model.qformer(*vars(collate_slides(slides[:1])).values()).queries
    assert torch.allclose(alone[0], out.queries[0], atol=1e-5)


def test_sdpa_and_eager_agree(model):
    batch = collate_slides(random_slides())
    fast = model.qformer(batch.features, batch.xy_um, batch.valid).queries
    eager = model.qformer(batch.features, batch.xy_um, batch.valid, output_attentions=True).queries
    assert torch.allclose(fast, eager, atol=1e-5)
    assert model.qformer.qformer.config._attn_implementation == "sdpa"  # switched back after the maps


def test_positions_are_physical_and_translation_free():
    cfg = tiny_qformer()
    xy40 = torch.tensor([[[0.0, 0.0], [1000.0, 400.0], [3000.0, 2000.0]]])  # level-0 px at 0.25 µm/px
    valid = torch.ones(1, 3, dtype=torch.bool)
    at40 = positional_encoding(xy40 * 0.25, valid, cfg)
    at20 = positional_encoding(xy40 / 2 * 0.5, valid, cfg)  # same tissue scanned at 20x
    shifted = positional_encoding((xy40 + 5000) * 0.25, valid, cfg)  # tissue elsewhere on the glass
    assert torch.allclose(at40, at20) and torch.allclose(at40, shifted, atol=1e-4)
    assert not torch.allclose(at40[0, 0], at40[0, 1])


def test_public_api(model):
    (f, xy, mpp), (f2, xy2, _) = random_slides()[:2]
    emb = model.encode_slide(f, xy, mpp)
    assert emb.embedding.shape == (4, 16) and emb.queries.shape == (4, 32) and emb.n_patches == 5
    assert np.allclose(np.linalg.norm(emb.embedding, axis=1), 1, atol=1e-5)
    text = model.encode_text(REPORTS)
    assert text.shape == (4, 16) and np.allclose(np.linalg.norm(text, axis=1), 1, atol=1e-5)
    sim = model.similarity(emb, text)
    assert sim.shape == (4,) and np.allclose(sim, (emb.embedding @ text.T).max(0), atol=1e-5)
    assert model.similarity([emb, model.encode_slide(f2, xy2, mpp)], text).shape == (2, 4)
    p = model.itm_score(f, REPORTS[:2], xy, mpp)
    assert p.shape == (2,) and ((p > 0) & (p < 1)).all()
    assert model.attention(f, xy, mpp).shape == (2, 2, 4, 5)


def test_bad_inputs_are_explained(model):
    f, xy, _ = random_slides()[0]
    with pytest.raises(ValueError, match="microns-per-pixel"):
        model.encode_slide(f, xy, None)
    with pytest.raises(ValueError, match="dimension 8"):
        model.encode_slide(f[:, :8], xy, 0.5)
    with pytest.raises(ValueError, match="list of strings"):
        model.encode_text("one string")
    with pytest.raises(ValueError, match="no patch features"):
        model.encode_slide(f[:0], xy[:0], 0.5)


def test_itg_mask_is_blip2():
    text_mask = torch.tensor([[1, 1, 1, 0]])
    m = itg_attention_mask(2, text_mask, torch.float32)[0, 0] == 0  # (6, 6) True = visible
    assert m[:2, :2].all() and not m[:2, 2:].any()  # queries see queries, never text
    assert m[2:, :2].all()  # text sees every query
    assert m[3, 2] and m[3, 3] and not m[3, 4]  # causal text
    assert not m[2:5, 5].any()  # padding is never seen


def test_hard_negatives_avoid_positives():
    sim = torch.tensor([[5.0, 4.0, 0.0], [1.0, 5.0, 4.9], [0.0, 0.0, 5.0]])
    same = torch.eye(3, dtype=torch.bool)
    same[0, 1] = True  # slide 0 shares text 1 (identical report)
    rows, picks = sample_hard_negatives(sim, same, torch.Generator().manual_seed(0))
    assert rows.tolist() == [0, 1, 2]
    assert picks[0] == 2 and not same[rows, picks].any()


def test_each_loss_decreases_on_a_tiny_overfit_set(lm_dir):
    torch.manual_seed(0)
    cfg = PathAlignConfig(qformer=tiny_qformer(), embed_dim=16, lm=str(lm_dir), losses=["itc", "itm", "itg", "lm"])
    m = PathAlign(cfg).train()
    batch = collate_slides(random_slides((6, 8, 5, 7)))
    opt = torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=3e-3)
    g = torch.Generator().manual_seed(0)
    history = []
    for _ in range(100):
        losses = m.losses(batch, REPORTS, ["Final diagnosis:"] * 4, g)
        opt.zero_grad()
        sum(losses.values()).backward()
        opt.step()
        history.append({k: float(v) for k, v in losses.items()})
    assert set(history[0]) == {"itc", "itm", "itg", "lm"}
    for k in history[0]:
        first = np.mean([h[k] for h in history[:3]])
        last = np.mean([h[k] for h in history[-10:]])  # ITM is noisy: its negatives get harder as ITC learns
        # the LM is frozen and already knows the sentences: only which one is left to learn
        assert last < (0.85 if k == "lm" else 0.5) * first, (k, first, last)


def test_generation_stops_and_obeys_max_length(model):
    from napari_pathalign.models.decoder import GenerationConfig

    emb = model.encode_slide(*random_slides()[0])
    short = model.generate(emb, "Final diagnosis:", GenerationConfig(max_new_tokens=3))
    ids = model.lm.tokenizer(short, add_special_tokens=False)["input_ids"]
    assert 0 < len(ids) <= 4  # decoding can merge/split bytes at the end
    # make EOS the most likely token everywhere: generation must stop at once, greedy and beam
    lm = model.lm.model
    saved = {k: v.clone() for k, v in lm.state_dict().items()}
    try:
        with torch.no_grad():
            lm.transformer.ln_f.weight.zero_()
            lm.transformer.ln_f.bias.fill_(1.0)  # every final hidden state = ones
            lm.lm_head.weight.zero_()
            lm.lm_head.weight[model.lm.tokenizer.eos_token_id] = 1.0
        assert model.generate(emb, "Final diagnosis:", GenerationConfig(max_new_tokens=20)) == ""
        assert model.generate(emb, "Final diagnosis:", GenerationConfig(max_new_tokens=20, num_beams=2)) == ""
    finally:
        lm.load_state_dict(saved)
    sampled = model.generate(emb, "Final diagnosis:", GenerationConfig(max_new_tokens=5, top_p=0.9, seed=1))
    assert isinstance(sampled, str)


def test_retrieval_model_cannot_generate():
    cfg = PathAlignConfig(qformer=tiny_qformer(num_queries=1), embed_dim=16, losses=["itc"])
    m = PathAlign(cfg).eval()
    emb = m.encode_slide(*random_slides()[0])
    assert emb.embedding.shape == (1, 16)
    with pytest.raises(ValueError, match="no language model"):
        m.generate(emb)


def test_config_is_checked():
    with pytest.raises(ValueError, match="unknown PathAlign config fields"):
        PathAlignConfig.from_dict({"qformer": {}, "queries": 3})
    with pytest.raises(ValueError, match="losses"):
        PathAlignConfig.from_dict({"losses": ["itc", "mlm"]})
    with pytest.raises(ValueError, match="language model folder"):
        PathAlignConfig.from_dict({"losses": ["lm"]})
