"""Chat measured as a pathologist meets it: questions worded their own way, on held-out slides.

Every wording of the question bank's held-out half (``eval/question_bank.py``: never fitted) is asked
of every held-out demo slide it applies to. A question counts as answered right when it is understood
(intent kind and class) and the chosen answer matches the slide's ground truth:

- presence: of any tumour, of each tumour class of the slide's organ (and of the other organs' tumour
  classes: truth 'no'), of a background tissue of the organ (truth: it covers >= 10 %);
- subtype: on slides of an organ with several tumour classes that hold exactly one;
- extent: the bucket of the tumour share (of the class asked about), 'none' without tumour;
- background: the set of tissues covering >= 10 %;
- where: on tumour slides, the answer's best patch lies on the asked class (its class map).

Also: the share of answers with support > 0.5 that do not answer the question (the question was
misread, or an open answer names nothing about it), and abstention on the unanswerable wordings.
"""

from __future__ import annotations

import numpy as np

from napari_pathalign.eval.bootstrap import bootstrap_ci
from napari_pathalign.eval.question_bank import BankQuestion, bank_questions
from napari_pathalign.eval.truth import PartTruth, background_tissues, by_label, organ_of, subtypes
from napari_pathalign.reporting.ontology import NAMED_FRACTION, load_ontology
from napari_pathalign.reporting.questions import ANY_TUMOUR, understand

CLOSED = ("presence", "subtype", "extent", "background", "where")
OPEN_PER_SLIDE = 3  # open wordings asked per slide (each one generates text: ~1 s)


def _class_fraction(t: PartTruth, organ, target: str) -> float:
    """Share of the tissue of ``target`` on the slide (ANY_TUMOUR: the tumour classes; 0 outside the organ)."""
    if target == ANY_TUMOUR:
        return t.tumour_fraction
    c = next((x for x in organ.classes if x.name == target), None)
    return 0.0 if c is None else float(t.fractions.get(c.label, 0.0))


def expected_answer(bq: BankQuestion, t: PartTruth, intent, ontology) -> object | None:
    """The right choice for this slide, or None when the question does not apply to it."""
    organ = organ_of(t, ontology)
    if bq.kind == "presence":
        tissue = any(c.name == bq.target and not c.tumour for o in ontology.organs for c in o.classes)
        if tissue and not any(c.name == bq.target for c in organ.classes):
            return None  # a background tissue of another organ: not a question for this slide
        present = _class_fraction(t, organ, bq.target) >= (NAMED_FRACTION if tissue else 1e-9)
        return "yes" if present != bq.negated else "no"  # "Is X absent?": yes when it is not there
    if bq.kind == "subtype":
        kinds = subtypes(t, ontology)
        if kinds is None or len(kinds) != 1:
            return None
        return kinds[0]
    if bq.kind == "extent":
        if bq.target != ANY_TUMOUR and not any(c.name == bq.target for c in organ.tumour_classes):
            return None
        return ontology.bucket(_class_fraction(t, organ, bq.target)) or "none"
    if bq.kind == "background":
        names = by_label(organ)
        return {names[lab].name for lab in background_tissues(t, ontology)}
    if bq.kind == "where":
        if not any(c.name == bq.target for c in organ.tumour_classes) and bq.target != ANY_TUMOUR:
            return None
        return "on" if _class_fraction(t, organ, bq.target) > 0 else None
    return None


def fitted_cases(model, encoder, data=None) -> set[str]:
    """The demo cases of the split folder ``data`` that the answer calibration of ``model`` was fitted on
    (none for another model or another folder)."""
    from pathlib import Path

    from napari_pathalign.reporting.answering import answer_calibration

    doc = answer_calibration(model, encoder)
    if doc is None:
        return set()
    if data is not None and doc.get("fitted_data_id") not in (None, folder_id(Path(data))):
        return set()
    return set(doc.get("fitted_cases", []))


def folder_id(folder) -> str:
    """A split folder's identity: the hash of its slides.csv (the same demo split wherever it lies)."""
    import hashlib
    from pathlib import Path

    return hashlib.sha256((Path(folder) / "slides.csv").read_bytes()).hexdigest()[:16]


def chat_metrics(
    analyses: list, truths: list[PartTruth], class_maps=None, progress: bool = True, half: str = "held_out"
) -> tuple[dict, dict]:
    """Accuracy per intent on the bank's held-out wordings (CIs over slides), supported non-answers,
    abstention on the unanswerable wordings (``half``: 'held_out', or 'blind' for the once-only check)."""
    from tqdm import tqdm

    from napari_pathalign.core.generators import run_to_end
    from napari_pathalign.eval.class_maps import patch_class_fractions
    from napari_pathalign.reporting.answering import answer_closed
    from napari_pathalign.reporting.drafting import LOW_SUPPORT, iter_answer

    onto = load_ontology()
    questions = bank_questions(half)
    read = {id(q): understand(q.question, onto, q.history) for q in questions}
    right = {k: [] for k in CLOSED}  # per intent: (slide, correct)
    said_yes, truly_yes = [], []  # presence questions understood right: is 'yes' favoured?
    supported, supported_off = 0, 0
    for s, (a, t) in enumerate(tqdm(list(zip(analyses, truths)), desc="chat", unit="slide", disable=not progress)):
        cache: dict = {}
        organ = organ_of(t, onto)
        for q in questions:
            if q.kind not in CLOSED:
                continue
            want = expected_answer(q, t, read[id(q)], onto)
            if want is None:
                continue
            intent = read[id(q)]
            understood = (
                intent.kind == q.kind
                and (q.target is None or intent.target == q.target)
                and intent.negated == q.negated
            )
            key = (intent.kind, intent.target, intent.choices, intent.negated)
            if intent.kind not in CLOSED:
                right[q.kind].append((s, False))
                continue
            if key not in cache:
                cache[key] = answer_closed(a, intent, q.question)
            got = cache[key]
            if got.probability > LOW_SUPPORT:
                supported += 1
                supported_off += not understood
            if not understood:
                right[q.kind].append((s, False))
                continue
            if q.kind == "background":
                ok = set(got.choice.split(", ")) == want
            elif q.kind == "where":
                f = a.features
                best = int(np.argmax(got.per_patch))
                labels = [c.label for c in organ.tumour_classes if q.target in (ANY_TUMOUR, c.name)]
                cmap = None if class_maps is None else class_maps[s]
                if cmap is None:
                    continue
                cols = [cmap.classes.index(lab) for lab in labels if lab in cmap.classes]
                share = patch_class_fractions(cmap, f.xy_level0[best : best + 1], f.size_level0)[0, cols].sum()
                ok = bool(share > 0)
            else:
                ok = got.choice == want
                if q.kind == "presence":
                    said_yes.append(got.choice == "yes")
                    truly_yes.append(want == "yes")
            right[q.kind].append((s, bool(ok)))
        for q in [q for q in questions if q.kind == "open"][:OPEN_PER_SLIDE]:
            ans = run_to_end(iter_answer(a, q.question))
            for st in ans.sentences:
                if st.support > LOW_SUPPORT:
                    supported += 1
                    supported_off += not ans.answered
    unanswerable = [q for q in questions if q.kind == "unanswerable"]
    abstained = [read[id(q)].kind == "unanswerable" for q in unanswerable]
    metrics: dict = {"chat_slides": len(analyses), "chat_wordings": len({q.wording for q in questions})}
    ci: dict = {}
    for kind, rows in right.items():
        if not rows:
            continue
        slides = np.array([r[0] for r in rows])
        ok = np.array([r[1] for r in rows], float)
        metrics[f"chat_{kind}_accuracy"] = float(ok.mean())
        metrics[f"chat_{kind}_questions"] = len(rows)
        per = np.array([ok[slides == i].mean() for i in np.unique(slides)])
        ci[f"chat_{kind}_accuracy"] = bootstrap_ci(lambda x: float(np.mean(x)), {"x": per})
    metrics["chat_supported_non_answers"] = supported_off / supported if supported else 0.0
    metrics["chat_supported_answers"] = supported
    metrics["chat_abstention"] = float(np.mean(abstained))
    if said_yes:
        metrics["chat_presence_yes_rate"] = float(np.mean(said_yes))
        metrics["chat_presence_true_yes_rate"] = float(np.mean(truly_yes))
    ci["chat_abstention"] = bootstrap_ci(lambda x: float(np.mean(x)), {"x": np.array(abstained, float)})
    return metrics, {k: v for k, v in ci.items() if v is not None}
