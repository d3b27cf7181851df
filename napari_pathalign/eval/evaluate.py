"""``pathalign evaluate``: a PathAlign model on demo slides with known ground truth.

Metrics (all on the slides of one split folder: slides.csv + reports.jsonl + slides/):

- retrieval: image -> text top-1 / top-3 among the part texts of all slides of the set. A retrieved
  text counts when it states the same findings as the slide's own (same tumour call, extent bucket
  and named tissues: the fact parser of ``eval/facts.py``); specimen site, wording and exact
  percentages are not visible on the glass, so two negative lymph nodes are interchangeable.
- zero-shot: tumour vs no tumour AUC from prompt similarities (the ontology's 'diagnosis' set);
  dominant tissue class accuracy (each organ's classes); subtype AUC on slides of an organ with
  several tumour classes that hold one of them (NSCLC: squamous against adenocarcinoma).
- drafts ("Final diagnosis:"): BLEU-4 (nltk, corpus), ROUGE-L F (rouge-score), and clinical-fact
  precision / recall of the draft's facts against the ground truth.
- closed VQA: tumour present? which tissues? tumour extent bucket? and, for an organ with several
  tumour classes, which subtype? and is there <each tumour class>? accuracy of parsed answers.
- on the slides with class maps: heatmap localisation (``eval/localisation.py``), and support
  calibration, evidence faithfulness, follow-up and region questions (``eval/statements.py``), and
  chat asked in the question bank's held-out wordings (``eval/chat_eval.py``; slides whose case the
  answer calibration was fitted on are left out).

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
from napari_pathalign.eval.facts import (
    parse_extent_answer,
    parse_facts,
    parse_subtype_answer,
    parse_tissue_answer,
    parse_yes_no,
    truth_facts,
)
from napari_pathalign.eval.truth import PartTruth, closed_questions, organ_of, subtypes, truth_tissues
from napari_pathalign.reporting.ontology import Ontology, load_ontology


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


def _prompt_embedding(model, prompts: list[str]):
    """The mean of a class's prompt embeddings, renormalised (the zero-shot class vector)."""
    e = model.encode_text(prompts).mean(0)
    return e / np.linalg.norm(e)


def retrieval_metrics(model, embeddings, truths, texts) -> tuple[dict, dict]:
    """Top-1 / top-3 accuracy, and the per-slide hits."""
    sim = model.similarity(embeddings, model.encode_text(texts))  # (S, S): slide i vs text of slide j
    sig = [_signature(t) for t in truths]
    positives = np.array([[a == b for b in sig] for a in sig])
    hits = {"top1": top_k_hits(sim, positives, 1), "top3": top_k_hits(sim, positives, 3)}
    return {f"retrieval_{k}": float(v.mean()) for k, v in hits.items()}, hits


def zero_shot_metrics(model, embeddings, truths, ontology: Ontology | None = None) -> tuple[dict, dict]:
    """Tumour AUC, dominant-tissue accuracy and subtype AUC; the per-slide tumour and subtype scores."""
    onto = ontology or load_ontology()
    sets, _ = onto.class_sets()
    diagnosis = sets.get("diagnosis", {})
    tumour_prompts = [p for name, ps in diagnosis.items() if name != "no tumour" for p in ps]
    pos = model.similarity(embeddings, model.encode_text(tumour_prompts)).mean(1)  # (S,)
    neg = model.similarity(embeddings, model.encode_text(diagnosis.get("no tumour", tumour_prompts))).mean(1)
    per_slide = {"score": pos - neg, "tumour": np.array([t.tumour_fraction > 0 for t in truths])}
    out = {"zero_shot_tumour_auc": auc(per_slide["score"], per_slide["tumour"])}
    organs = [organ_of(t, onto) for t in truths]
    prompts = {}  # organ -> (labels, class vectors), encoded once
    for organ in {o.name: o for o in organs}.values():
        vectors = np.stack([_prompt_embedding(model, list(c.prompts)) for c in organ.classes])
        prompts[organ.name] = ([c.label for c in organ.classes], vectors)
    correct = []
    for emb, t, organ in zip(embeddings, truths, organs):
        labels, vectors = prompts[organ.name]
        best = labels[int(np.argmax(model.similarity(emb, vectors)))]
        correct.append(best == max(t.fractions, key=t.fractions.get))
    out["zero_shot_dominant_accuracy"] = float(np.mean(correct))
    sub = subtype_scores(model, embeddings, truths, onto)
    if sub is not None:
        out["zero_shot_subtype_auc"] = auc(sub["score"], sub["positive"])
        out["subtype_slides"] = int(len(sub["score"]))
        per_slide["subtype"] = sub
    return out, per_slide


def subtype_scores(model, embeddings, truths, ontology: Ontology) -> dict | None:
    """On slides of an organ with two tumour classes that hold exactly one of them: score = similarity to the
    second class's prompts minus the first's (lung: squamous minus adenocarcinoma), and which one it holds."""
    rows = []
    for emb, t in zip(embeddings, truths):
        kinds = subtypes(t, ontology)
        if kinds is None or len(kinds) != 1:
            continue
        organ = organ_of(t, ontology)
        first, second = organ.tumour_classes[:2]
        if kinds[0] not in (first.name, second.name):
            continue
        a, b = _prompt_embedding(model, list(first.prompts)), _prompt_embedding(model, list(second.prompts))
        rows.append(
            (float(model.similarity(emb, b[None])[0] - model.similarity(emb, a[None])[0]), kinds[0] == second.name)
        )
    if len({positive for _, positive in rows}) < 2:
        return None
    return {"score": np.array([r[0] for r in rows]), "positive": np.array([r[1] for r in rows])}


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
    organs = [organ_of(t).name for t in truths]
    stated = [parse_facts(d, organ=o) for d, o in zip(drafts, organs)]
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
    """Accuracy per closed question and over all of them; the answers; per-slide correct fraction.

    Every slide is asked tumour / tissues / extent (``vqa_closed`` averages these three, as before lung);
    a slide of an organ with several tumour classes is also asked the subtype and, per tumour class,
    whether it is there (``vqa_subtype``, ``vqa_class``)."""
    from tqdm import tqdm

    from napari_pathalign.models.decoder import GenerationConfig

    onto = load_ontology()
    asked = closed_questions()
    cfg = GenerationConfig(max_new_tokens=32)
    scores = {"tumour": [], "tissues": [], "extent": []}
    extra = {"subtype": [], "class": []}
    answers = []
    for e, t in tqdm(list(zip(embeddings, truths)), desc="VQA", unit="slide", disable=not progress):
        got = {k: model.generate(e, asked[k][0], cfg) for k in scores}
        scores["tumour"].append(parse_yes_no(got["tumour"]) == ("yes" if t.tumour_fraction > 0 else "no"))
        scores["tissues"].append(parse_tissue_answer(got["tissues"], t) == set(truth_tissues(t)))
        scores["extent"].append(parse_extent_answer(got["extent"]) == (onto.bucket(t.tumour_fraction) or "none"))
        kinds = subtypes(t, onto)
        if kinds is not None:
            organ = organ_of(t, onto)
            got["subtype"] = model.generate(e, asked["subtype"][0], cfg)
            extra["subtype"].append(parse_subtype_answer(got["subtype"], organ.name) == set(kinds))
            for c in organ.tumour_classes:
                said = model.generate(e, asked["class"][0].format(**{"class": c.name}), cfg)
                got[f"class:{c.name}"] = said
                extra["class"].append(parse_yes_no(said) == ("yes" if c.name in kinds else "no"))
        answers.append(got)
    out = {f"vqa_{k}": float(np.mean(v)) for k, v in scores.items()}
    out["vqa_closed"] = float(np.mean([x for v in scores.values() for x in v]))
    out.update({f"vqa_{k}": float(np.mean(v)) for k, v in extra.items() if v})
    return out, answers, np.mean(list(scores.values()), axis=0)


def _mean(x: np.ndarray) -> float:
    return float(np.mean(x))


def prepared_analysis(path: Path, model, retrieval_model, encoder, grid, features_dir: Path):
    """A ``SlideAnalysis`` of the slide at ``path``, prepared (features from the cache in ``features_dir``)."""
    from napari_pathalign.io import open_slide
    from napari_pathalign.reporting.analysis import SlideAnalysis

    analysis = SlideAnalysis(
        open_slide(path),
        encoder=encoder,
        model=model,
        retrieval_model=retrieval_model,
        grid=grid,
        cache_dir=features_dir,
    )
    for _ in analysis.iter_prepare():
        pass
    return analysis


def embed_test_slides(
    model, retrieval_model, encoder, grid, data: Path, rows: list[dict], features_dir: Path
) -> tuple[list[int], list, list]:
    """The slides with class maps: their row indices, a prepared SlideAnalysis and the class map of each
    (the heatmap and the statement metrics share them)."""
    from napari_pathalign.eval.class_maps import class_map_path, read_class_map

    keep = [
        i for i, r in enumerate(rows) if class_map_path(data / r["slide"]).is_file()
    ]  # none: demo data from before class maps; regenerate it with `pathalign demo-data`
    analyses = [
        prepared_analysis(data / rows[i]["slide"], model, retrieval_model, encoder, grid, features_dir) for i in keep
    ]
    return keep, analyses, [read_class_map(data / rows[i]["slide"]) for i in keep]


def evaluate(
    model,
    data: Path,
    retrieval_model=None,
    features_dir: Path | None = None,
    progress: bool = True,
    localise: bool = True,
    out_of_scope: Path | None = None,
    chat: bool = True,
    organs: tuple[str, ...] | None = None,
) -> dict:
    """All metrics of ``model`` (and of ``retrieval_model`` for retrieval/zero-shot when given).

    ``organs``: only the slides of these ontology organs (per-organ figures; retrieval among them only).
    ``chat``: also ask the question bank's held-out wordings on the slides with class maps (eval/chat_eval.py).
    ``out_of_scope``: the shared data folder (``../shared/data``): adds the out-of-scope detection AUC
    (these test slides against the real out-of-scope slides there), the false-flag rate and the support
    of diagnosis claims drafted on out-of-scope slides (``eval/out_of_scope.py``)."""
    from napari_pathalign.core.grid_config import GridConfig
    from napari_pathalign.models.encoders import load_patch_encoder

    data = Path(data)
    rows, truths, texts = read_truth(data)
    if organs:
        keep = [i for i, t in enumerate(truths) if organ_of(t).name in organs]
        if len(keep) < 2:
            raise ValueError(f"{data}: {len(keep)} slides of {list(organs)}; per-organ figures need at least 2")
        rows, truths, texts = [rows[i] for i in keep], [truths[i] for i in keep], [texts[i] for i in keep]
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
            ci["zero_shot_tumour_auc"] = bootstrap_ci(
                lambda score, tumour: auc(score, tumour), {"score": scores["score"], "tumour": scores["tumour"]}
            )
            if "subtype" in scores:
                ci["zero_shot_subtype_auc"] = bootstrap_ci(
                    lambda score, positive: auc(score, positive), scores["subtype"]
                )
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
                localisation_metrics(analyses, maps, [truths[i] for i in keep], progress),
                statement_metrics(analyses, maps, [truths[i] for i in keep], progress),
            ):
                metrics.update(m)
                ci.update(c)
        if analyses and chat:
            from napari_pathalign.eval.chat_eval import chat_metrics, fitted_cases

            fitted = fitted_cases(model, encoder, data)  # the validation cases chat's decisions were fitted on
            held = [j for j, i in enumerate(keep) if rows[i].get("case") not in fitted]
            m, c = chat_metrics(
                [analyses[j] for j in held], [truths[keep[j]] for j in held], [maps[j] for j in held], progress
            )
            metrics.update(m)
            ci.update(c)
    if out_of_scope is not None:
        m, c = out_of_scope_evaluation(
            model,
            retrieval_model,
            encoder,
            grid,
            feats,
            Path(out_of_scope),
            features_dir or data / "features",
            progress,
        )
        metrics.update(m)
        ci.update(c)
    metrics["ci95"] = ci
    if model.lm is not None:
        metrics["examples"] = [
            {"slide": r["slide"], "reference": x, "draft": d, "answers": a}
            for r, x, d, a in list(zip(rows, texts, drafts, answers))[:5]
        ]
    return metrics


def out_of_scope_evaluation(model, retrieval_model, encoder, grid, feats, shared: Path, features_dir: Path, progress):
    """Detection of the real out-of-scope slides under ``shared`` against the test slides ``feats``, and
    the support the model's drafts give diagnosis claims on them (``eval/out_of_scope.py``)."""
    from tqdm import tqdm

    from napari_pathalign.core.generators import run_to_end
    from napari_pathalign.eval.out_of_scope import (
        detection_metrics,
        diagnosis_supports,
        out_of_scope_slides,
        support_metrics,
    )
    from napari_pathalign.models.in_scope import load_embedded_in_scope
    from napari_pathalign.reporting.drafting import iter_draft

    detector = load_embedded_in_scope(encoder)  # ValueError: no in-scope model for this encoder
    inside = [detector.score(f) for f in feats if len(f.features)]
    outside, supports = [], []
    for ood in tqdm(
        out_of_scope_slides(shared, features_dir.parent / "out_of_scope"),
        desc="out of scope",
        unit="slide",
        disable=not progress,
    ):
        try:  # no mpp (the analysis refuses it) or no tissue patch at this scale: nothing to draft on
            analysis = prepared_analysis(ood.path, model, retrieval_model, encoder, grid, features_dir)
        except ValueError:
            continue
        outside.append(analysis.in_scope())
        if model.lm is not None:
            supports += diagnosis_supports(run_to_end(iter_draft(analysis)).sentences)
    metrics, ci = detection_metrics(inside, outside, detector.threshold)
    metrics.update(support_metrics(supports))
    return metrics, {k: v for k, v in ci.items() if v is not None}
