"""Closed questions answered by choice, not by continuation: every alternative is scored by the model.

Once a question is understood (``reporting/questions.py``), the model is asked it in the words it was
trained with, and each possible answer is scored instead of generated:

- **presence** of a tumour class (or any tumour): two readings of the slide by the generation model,
  (1) the LM's probability of the class among every diagnosis the ontology can state, right after
  "Final diagnosis:" (``ClaimChecker.calls``), and (2) its probability of "Yes." against "No." after
  its own training questions for the class. Their logits are combined by a logistic regression fitted
  on validation slides (``resources/answer_calibration.json``, ``scripts/fit_answers.py``) so that "yes"
  is not favoured; without a fit for the model, their mean at 0.5, and the basis says so.
  A background tissue is measured (the class map) against the calibrated 10 % at which reports name it.
- **subtype**: tumour present (as above), then the organ's tumour classes (or those the question
  offers) by the mean of three distributions: the LM's calls, its answer to the subtype question and
  the measured class shares.
- **extent**: the measured tumour share (measurement head or zero-shot, calibrated error) gives each
  extent bucket's probability, times the probability that tumour is present; 'none' takes the rest.
- **background**: each tissue class of the organ, measured, named where it likely covers >= 10 %.
- **where**: the class's per-patch map, its best patches and their centre; with the presence answer.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from napari_pathalign.core.resources import RESOURCES
from napari_pathalign.reporting.claims import NEGATIVE, Claim, checker_of, choice_distribution, logit
from napari_pathalign.reporting.questions import ANY_TUMOUR, Intent

CALIBRATION_FILE = RESOURCES / "answer_calibration.json"
WRITER_FILE = RESOURCES / "demo_writer.json"  # the embedded model's training questions and answers
DIAGNOSIS_PROMPT = "Final diagnosis:"
WHERE_PATCHES = 6  # best patches shown for a 'where' answer


@dataclass
class ClosedAnswer:
    """A closed question's answer, chosen among its alternatives."""

    intent: Intent
    text: str  # the answer as a full sentence
    choice: str  # 'yes' / 'no', a class name, an extent bucket, or the tissues named
    probability: float  # the model's probability of that choice, in [0, 1]
    alternatives: dict = field(default_factory=dict)  # every alternative -> probability
    basis: str = ""  # how it was reached, one line
    per_patch: np.ndarray | None = field(default=None, repr=False)  # (N,) the class map behind it, if any
    measured_of: str = ""  # what per_patch measures, in words


def _soft(analysis):
    soft = checker_of(analysis).soft_prompt()
    if soft is None:
        raise ValueError("this model has no language model (PathAlign-R); pick a generation model to ask questions")
    return soft


@lru_cache(maxsize=1)
def _writer() -> dict:
    """``resources/demo_writer.json``: the embedded model's training questions and answers, read once."""
    return json.loads(WRITER_FILE.read_text(encoding="utf-8"))


def trained_questions() -> dict:
    """{kind: wordings} the embedded model's VQA training asked (``resources/demo_writer.json``)."""
    return _writer()["questions"]


def answer_calibration(model, encoder) -> dict | None:
    """The answer calibration fitted for ``model`` over ``encoder``: the model folder's own
    ``answer_calibration.json``, else the shipped one, where its weights hash matches; else None."""
    from napari_pathalign.engine.library_build import model_identity

    folder = getattr(model, "source_path", None)
    own = None if folder is None else Path(folder) / "answer_calibration.json"
    source = own if own is not None and own.is_file() else CALIBRATION_FILE
    doc = json.loads(source.read_text(encoding="utf-8")) if source.is_file() else {}
    return doc if doc.get("model_hash") == model_identity(model, encoder)["model_hash"] else None


def load_answer_calibration(analysis) -> dict | None:
    """``answer_calibration`` of the analysis's generation model, read once per analysis."""
    key = "answer_calibration"
    if key not in analysis.cache:
        analysis.cache[key] = answer_calibration(analysis.models["generation"], analysis.encoder)
    return analysis.cache[key]


def use_answer_calibration(analysis, doc: dict) -> None:
    """Answer on ``analysis`` with ``doc`` instead of the file's calibration (a fit in progress,
    ``scripts/fit_answers.py``), forgetting the answers read with the old one."""
    analysis.cache["answer_calibration"] = doc
    analysis.cache.pop("answers", None)


# ---------------------------------------------------------------------- the readings
def presence_readings(analysis, target: str) -> tuple[float, float]:
    """(LM call probability, LM 'yes' probability) that ``target`` (a tumour class or ANY_TUMOUR) is present."""
    checker = checker_of(analysis)
    soft = _soft(analysis)
    lm = analysis.models["generation"].lm
    calls = checker.calls(soft, DIAGNOSIS_PROMPT, checker.model_ontology)
    asked = trained_questions()
    if target == ANY_TUMOUR:
        p_calls = 1.0 - calls.get(NEGATIVE, 0.0)
        wordings = asked["tumour"]
    else:
        name, _ = checker.model_call(target)
        p_calls = calls.get(name, 0.0)
        wordings = [q.format(**{"class": name}) for q in asked["class"]]
    yes = [choice_distribution(lm, soft, q, [("Yes.", "yes"), ("No.", "no")])["yes"] for q in wordings]
    return float(p_calls), float(np.mean(yes))


def presence_probability(analysis, target: str) -> tuple[float, str]:
    """P(target present) and how it was reached (cached per analysis)."""
    key = ("presence", target)
    cache = analysis.cache.setdefault("answers", {})
    if key in cache:
        return cache[key]
    p_calls, p_yes = presence_readings(analysis, target)
    fit = load_answer_calibration(analysis)
    if fit is not None and "presence" in fit:
        w = fit["presence"]
        z = w["intercept"] + w["coef"][0] * logit(p_calls) + w["coef"][1] * logit(p_yes)
        p = 1 / (1 + math.exp(-z))
        how = (
            f"the model's diagnosis call {p_calls:.0%} and its yes/no answer {p_yes:.0%}, combined and calibrated "
            f"on {fit.get('n_slides', '?')} validation slides"
        )
    else:
        p = (p_calls + p_yes) / 2
        how = (
            f"mean of the model's diagnosis call {p_calls:.0%} and its yes/no answer {p_yes:.0%} "
            "(uncalibrated: no answer calibration for this model)"
        )
    cache[key] = (float(p), how)
    return cache[key]


def _organ(analysis, intent: Intent, question: str) -> str:
    if intent.organ:
        return intent.organ
    checker = checker_of(analysis)
    asked = (intent.target,) if intent.target not in (None, ANY_TUMOUR) else intent.choices
    named = [o.name for o in checker.ontology.organs if any(x.name in asked for x in o.classes)]
    if len(named) == 1:
        return named[0]
    if not named:
        return checker.organ(question)
    sets = {n: [p for c in checker.ontology.organ(n).classes for p in c.prompts] for n in named}
    return analysis.zero_shot(sets, "retrieval").best  # a class of several organs: the slide says which


def _class_map(analysis, organ: str, target: str) -> tuple[np.ndarray, str]:
    """(N,) each patch's probability of ``target`` in ``organ`` (any tumour: the tumour classes' sum)."""
    checker = checker_of(analysis)
    per = checker.per_patch(organ)
    o = checker.ontology.organ(organ)
    if target == ANY_TUMOUR or target not in per:
        return np.sum([per[c.name] for c in o.tumour_classes], axis=0).astype(np.float32), "tumour"
    return per[target], target


def _measured(analysis, organ: str, target: str):
    """(per_patch, what it measures, raw share, its Calibration, method) of ``target`` in ``organ``."""
    checker = checker_of(analysis)
    per, of = _class_map(analysis, organ, target)
    method = checker.method_for(organ)
    return per, of, float(per.mean()), checker.tumour_error(method, organ), method


# ---------------------------------------------------------------------- the answers
def answer_closed(analysis, intent: Intent, question: str) -> ClosedAnswer:
    """The answer to a closed question (kind presence, subtype, extent, background or where)."""
    fn = {
        "presence": _presence,
        "subtype": _subtype,
        "extent": _extent,
        "background": _background,
        "where": _where,
    }.get(intent.kind)
    if fn is None:
        raise ValueError(f"{intent.kind!r} is not a closed question (presence, subtype, extent, background, where)")
    return fn(analysis, intent, question)


def _is_tissue(analysis, target: str) -> bool:
    onto = checker_of(analysis).ontology
    return target != ANY_TUMOUR and not any(c.name == target and c.tumour for o in onto.organs for c in o.classes)


def _presence(analysis, intent: Intent, question: str) -> ClosedAnswer:
    target = intent.target or ANY_TUMOUR
    if _is_tissue(analysis, target):
        organ = next(o.name for o in checker_of(analysis).ontology.organs if any(c.name == target for c in o.classes))
        c = Claim("tissue", target, target, 0, 0)
        checker_of(analysis).check_tissue(c, organ)
        p, how, per, of = c.probability, c.basis, c.per_patch, c.measured_of
        share = f", about {c.measured:.0%} of the tissue" if c.measured else ""
    else:
        p, how = presence_probability(analysis, target)
        organ = _organ(analysis, intent, question)
        per, of, raw, cal, _ = _measured(analysis, organ, target)
        share = f", about {cal.estimate(raw):.0%} of the tissue" if p >= 0.5 else ""
    present = p >= 0.5
    words = "tumour" if target == ANY_TUMOUR else target
    if target == ANY_TUMOUR and present:
        words = _likeliest_tumour(analysis, organ)
    if intent.negated:  # "Is X absent?": yes means absent
        text = f"Yes — no {words} is seen." if not present else f"No — {words} is present{share}."
        choice = "yes" if not present else "no"
        alternatives = {"yes": 1 - p, "no": p}
    else:
        text = f"Yes — {words}{share}." if present else f"No — no {words} is seen."
        choice = "yes" if present else "no"
        alternatives = {"yes": p, "no": 1 - p}
    return ClosedAnswer(intent, text, choice, alternatives[choice], alternatives, how, per, of)


def _likeliest_tumour(analysis, organ: str) -> str:
    """The organ's tumour class the model's diagnosis call favours (the name a 'yes' gives)."""
    checker = checker_of(analysis)
    calls = checker.calls(_soft(analysis), DIAGNOSIS_PROMPT, checker.model_ontology)
    names = [c.name for c in checker.ontology.organ(organ).tumour_classes] or ["tumour"]
    return max(names, key=lambda c: calls.get(checker.model_call(c)[0], 0.0))


SUBTYPE_SOURCES = ("calls", "answer", "map", "zero_shot")  # the readings a subtype answer can combine
DEFAULT_SUBTYPE_WEIGHTS = {"calls": 1 / 3, "answer": 1 / 3, "map": 1 / 3, "zero_shot": 0.0}


def subtype_readings(analysis, intent: Intent, question: str) -> tuple[str, list[str], dict]:
    """(organ, classes, {source: (C,) distribution over the classes}): the model's diagnosis call, its answer to
    its subtype question, the measured class shares and the retrieval model's zero-shot over the class prompts."""
    checker = checker_of(analysis)
    organ = _organ(analysis, intent, question)
    o = checker.ontology.organ(organ)
    classes = list(intent.choices) or [c.name for c in o.tumour_classes]
    soft = _soft(analysis)
    calls = checker.calls(soft, DIAGNOSIS_PROMPT, checker.model_ontology)
    said = choice_distribution(
        analysis.models["generation"].lm,
        soft,
        trained_questions()["subtype"][0],
        [(c[:1].upper() + c[1:] + ".", c) for c in classes],
    )
    per = checker.per_patch(organ)
    prompts = {c.name: list(c.prompts) for oo in checker.ontology.organs for c in oo.classes}
    zero = analysis.zero_shot({c: prompts[c] for c in classes}, "retrieval").probabilities
    raw = {
        "calls": [calls.get(checker.model_call(c)[0], 0.0) for c in classes],
        "answer": [said[c] for c in classes],
        "map": [float(per[c].mean()) if c in per else 0.0 for c in classes],
        "zero_shot": [zero[c] for c in classes],
    }
    out = {}
    for k, v in raw.items():
        v = np.asarray(v, float) + 1e-9
        out[k] = v / v.sum()
    return organ, classes, out


def _subtype(analysis, intent: Intent, question: str) -> ClosedAnswer:
    checker = checker_of(analysis)
    organ, classes, readings = subtype_readings(analysis, intent, question)
    p_tumour, how_tumour = presence_probability(analysis, ANY_TUMOUR)
    fit = (load_answer_calibration(analysis) or {}).get("subtype", {})
    weights = fit.get("weights", DEFAULT_SUBTYPE_WEIGHTS)
    mix = sum(float(weights.get(k, 0.0)) * readings[k] for k in SUBTYPE_SOURCES)
    mix = mix / mix.sum()
    probs = {c: float(p_tumour * m) for c, m in zip(classes, mix)}
    probs["no tumour"] = 1 - p_tumour
    best = max(classes, key=lambda c: probs[c])
    used = ", ".join(f"{k} {float(w):.2f}" for k, w in weights.items() if float(w) > 0)
    basis = f"tumour present: {how_tumour}; the type: the model's readings weighted ({used})" + (
        "" if fit else ", not fitted for this model"
    )
    if p_tumour < 0.5:
        return ClosedAnswer(
            intent,
            f"No tumour is seen, so there is no subtype (tumour {p_tumour:.0%}).",
            "no tumour",
            1 - p_tumour,
            probs,
            basis,
        )
    rest = ", ".join(f"{c} {probs[c] / p_tumour:.0%}" for c in classes if c != best)
    per_best = checker.per_patch(organ).get(best)
    among = f" ({mix[classes.index(best)]:.0%} among the types; {rest})" if rest else " (the organ's only tumour type)"
    return ClosedAnswer(
        intent,
        f"{best[:1].upper() + best[1:]}{among}.",
        best,
        probs[best],
        probs,
        basis,
        per_best,
        best,
    )


def extent_readings(analysis, intent: Intent, question: str) -> dict:
    """The readings an extent answer combines: {'present': P(tumour), 'measured': calibrated share,
    'from_map': {bucket: probability} (measured share, calibrated error, times present), 'from_lm':
    {bucket: probability} (the LM's answer to its own extent question), 'per_patch', 'of', 'how'}."""
    checker = checker_of(analysis)
    target = intent.target or ANY_TUMOUR
    organ = _organ(analysis, intent, question)
    p_present, how = presence_probability(analysis, ANY_TUMOUR if _is_tissue(analysis, target) else target)
    per, of, raw, cal, method = _measured(analysis, organ, target)
    from_map = {b.name: cal.probability(raw, b.lower, b.upper) * p_present for b in checker.ontology.extent}
    from_map["none"] = 1 - p_present
    said = _writer()["answers"]["extent"]  # {bucket or 'none': the trained answer}
    from_lm = None
    if set(said) == set(from_map):
        lm = analysis.models["generation"].lm
        from_lm = choice_distribution(
            lm, _soft(analysis), trained_questions()["extent"][0], [(t, b) for b, t in said.items()]
        )
    return {
        "present": p_present,
        "measured": cal.estimate(raw),
        "from_map": from_map,
        "from_lm": from_lm,
        "per_patch": per,
        "of": of,
        "how": f"{of} measured at about {cal.estimate(raw):.0%} ({method}), calibrated error; present: {how}",
    }


def _extent(analysis, intent: Intent, question: str) -> ClosedAnswer:
    checker = checker_of(analysis)
    target = intent.target or ANY_TUMOUR
    r = extent_readings(analysis, intent, question)
    fit = load_answer_calibration(analysis) or {}
    w = float(fit.get("extent", {}).get("lm_weight", 0.5)) if r["from_lm"] is not None else 0.0
    probs = {b: (1 - w) * p + w * (r["from_lm"] or {}).get(b, 0.0) for b, p in r["from_map"].items()}
    best = max(probs, key=probs.get)
    measured = r["measured"]
    words = "tumour" if target == ANY_TUMOUR else target
    if best == "none":
        text = f"None — no {words} is seen."
    else:
        b = next(x for x in checker.ontology.extent if x.name == best)
        span = f"{best}: {b.lower:.0%}–{b.upper:.0%}"
        text = f"{words[:1].upper() + words[1:]} takes about {measured:.0%} of the tissue ({span})."
    alternatives = dict(probs, _measured=measured)
    basis = r["how"] + (f"; mixed with the model's answer to its extent question (weight {w:.2f})" if w else "")
    return ClosedAnswer(intent, text, best, probs[best], alternatives, basis, r["per_patch"], r["of"])


def _background(analysis, intent: Intent, question: str) -> ClosedAnswer:
    checker = checker_of(analysis)
    organ = _organ(analysis, intent, question)
    o = checker.ontology.organ(organ)
    probs, shares = {}, {}
    for c in o.tissue_classes:
        claim = Claim("tissue", c.name, c.name, 0, 0)
        checker.check_tissue(claim, organ)
        probs[c.name], shares[c.name] = claim.probability, claim.measured or 0.0
    named = [c for c in probs if probs[c] >= 0.5]
    if not named:
        best = max(probs, key=probs.get)
        named = [best]
    text = "Background: " + ", ".join(f"{c} (about {shares[c]:.0%})" for c in named) + "."
    p = float(np.prod([probs[c] for c in named]) * np.prod([1 - probs[c] for c in probs if c not in named]))
    per = checker.per_patch(organ).get(named[0])
    basis = f"each tissue of the {organ} measured ({checker.method_for(organ)}); named from 10 % of the tissue"
    return ClosedAnswer(intent, text, ", ".join(named), p, probs, basis, per, named[0])


def _where(analysis, intent: Intent, question: str) -> ClosedAnswer:
    target = intent.target or ANY_TUMOUR
    present = _presence(analysis, Intent("presence", target, organ=intent.organ), question)
    per = present.per_patch
    f = analysis.features
    top = np.argsort(-per)[:WHERE_PATCHES]
    centre = (f.xy_level0[top] + f.size_level0 / 2).mean(axis=0)
    mpp = getattr(analysis.slide, "mpp", None) or getattr(analysis.slide, "mpp_x", None)
    at = f"x {centre[0]:,.0f}, y {centre[1]:,.0f} px" + (
        f" ({centre[0] * mpp / 1000:.1f}, {centre[1] * mpp / 1000:.1f} mm)" if isinstance(mpp, (int, float)) else ""
    )
    words = "tumour" if target == ANY_TUMOUR else target
    if present.choice == "yes":
        text = (
            f"{words[:1].upper() + words[1:]} is most likely around {at}; the heatmap shows each patch's probability."
        )
    else:
        text = (
            f"No {words} is seen ({present.alternatives['yes']:.0%}); the heatmap shows where it would be most likely "
            f"(around {at})."
        )
    return ClosedAnswer(
        intent, text, present.choice, present.probability, present.alternatives, present.basis, per, present.measured_of
    )


def unknown_to_model(analysis, intent: Intent) -> str | None:
    """Why the generation model cannot answer about the class asked (it was never trained to name it), or None."""
    checker = checker_of(analysis)
    asked = [intent.target] if intent.target not in (None, ANY_TUMOUR) else list(intent.choices)
    for c in asked:
        if not _is_tissue(analysis, c) and not checker.model_call(c)[1]:
            known = sorted({x.name for o in checker.model_ontology.organs for x in o.tumour_classes})
            return f"the model was never trained to recognise {c} (it knows {', '.join(known)})"
    return None


def addresses(intent: Intent, claims: list) -> list:
    """The claims of a generated answer that say something about what was asked (an open question: any)."""
    if intent.target is None:
        return list(claims)
    onto_any = intent.target == ANY_TUMOUR
    return [
        c
        for c in claims
        if c.value == intent.target
        or (onto_any and c.kind in ("diagnosis", "negative", "extent", "answer"))
        or (c.kind == "negative" and c.value == "tumour")
    ]
