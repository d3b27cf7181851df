"""with_draft_branch: drafts read one stage-2 model's Q-Former, everything else reads the other's."""

import numpy as np
import pytest
import torch

from napari_pathalign.models.draft_branch import with_draft_branch
from napari_pathalign.models.pathalign import PathAlign, PathAlignConfig
from napari_pathalign.models.qformer import QFormerConfig
from napari_pathalign.train.causal_lm import CausalLMConfig, new_causal_lm

TINY = dict(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64, num_queries=4, feature_dim=32, dropout=0.0)


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    lm = tmp_path_factory.mktemp("lm")
    new_causal_lm(
        ["Final diagnosis: metastatic carcinoma."] * 4,
        lm,
        CausalLMConfig(vocab_size=200, n_layer=1, n_head=2, n_embd=32),
    )
    models = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        cfg = PathAlignConfig(qformer=QFormerConfig(**TINY), embed_dim=32, lm=str(lm), losses=["lm"])
        models.append(PathAlign(cfg).eval())
    return models


def test_everything_reads_the_aligned_model_but_the_drafts(pair, tmp_path):
    aligned, generator = pair
    merged = with_draft_branch(aligned, generator)
    rng = np.random.default_rng(0)
    feats, xy = rng.normal(size=(25, 32)).astype(np.float32), rng.integers(0, 9000, (25, 2))
    slide = merged.encode_slide(feats, xy, 0.5)
    np.testing.assert_array_equal(slide.embedding, aligned.encode_slide(feats, xy, 0.5).embedding)
    with torch.no_grad():
        theirs = generator.soft_prompt(generator.encode_slide(feats, xy, 0.5))
        torch.testing.assert_close(merged.soft_prompt(slide), theirs)  # drafts: the drafter's
        ours = aligned.soft_prompt(aligned.encode_slide(feats, xy, 0.5))
        torch.testing.assert_close(merged.soft_prompt(slide, drafting=False), ours)  # readings: the aligned model's
        assert not torch.allclose(theirs, ours)
    loaded = PathAlign.load(merged.save(tmp_path / "g"), device="cpu").eval()  # the branch is saved and loaded
    assert loaded.cfg.draft_qformer
    np.testing.assert_allclose(loaded.encode_slide(feats, xy, 0.5).draft_queries, slide.draft_queries, atol=1e-6)
    assert merged.generate(slide) == loaded.generate(slide)


def test_models_that_do_not_fit_together_are_refused(pair):
    aligned, generator = pair
    retrieval = PathAlign(PathAlignConfig(qformer=QFormerConfig(**TINY), embed_dim=32, losses=["itc"]))
    with pytest.raises(ValueError, match="no language model"):
        with_draft_branch(aligned, retrieval)
    wider = PathAlign(
        PathAlignConfig(qformer=QFormerConfig(**{**TINY, "num_queries": 8}), embed_dim=32, lm=aligned.cfg.lm)
    )
    with pytest.raises(ValueError, match="Q-Former or patch encoder"):
        with_draft_branch(aligned, wider)
