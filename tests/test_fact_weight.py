"""Stage 2's fact-weighted LM loss: which tokens state a fact, and that the weighting is exact."""

import torch

from napari_pathalign.models.decoder import token_weights
from napari_pathalign.reporting.ontology import load_ontology
from napari_pathalign.train.fact_spans import fact_spans

REPORT = "Lymph node, sentinel, biopsy: Metastatic carcinoma. Extent: a small focus, approximately 4% of the tissue."


def test_fact_spans_are_the_claims_and_an_answers_yes_or_no():
    onto = load_ontology()
    said = [REPORT[s:e] for s, e in fact_spans(REPORT, onto)]
    assert said == ["Metastatic carcinoma", "a small focus", "4%"]
    assert [t[s:e] for t in ["Yes.", "No tumour is seen."] for s, e in fact_spans(t, onto)][:1] == ["Yes"]
    assert fact_spans("Lymph node, sentinel, biopsy:", onto) == []


def test_token_weights_mark_the_tokens_that_overlap_a_span():
    assert token_weights([(0, 3), (3, 8), (8, 9)], [(4, 6)], 3.0) == [1.0, 3.0, 1.0]
    assert token_weights([(0, 3)], [], 3.0) == [1.0]


def test_weighted_loss_is_the_plain_loss_when_no_token_is_a_fact_and_moves_when_one_is():
    from napari_pathalign.models.pathalign import PathAlign

    lm = PathAlign.load("embedded").lm
    torch.manual_seed(0)
    soft = torch.randn(2, 32, lm.model.config.n_embd) * 0.02
    prompts, targets = ["Final diagnosis:", ""], [REPORT, "Yes."]
    plain = lm.loss(soft, prompts, targets)
    same = lm.loss(soft, prompts, targets, emphasis=[[], []], weight=5.0)
    assert torch.allclose(plain, same, atol=1e-5)  # the weighted path computes the same mean when all weigh 1
    spans = [fact_spans(t, load_ontology()) for t in targets]
    heavier = lm.loss(soft, prompts, targets, emphasis=spans, weight=5.0)
    assert not torch.allclose(plain, heavier, atol=1e-4)


def test_fact_weight_below_one_is_refused(tmp_path):
    import pytest

    from napari_pathalign.train.config import TrainConfig

    with pytest.raises(ValueError, match="fact_weight"):
        TrainConfig(data="x.jsonl", out=str(tmp_path), fact_weight=0.5).validate()
