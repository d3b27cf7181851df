"""``pathalign evaluate``: a PathAlign model on demo slides with known ground truth.

Metrics (all on the slides of one split folder: slides.csv + reports.jsonl + slides/):

- retrieval: image -> text top-1 / top-3 among the part texts of all slides of the set. A retrieved
  text counts when it states the same findings as the slide's own (same tumour call, extent bucket
  and named tissues: the fact parser of ``eval/facts.py``); specimen site, wording and exact
  percentages are not visible on the glass, so two negative lymph nodes are interchangeable.
- zero-shot: tumour vs no tumour AUC from prompt similarities; dominant tissue class accuracy.
- drafts ("Final diagnosis:"): BLEU-4 (nltk, corpus), ROUGE-L F (rouge-score), and clinical-fact
  precision / recall of the draft's facts against the ground truth.
- closed VQA: tumour present? which tissues? tumour extent bucket? accuracy of parsed answers.
- on the slides with class maps: heatmap localisation (``eval/localisation.py``), and support
  calibration, evidence faithfulness, follow-up and region questions (``eval/statements.py``).

``ci95`` holds percentile-bootstrap intervals (slides resampled, 2,000 times) of the metrics with
targets: on a few dozen slides, one slide moves top-1 by 1/S, and readers should see that.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from napari_pathalign.core.metrics import auc, top_k_hits
from napari_pathalign.eval.bootstrap import bootstrap_ci
from napari_pathalign.eval.facts import parse_extent_answer, parse_facts, parse_tissue_answer, parse_yes_no, truth_facts
from napari_pathalign.reporting.vocabulary import QUESTIONS, TISSUE, TUMOUR_CLASSES, PartTruth, bucket, truth_tissues

TUMOUR_PROMPTS = ["metastatic carcinoma", "invasive adenocarcinoma", "tumour is present"]
NO_TUMOUR_PROMPTS = ["negative for metastatic carcinoma", "no tumour identified", "no evidence of malignancy"]


def read_truth(folder: Path) -> tuple[list[dict], list[PartTruth], list[str]]:
    """Rows of slides.csv, their PartTruth, and each slide's own report part (from reports.jsonl)."""
    from napari_pathalign.train.dataset import load_pairs

    with open(folder / "slides.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    truths = [PartTruth(r["source"], json.loads(r["fractions"]), float(r["tumour_fraction"])) for r in rows]
    pairs, unmatched = load_pairs(folder / "reports.jsonl")
    if unmatched:
        raise ValueError(
            f"{folder}: {len(unmatched)} slides have no report part: {unmatched[0].slide}: {unmatched[0].reason}"
        )
    text = {str(p.slide.relative_to(folder)): p.text for p in pairs}
    return rows, truths, [text[r["slide"]] for r in rows]


def slide_features(folder: Path, rows: list[dict], encoder, features_dir: Path, grid, progress: bool = True) -> list:
    """Each slide's features from the cache (embedding the ones not there yet)."""
    from tqdm import tqdm

    from napari_pathalign.engine.features import embed_slide
    from napari_pathalign.io import open_slide

    out = []
    for r in tqdm(rows, desc="features", unit="slide", disable=not progress):
        with open_slide(folder / r["slide"]) as slide:
            out.append(embed_slide(slide, encoder, grid, cache_dir=features_dir))
    return out


def _signature(t: PartTruth) -> frozenset:
    return frozenset(truth_facts(t)) | {("source", t.source)}


def retrieval_metrics(model, embeddings, truths, texts) -> tuple[dict, dict]:
    """Top-1 / top-3 accuracy, and the per-slide hits."""
    sim = model.similarity(embeddings, model.encode_text(texts))  # (S, S): slide i vs text of slide j
    sig = [_signature(t) for t in truths]
    positives = np.array([[a == b for b in sig] for a in sig])
    hits = {"top1": top_k_hits(sim, positives, 1), "top3": top_k_hits(sim, positives, 3)}
    return {f"retrieval_{k}": float(v.mean()) for k, v in hits.items()}, hits


def zero_shot_metrics(model, embeddings, truths) -> tuple[dict, dict]:
    """Tumour AUC and dominant-tissue accuracy, and the per-slide tumour scores."""
    pos = model.similarity(embeddings, model.encode_text(TUMOUR_PROMPTS)).mean(1)  # (S,)
    neg = model.similarity(embeddings, model.encode_text(NO_TUMOUR_PROMPTS)).mean(1)
    per_slide = {"score": pos - neg, "tumour": np.array([t.tumour_fraction > 0 for t in truths])}
    out = {"zero_shot_tumour_auc": auc(per_slide["score"], per_slide["tumour"])}
    prompts = {}  # source -> (classes, prompt embeddings), encoded once
    for source in {t.source for t in truths}:
        classes = [TUMOUR_CLASSES[source]] + [c for c in TISSUE if (c == "normal") == (source == "pcam")]
        texts = [
            TUMOUR_PROMPTS[0 if source == "pcam" else 1] if c == TUMOUR_CLASSES[source] else TISSUE[c][0]
            for c in classes
        ]
        prompts[source] = (classes, model.encode_text(texts))
    correct = []
    for emb, t in zip(embeddings, truths):
        classes, text_emb = prompts[t.source]
        correct.append(
            classes[int(np.argmax(model.similarity(emb, text_emb)))] == max(t.fractions, key=t.fractions.get)
        )
    out["zero_shot_dominant_accuracy"] = float(np.mean(correct))
    return out, per_slide


def generation_metrics(model, embeddings, truths, texts, progress: bool = True) -> tuple[dict, list[str], dict]:
    """BLEU-4, ROUGE-L, fact precision / recall; the drafts; per-slide fact counts."""
    from nltk.translate.bleu_score import SmoothingFunction, corpus_bleu
    from rouge_score import rouge_scorer
    from tqdm import tqdm

    from napari_pathalign.models.decoder import GenerationConfig

    cfg = GenerationConfig(max_new_tokens=96)
    drafts = [
        model.generate(e, "Final diagnosis:", cfg)
        for e in tqdm(embeddings, desc="drafts", unit="slide", disable=not progress)
    ]
    tok = lambda s: s.lower().replace(".", " .").replace(",", " ,").replace(":", " :").split()  # noqa: E731
    bleu = corpus_bleu(
        [[tok(r)] for r in texts], [tok(d) for d in drafts], smoothing_function=SmoothingFunction().method1
    )
    scorer = rouge_scorer.RougeScorer(["rougeL"])
    rouge = float(np.mean([scorer.score(r, d)["rougeL"].fmeasure for r, d in zip(texts, drafts)]))
    stated = [parse_facts(d) for d in drafts]
    true = [truth_facts(t) for t in truths]
    counts = {
        "hit": np.array([len(s & t) for s, t in zip(stated, true)]),
        "stated": np.array(list(map(len, stated))),
        "true": np.array(list(map(len, true))),
    }
    return (
        {
            "bleu4": float(bleu),
            "rougeL": rouge,
            "fact_precision": _fact_precision(**counts),
            "fact_recall": _fact_recall(**counts),
        },
        drafts,
        counts,
    )


def _fact_precision(hit, stated, true) -> float:
    return float(hit.sum() / max(1, stated.sum()))


def _fact_recall(hit, stated, true) -> float:
    return float(hit.sum() / max(1, true.sum()))


def vqa_metrics(model, embeddings, truths, progress: bool = True) -> tuple[dict, list[dict], np.ndarray]:
    """Accuracy per closed question and over all three; the answers; per-slide correct fraction."""
    from tqdm import tqdm

    from napari_pathalign.models.decoder import GenerationConfig

    cfg = GenerationConfig(max_new_tokens=32)
    scores = {"tumour": [], "tissues": [], "extent": []}
    answers = []
    for e, t in tqdm(list(zip(embeddings, truths)), desc="VQA", unit="slide", disable=not progress):
        got = {k: model.generate(e, QUESTIONS[k][0], cfg) for k in scores}
        answers.append(got)
        scores["tumour"].append(parse_yes_no(got["tumour"]) == ("yes" if t.tumour_fraction > 0 else "no"))
        scores["tissues"].append(parse_tissue_answer(got["tissues"], t.source) == set(truth_tissues(t)))
        scores["extent"].append(parse_extent_answer(got["extent"]) == (bucket(t.tumour_fraction) or "none"))
    out = {f"vqa_{k}": float(np.mean(v)) for k, v in scores.items()}
    out["vqa_closed"] = float(np.mean([x for v in scores.values() for x in v]))
    return out, answers, np.mean(list(scores.values()), axis=0)


def _mean(x: np.ndarray) -> float:
    return float(np.mean(x))


def embed_test_slides(
    model, retrieval_model, encoder, grid, data: Path, rows: list[dict], features_dir: Path
) -> tuple[list[int], list, list]:
    """The slides with class maps: their row indices, a prepared SlideAnalysis and the class map of each
    (the heatmap and the statement metrics share them)."""
    from napari_pathalign.eval.class_maps import class_map_path, read_class_map
    from napari_pathalign.io import open_slide
    from napari_pathalign.reporting.analysis import SlideAnalysis

    keep = [
        i for i, r in enumerate(rows) if class_map_path(data / r["slide"]).is_file()
    ]  # none: demo data from before class maps; regenerate it with `pathalign demo-data`
    analyses = []
    for i in keep:
        a = SlideAnalysis(
            open_slide(data / rows[i]["slide"]),
            encoder=encoder,
            model=model,
            retrieval_model=retrieval_model,
            grid=grid,
            cache_dir=features_dir,
        )
        for _ in a.iter_prepare():
            pass
        analyses.append(a)
    return keep, analyses, [read_class_map(data / rows[i]["slide"]) for i in keep]


def evaluate(
    model,
    data: Path,
    retrieval_model=None,
    features_dir: Path | None = None,
    progress: bool = True,
    localise: bool = True,
) -> dict:
    """All metrics of ``model`` (and of ``retrieval_model`` for retrieval/zero-shot when given)."""
    from napari_pathalign.core.grid_config import GridConfig
    from napari_pathalign.models.encoders import load_patch_encoder

    data = Path(data)
    rows, truths, texts = read_truth(data)
    trained = getattr(model, "checkpoint_meta", {}).get("extra", {}).get("train_config", {})
    grid = GridConfig(**trained.get("grid", {}))
    weights = trained.get("encoder_weights")  # the file it was trained with, when still there
    encoder = load_patch_encoder(
        model.cfg.patch_encoder, weights if weights and Path(weights).exists() else None, "auto"
    )
    if model.cfg.patch_encoder_hash and encoder.weights_hash != model.cfg.patch_encoder_hash:
        raise ValueError(
            (
                f"the {encoder.name!r} weights found ({encoder.weights_hash}) are not the ones this model was "
                f"trained on ({model.cfg.patch_encoder_hash})"
            )
        )
    feats = slide_features(data, rows, encoder, features_dir or data / "features", grid, progress)
    metrics: dict = {"slides": len(rows), "tumour_slides": int(sum(t.tumour_fraction > 0 for t in truths))}
    ci: dict = {}
    for name, m in (("", retrieval_model or model),) + ((("g_", model),) if retrieval_model is not None else ()):
        embeddings = [m.encode_slide(f) for f in feats]  # the last pass is the generation model's
        retrieval, hits = retrieval_metrics(m, embeddings, truths, texts)
        zero_shot, scores = zero_shot_metrics(m, embeddings, truths)
        metrics.update({name + k: v for k, v in {**retrieval, **zero_shot}.items()})
        if not name:
            ci.update({f"retrieval_{k}": bootstrap_ci(_mean, {"x": v}) for k, v in hits.items()})
            ci["zero_shot_tumour_auc"] = bootstrap_ci(lambda score, tumour: auc(score, tumour), scores)
    if model.lm is not None:
        gen, drafts, counts = generation_metrics(model, embeddings, truths, texts, progress)
        vqa, answers, correct = vqa_metrics(model, embeddings, truths, progress)
        metrics.update(gen)
        metrics.update(vqa)
        ci["fact_precision"] = bootstrap_ci(_fact_precision, counts)
        ci["fact_recall"] = bootstrap_ci(_fact_recall, counts)
        ci["vqa_closed"] = bootstrap_ci(_mean, {"x": correct})
    if model.lm is not None and localise:
        from napari_pathalign.eval.localisation import localisation_metrics
        from napari_pathalign.eval.statements import statement_metrics

        keep, analyses, maps = embed_test_slides(
            model, retrieval_model, encoder, grid, data, rows, features_dir or data / "features"
        )
        if analyses:
            for m, c in (
                localisation_metrics(analyses, maps, [rows[i]["source"] for i in keep], progress),
                statement_metrics(analyses, maps, [truths[i] for i in keep], progress),
            ):
                metrics.update(m)
                ci.update(c)
    metrics["ci95"] = ci
    if model.lm is not None:
        metrics["examples"] = [
            {"slide": r["slide"], "reference": x, "draft": d, "answers": a}
            for r, x, d, a in list(zip(rows, texts, drafts, answers))[:5]
        ]
    return metrics
