"""The claims of a report sentence, each checked against the slide: what ``support`` is made of.

A sentence is as trustworthy as its weakest claim. Claims are found with the report ontology
(``reporting/ontology.py``: the analysis's, else the generation model's, else the embedded one):

- **diagnosis** (a tumour class named) and **negative** (no tumour, or a class named under
  negation): the generation model's LM probability of the sentence with this call against the same
  sentence with every other call of the ontology in its place (each tumour class's phrases, the
  negative phrases), given the slide and the text before it. The model's own reading of the slide,
  asked as a choice instead of a continuation.
- **extent** (an extent bucket, or a percentage): *measured*. The tumour fraction is the mean
  per-patch probability of the organ's tumour classes: from the model's measurement head
  (``reporting/measure_head.py``) when it ships one that knows the organ's classes, else from the
  organ's zero-shot prompts (each patch read with its neighbourhood). The claim's probability is the
  share of a logit-normal measurement error (fitted per method on calibration slides:
  ``resources/claim_calibration.json``, ``scripts/fit_claim_checker.py``) that falls in the
  claimed bucket, times the probability that tumour is present at all.
- **tissue** (a background class named): measured the same way, within the organ the text names
  (a class outside the organ counts as absent); the probability that the tissue covers at least
  10 % of the slide, the share at which reports name one. Named under negation, the opposite.
- **answer** ("Yes." / "No." after a question): the LM's probability of this answer against the other.

Sentences without a claim (a specimen line) keep the slide-sentence similarity rank, and say so.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from napari_pathalign.reporting.ontology import NAMED_FRACTION, Ontology, load_ontology

NEGATIVE = "no tumour"  # the value of the negative calls among the LM's alternatives


@dataclass
class Claim:
    """One checkable statement inside a sentence."""

    kind: str  # 'diagnosis', 'negative', 'extent', 'tissue' or 'answer'
    value: str  # the ontology's class or bucket name; 'tumour' for a negative phrase; 'yes'/'no'
    phrase: str  # the words of the sentence that state it
    start: int  # character span of the phrase in the sentence
    end: int
    probability: float = float("nan")  # that the slide bears the claim out, in [0, 1]
    measured: float | None = None  # calibrated measured fraction of the tissue (extent: tumour; tissue: that tissue)
    basis: str = ""  # how it was checked, one line for the reader
    per_patch: np.ndarray | None = field(
        default=None, repr=False
    )  # (N,) what was measured: each patch's probability of the class
    measured_of: str = ""  # the class measured, in words ('tumour', 'adipose', ...)
    organs: tuple[str, ...] = ()  # the ontology organs whose phrase this is


@dataclass
class Calibration:
    """Measurement error of a measured fraction: true logit ~ Normal(slope * measured logit + intercept, sigma)."""

    slope: float  # of the measured logit
    intercept: float
    sigma: float  # residual standard deviation, logit units

    def estimate(self, measured: float) -> float:
        """The calibrated fraction (the median of the true fraction given the measured one)."""
        return 1 / (1 + math.exp(-(self.slope * logit(measured) + self.intercept)))

    def probability(self, measured: float, lo: float, hi: float) -> float:
        """P(lo <= true fraction < hi) given the measured fraction."""
        mu = self.slope * logit(measured) + self.intercept
        a = -math.inf if lo <= 0 else (logit(lo) - mu) / self.sigma
        b = math.inf if hi >= 1 else (logit(hi) - mu) / self.sigma
        return _phi(b) - _phi(a)


def _phi(z: float) -> float:
    """The standard normal CDF (math.erf: no scipy.stats import, ~0.3 s, in a drafting thread)."""
    return 0.5 * (1.0 + math.erf(z / math.sqrt(2.0))) if math.isfinite(z) else (1.0 if z > 0 else 0.0)


def logit(x: float, eps: float = 0.005) -> float:
    x = min(max(float(x), eps), 1 - eps)
    return math.log(x / (1 - x))


def calibration_file() -> Path:
    from napari_pathalign.core.resources import RESOURCES

    return RESOURCES / "claim_calibration.json"


def load_calibration(path: str | None = None) -> dict[str, dict[str, Calibration]]:
    """As ``_load_calibration``, read again when the file changes (a model recalibrated in this session)."""
    source = Path(path or calibration_file())
    return _load_calibration(str(source), source.stat().st_mtime_ns)


@lru_cache(maxsize=8)
def _load_calibration(path: str, mtime_ns: int) -> dict[str, dict[str, Calibration]]:
    """{measurement method ('head', 'zero-shot'): {'tumour': Calibration, 'tissue': Calibration,
    'tissue:<class>': Calibration, 'tumour:<organ>': Calibration, ...}} from the shipped file (or ``path``)."""
    source = Path(path or calibration_file())
    data = json.loads(source.read_text())

    def line(d: dict, where: str) -> Calibration:
        try:
            cal = Calibration(**{f: float(d[f]) for f in ("slope", "intercept", "sigma")})
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"{source}: {where} needs numbers slope, intercept and sigma; got {d!r:.80}") from None
        if not (
            math.isfinite(cal.slope) and math.isfinite(cal.intercept) and cal.sigma > 0 and math.isfinite(cal.sigma)
        ):
            raise ValueError(f"{source}: {where} needs finite numbers and sigma > 0; got {d!r:.80}")
        return cal

    out = {}
    for m in ("head", "zero-shot"):
        if m in data:
            missing = [k for k in ("tumour", "tissue") if k not in data[m]]
            if missing:
                raise ValueError(f"{source}: the '{m}' calibration lacks {missing}; run pathalign calibrate again")
            out[m] = {k: line(data[m][k], f"{m}.{k}") for k in ("tumour", "tissue")}
            for kind, table in (("tissue", "tissue_by_class"), ("tumour", "tumour_by_organ")):  # own lines
                out[m].update({f"{kind}:{k}": line(d, f"{m}.{table}.{k}") for k, d in data[m].get(table, {}).items()})
    return out


def model_calibration(analysis) -> dict[str, dict[str, Calibration]]:
    """The measurement errors of the analysis's generation model: its own ``claim_calibration.json`` (written
    by ``pathalign calibrate``) per method where it has one, else the shipped file's."""
    shipped = load_calibration()
    folder = getattr(analysis.models.get("generation"), "source_path", None)
    own = Path(folder) / "claim_calibration.json" if folder is not None else None
    if own is None or not own.is_file():
        return shipped
    return {**shipped, **load_calibration(str(own))}


def checker_of(analysis) -> ClaimChecker:
    """The analysis's claim checker: its measurements are computed once per analysis and shared by drafts,
    answers and checks (``analysis.cache['claim_checker']``)."""
    if analysis.cache.get("claim_checker") is None:
        analysis.cache["claim_checker"] = ClaimChecker(analysis)
    return analysis.cache["claim_checker"]


def find_claims(sentence: str, question: str | None = None, ontology: Ontology | None = None) -> list[Claim]:
    """The claims ``sentence`` states (unchecked), in reading order; a percentage that repeats an extent
    phrase of the same sentence is no second claim."""
    onto = ontology or load_ontology()
    found = [Claim(c.kind, c.value, c.phrase, c.start, c.end, organs=c.organs) for c in onto.find_claims(sentence)]
    phrased = [c for c in found if c.kind == "extent" and not re.fullmatch(r"[\d.]+\s*%", c.phrase)]
    if phrased:
        found = [c for c in found if c.kind != "extent" or c in phrased]
    if question and not found and (m := re.match(r"\s*(yes|no)\b", sentence.lower())):
        found.append(Claim("answer", m.group(1), sentence[m.start(1) : m.end(1)], m.start(1), m.end(1)))
    return found


class ClaimChecker:
    """Checks claims against one prepared analysis (its measurements are computed once)."""

    def __init__(self, analysis, calibration: dict | None = None, head=..., ontology: Ontology | None = None):
        """``calibration``: {method: {kind: Calibration}} (default: the shipped file); ``head``: a
        ``MeasureHead`` or None for zero-shot only (default: the shipped head when it fits the models);
        ``ontology``: default the analysis's own (``analysis.ontology``), else the embedded one."""
        from napari_pathalign.reporting.measure_head import load_head

        self.analysis = analysis
        self.ontology = ontology or getattr(analysis, "ontology", None) or load_ontology()
        # the words the model was trained with: the calls of a report worded otherwise are asked in these
        self.model_ontology = getattr(analysis, "model_ontology", None) or load_ontology()
        self.calibration = calibration if calibration is not None else model_calibration(analysis)
        self.head = load_head() if head is ... else head
        self._measured: dict[tuple[str, str], dict[str, np.ndarray]] = {}  # (organ, method) -> class -> (N,)
        self._calls: dict[tuple, dict[str, float]] = {}  # (prompt, ontology) -> {call: probability} after it
        self._method: str | None = None
        self._soft = None  # soft_prompt(), once

    def soft_prompt(self):
        """The slide as the LM reads it: the generation model's queries projected into the LM, (1, Q, dim) float;
        None for a model without an LM. Computed once per checker (once per analysis)."""
        if self._soft is None:
            import torch

            gen = self.analysis.models["generation"]
            if gen.lm is None:
                return None
            with torch.no_grad():
                self._soft = gen.soft_prompt(self.analysis.embedding("generation"), drafting=False).float()
        return self._soft

    # -- measurements -------------------------------------------------------------------------
    def method(self) -> str:
        """'head' when the measurement head fits this analysis's generation model and encoder, else 'zero-shot'."""
        if self.head is None:
            return "zero-shot"
        if self._method is None:
            from napari_pathalign.engine.library_build import model_identity

            ident = model_identity(self.analysis.models["generation"], self.analysis.encoder)
            self._method = "head" if self.head.applies_to(ident["model_hash"], ident["encoder_hash"]) else "zero-shot"
        return self._method

    def head_for(self, organ: str):
        """(head organ name, OrganHead) of the measurement head that knows every class of ``organ`` (by the
        classes' labels), or None: then the organ is measured zero-shot."""
        if self.head is None:
            return None
        labels = {c.label for c in self.ontology.organ(organ).classes}
        for name, h in self.head.organs.items():
            if set(h.classes) == labels:
                return name, h
        return None

    def tumour_error(self, method: str, organ: str) -> Calibration:
        """The measurement error of the tumour share in ``organ``: the organ's own line when fitted (a
        measurement can be biased on one organ's unseen tissue), else the pooled one."""
        errors = self.calibration[method]
        return errors.get(f"tumour:{organ}", errors["tumour"])

    def method_for(self, organ: str) -> str:
        """The method that measures ``organ``: the head only where it fits the models and knows the organ."""
        return "head" if self.method() == "head" and self.head_for(organ) is not None else "zero-shot"

    def measure(self, organ: str, method: str | None = None) -> dict[str, float]:
        """Class -> measured share of the tissue (mean per-patch probability) for one ontology organ."""
        return {c: float(v.mean()) for c, v in self.per_patch(organ, method).items()}

    def per_patch(self, organ: str, method: str | None = None) -> dict[str, np.ndarray]:
        """Class -> (N,) each patch's probability of it, for one ontology organ (computed once)."""
        method = method or self.method_for(organ)
        key = (organ, method)
        if key not in self._measured:
            if method == "head":
                from napari_pathalign.reporting.measure_head import patch_inputs

                _, h = self.head_for(organ)
                name_of = {c.label: c.name for c in self.ontology.organ(organ).classes}
                p = h.probabilities(patch_inputs(self.analysis))  # (N, C)
                self._measured[key] = {name_of[c]: p[:, k].astype(np.float32) for k, c in enumerate(h.classes)}
            else:
                self._measured[key] = self.zero_shot_per_patch(organ)
        return self._measured[key]

    def zero_shot_per_patch(self, organ: str) -> dict[str, np.ndarray]:
        """Class -> (N,) each patch's probability (its neighbourhood against the organ's class prompts)."""
        from scipy.special import softmax

        from napari_pathalign.engine.zero_shot import class_embeddings

        classes = self.ontology.organ(organ).zero_shot_classes()
        gen = self.analysis.models["generation"]
        sims = self.analysis.neighbourhood_similarity(class_embeddings(gen, classes))  # (N, C)
        p = softmax(float(gen.scale().detach()) * sims, axis=1).astype(np.float32)
        return {c: p[:, k] for k, c in enumerate(classes)}

    def organ(self, text: str) -> str:
        """The ontology organ: named in the text (its words or class phrases), else the one whose class
        prompts the slide matches best."""
        hits = self.ontology.organ_mentions(text)
        if max(hits.values()) > 0:
            return max(hits, key=hits.get)
        if len(self.ontology.organs) == 1:
            return self.ontology.organs[0].name
        sets = {o.name: [p for c in o.classes for p in c.prompts] for o in self.ontology.organs}
        return self.analysis.zero_shot(sets, "retrieval").best

    def calls(self, soft, prompt: str, ontology: Ontology | None = None) -> dict[str, float]:
        """{call: probability} of a whole sentence right after ``prompt``: each tumour class of the ontology
        (default the checked text's), and 'no tumour'."""
        onto = ontology or self.ontology
        key = (prompt, id(onto))  # the object: an edited copy may keep the name and version
        if key not in self._calls:
            alts = [(p[:1].upper() + p[1:] + ".", value) for p, value in self._call_phrases(onto)]
            self._calls[key] = choice_distribution(self.analysis.models["generation"].lm, soft, prompt, alts)
        return self._calls[key]

    def tumour_present(self, soft, prompt: str) -> float:
        """P(tumour present) from the LM: the tumour calls against the negative ones right after ``prompt``."""
        return 1.0 - self.calls(soft, prompt, self.model_ontology).get(NEGATIVE, 0.0)

    def _call_phrases(self, ontology: Ontology | None = None) -> list[tuple[str, str]]:
        """(phrase, call) of every diagnosis the ontology can state: tumour classes' phrases, negative phrases."""
        out = []
        for o in (ontology or self.ontology).organs:
            out += [(p, c.name) for c in o.tumour_classes for p in c.phrases]
            out += [(p, NEGATIVE) for p in o.negative_phrases]
        return list(dict.fromkeys(out))

    # -- checking -----------------------------------------------------------------------------
    def check(
        self, sentences: list[str], prompt: str, question: str | None = None, own_words: bool = True
    ) -> list[list[Claim]]:
        """The checked claims of each sentence of one text (a draft, an answer, a report) after ``prompt``.

        ``own_words``: the text is the model's own (a draft): a call is asked in its place in the sentence.
        A report written by someone else is worded its own way: its calls are asked in the model's words,
        as whole sentences after the text before them (the claimed class matched by its label)."""
        soft = self.soft_prompt()
        text = " ".join([question or "", *sentences])
        organ = self.organ(text)
        named = {o for o, hits in self.ontology.organ_mentions(text, class_phrases=False).items() if hits}  # by words
        present = None
        out = []
        for k, sentence in enumerate(sentences):
            prefix = " ".join([prompt, *sentences[:k]]).strip()
            claims = find_claims(sentence, question, self.ontology)
            for c in claims:
                if c.kind in ("diagnosis", "negative", "answer") and not self._is_tissue(c, organ):
                    if soft is None:
                        continue
                    no_tumour = self._check_call(c, sentence, prefix, soft, own_words)  # P(no tumour)
                    if math.isfinite(no_tumour) and (
                        c.kind == "diagnosis" or (c.kind == "negative" and c.value == "tumour")
                    ):
                        present = 1 - no_tumour
                elif c.kind == "extent":
                    if present is None:
                        present = self.tumour_present(soft, prompt) if soft is not None else 1.0
                    self._check_extent(c, organ, present)
                else:  # a tissue: in its own organ when the text names that organ too (a report of two organs)
                    own = c.organs[0] if len(c.organs) == 1 and c.organs[0] in named else organ
                    self.check_tissue(c, own)
            out.append([c for c in claims if math.isfinite(c.probability)])
        return out

    def _is_tissue(self, c: Claim, organ: str) -> bool:
        """A negated background class ("no adipose tissue") is measured, not asked of the LM."""
        if c.kind != "negative" or c.value == "tumour":
            return False
        return not any(x.name == c.value and x.tumour for o in self.ontology.organs for x in o.classes)

    def _check_call(self, c: Claim, sentence: str, prefix: str, soft, own_words: bool = True) -> float:
        """A diagnosis, a negative call or an answer: the LM's choice among the alternatives. Returns the
        probability of 'no tumour' (nan for an answer)."""
        lm = self.analysis.models["generation"].lm
        if c.kind == "answer":
            c.probability = choice_distribution(lm, soft, prefix, _answers(sentence, c)).get(c.value, 0.0)
            c.basis = f"the model's probability of '{c.phrase}' against the alternatives, given the slide"
            return float("nan")
        value = c.value
        if own_words:
            dist = choice_distribution(lm, soft, prefix, self._swapped(sentence, c))  # {call: probability}
            how = "in its place in the sentence"
        else:
            value, known = self.model_call(c.value)
            dist = self.calls(soft, prefix, self.model_ontology if known else self.ontology)
            how = "in the model's own words" if known else "in this ontology's words (a class the model never named)"
        if len(dist) < 2:  # one call only: the choice would be certain whatever the slide, so it is no check
            c.probability = float("nan")
            return float("nan")
        if c.kind == "negative" and c.value != "tumour":  # "no <class>": that class is not the call
            c.probability = 1 - dist.get(value, 0.0)
            c.basis = f"1 - the model's probability of '{c.value}' among the calls ({how}), given the slide"
        else:
            c.probability = dist.get(NEGATIVE if c.kind == "negative" else value, 0.0)
            c.basis = f"the model's probability of '{c.phrase}' against the other calls ({how}), given the slide"
        return dist.get(NEGATIVE, 0.0)

    def model_call(self, value: str) -> tuple[str, bool]:
        """The model ontology's name for a class of the checked text's ontology (same label, else same name),
        and whether the model knows it."""
        if value == "tumour":
            return value, True
        label = next((c.label for o in self.ontology.organs for c in o.classes if c.name == value), value)
        for o in self.model_ontology.organs:
            for c in o.tumour_classes:
                if c.label == label or c.name == value:
                    return c.name, True
        return value, False

    def _swapped(self, sentence: str, c: Claim) -> list[tuple[str, str]]:
        """The sentence with every call of the ontology in the claim's place: [(sentence, call)]."""
        out = []
        for phrase, value in self._call_phrases():
            p = phrase[:1].upper() + phrase[1:] if c.phrase[:1].isupper() else phrase
            out.append((sentence[: c.start] + p + sentence[c.end :], value))
        return out

    def _check_extent(self, c: Claim, organ: str, present: float) -> None:
        method = self.method_for(organ)
        o = self.ontology.organ(organ)
        per = self.per_patch(organ, method)
        c.per_patch = np.sum([per[t.name] for t in o.tumour_classes], axis=0).astype(np.float32)
        cal = self.tumour_error(method, organ)
        raw, c.measured_of = float(c.per_patch.mean()), "tumour"
        b = next(b for b in self.ontology.extent if b.name == c.value)
        c.measured = cal.estimate(raw)
        c.probability = cal.probability(raw, b.lower, b.upper) * present
        c.basis = (
            f"tumour measured at about {c.measured:.0%} of the tissue ({organ}, {_how_for(self, organ)}), "
            f"tumour present {present:.0%}; claimed {c.value}, {b.lower:.0%}-{b.upper:.0%}"
        )

    def check_tissue(self, c: Claim, organ: str) -> None:
        method = self.method_for(organ)
        o = self.ontology.organ(organ)
        errors = self.calibration[method]
        own = next((x for x in o.classes if x.name == c.value), None)
        if own is not None:
            cal = errors.get(f"tissue:{own.label}", errors["tissue"])  # the class's own error when fitted
            c.per_patch = self.per_patch(organ, method)[own.name]
            raw, c.measured_of = float(c.per_patch.mean()), own.name
            c.measured = cal.estimate(raw)
            c.basis = (
                f"{own.name} measured at about {c.measured:.0%} of the tissue ({_how_for(self, organ)}); "
                f"reports name a tissue from {NAMED_FRACTION:.0%}"
            )
        else:  # the organ's classes do not hold it: absent as far as the model can measure
            cal, raw, c.measured = errors["tissue"], 0.0, 0.0
            c.basis = f"{c.value} is not among the tissues measured in {organ} ({', '.join(x.name for x in o.classes)})"
        named = cal.probability(raw, NAMED_FRACTION, 1.0)
        c.probability = 1 - named if c.kind == "negative" else named


def _how(method: str) -> str:
    return "measurement head" if method == "head" else "zero-shot map"


def _how_for(checker, organ: str) -> str:
    """The method's name, and why zero-shot where the model's head exists but does not know the organ."""
    method = checker.method_for(organ)
    if method == "zero-shot" and checker.method() == "head":
        return "zero-shot map: the model's measurement head does not know this ontology's classes"
    return _how(method)


def _answers(sentence: str, claim: Claim) -> list[tuple[str, str]]:
    """The answer with 'Yes' and 'No' in its place."""
    return [("Yes" + sentence[claim.end :], "yes"), ("No" + sentence[claim.end :], "no")]


def choice_distribution(lm, soft, prefix: str, alternatives: list[tuple[str, str]]) -> dict[str, float]:
    """{value: probability mass of its alternatives among all}, by the LM after ``prefix``."""
    logp = np.array(lm.continuation_logprobs(soft, prefix, [t for t, _ in alternatives]))
    values = np.array([v for _, v in alternatives])
    total = np.logaddexp.reduce(logp)
    return {v: float(np.exp(np.logaddexp.reduce(logp[values == v]) - total)) for v in dict.fromkeys(values.tolist())}
