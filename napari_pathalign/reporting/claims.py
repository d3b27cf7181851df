"""The claims of a report sentence, each checked against the slide: what ``support`` is made of.

A sentence is as trustworthy as its weakest claim. Claims are found with the report vocabulary the
model was trained on (``reporting/vocabulary.py``, longest phrase first, case-insensitive):

- **diagnosis** (tumour present / absent): the generation model's LM probability of the sentence
  with this call against the same sentence with every other call phrase in its place, given the
  slide and the text before it (phrases of one call summed). The model's own reading of the slide,
  asked as a choice instead of a continuation.
- **extent** (small < 10 %, moderate 10-30 %, extensive > 30 % of the tissue): *measured*. The
  tumour fraction is the mean per-patch probability of the organ's tumour class: from the model's
  measurement head (``reporting/measure_head.py``) when it ships one, else from the organ's
  zero-shot tissue set (``resources/zero_shot_classes.json``; each patch read with its
  neighbourhood). The claim's probability is the share of a logit-normal measurement error (fitted
  per method on calibration slides: ``resources/claim_calibration.json``,
  ``scripts/fit_claim_checker.py``) that falls in the claimed bucket, times the probability that
  tumour is present at all.
- **tissue** (a background tissue named): measured the same way, within the organ the text names
  (a tissue outside the organ's classes counts as absent); the probability that the tissue covers
  at least 10 % of the slide, the share at which reports name one.
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

NAMED_FRACTION = 0.10  # reports name a background tissue that covers at least this share
PERCENT = re.compile(r"(\d+(?:\.\d+)?)\s*%")

# Report tissue classes -> (zero-shot set, class) that measures them (resources/zero_shot_classes.json).
TISSUE_MEASURE = {
    "normal": ("lymph node tissue", "lymphoid tissue"),
    "STROMA": ("colorectal tissue", "stroma"),
    "COMPLEX": ("colorectal tissue", "complex stroma"),
    "LYMPHO": ("colorectal tissue", "lymphocytes"),
    "DEBRIS": ("colorectal tissue", "debris"),
    "MUCOSA": ("colorectal tissue", "mucosa"),
    "ADIPOSE": ("colorectal tissue", "adipose"),
}
TUMOUR_MEASURE = {
    "lymph node tissue": "metastatic carcinoma",
    "colorectal tissue": "adenocarcinoma",
}  # organ set -> its tumour class
TUMOUR_CLASS = {"lymph node tissue": "tumour", "colorectal tissue": "TUMOR"}  # organ set -> its tumour's report class
ORGAN_HINTS = {  # words of a draft that name the organ
    "lymph node tissue": ("lymph node", "nodal", "axillary", "sentinel", "metastatic carcinoma", "metastasis"),
    "colorectal tissue": ("colon", "colonic", "rectum", "rectal", "sigmoid", "adenocarcinoma", "polypectomy"),
}


@dataclass
class Claim:
    """One checkable statement inside a sentence."""

    kind: str  # 'diagnosis', 'extent', 'tissue' or 'answer'
    value: str  # 'positive'/'negative', the bucket, the tissue class, or 'yes'/'no'
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


@dataclass
class Calibration:
    """Measurement error of a measured fraction: true logit ~ Normal(slope * measured logit + intercept, sigma)."""

    slope: float  # of the measured logit
    intercept: float
    sigma: float  # residual standard deviation, logit units

    def estimate(self, measured: float) -> float:
        """The calibrated fraction (the median of the true fraction given the measured one)."""
        return 1 / (1 + math.exp(-(self.slope * _logit(measured) + self.intercept)))

    def probability(self, measured: float, lo: float, hi: float) -> float:
        """P(lo <= true fraction < hi) given the measured fraction."""
        mu = self.slope * _logit(measured) + self.intercept
        a = -math.inf if lo <= 0 else (_logit(lo) - mu) / self.sigma
        b = math.inf if hi >= 1 else (_logit(hi) - mu) / self.sigma
        return _phi(b) - _phi(a)


def _phi(z: float) -> float:
    """The standard normal CDF (math.erf: no scipy.stats import, ~0.3 s, in a drafting thread)."""
    return 0.5 * (1.0 + math.erf(z / math.sqrt(2.0))) if math.isfinite(z) else (1.0 if z > 0 else 0.0)


def _logit(x: float, eps: float = 0.005) -> float:
    x = min(max(float(x), eps), 1 - eps)
    return math.log(x / (1 - x))


def calibration_file() -> Path:
    from napari_pathalign.core.resources import RESOURCES

    return RESOURCES / "claim_calibration.json"


@lru_cache(maxsize=4)
def load_calibration(path: str | None = None) -> dict[str, dict[str, Calibration]]:
    """{measurement method ('head', 'zero-shot'): {'tumour': Calibration, 'tissue': Calibration,
    'tissue:<class>': Calibration, ...}} from the shipped file (or ``path``)."""
    data = json.loads(Path(path or calibration_file()).read_text())
    line = lambda d: Calibration(**{f: float(d[f]) for f in ("slope", "intercept", "sigma")})  # noqa: E731
    out = {}
    for m in ("head", "zero-shot"):
        if m in data:
            out[m] = {k: line(data[m][k]) for k in ("tumour", "tissue")}
            out[m].update({f"tissue:{c}": line(d) for c, d in data[m].get("tissue_by_class", {}).items()})
    return out


def organ_classes(organ: str) -> dict[str, str]:
    """Report class -> zero-shot class of one organ set (its tumour and its tissues)."""
    out = {TUMOUR_CLASS[organ]: TUMOUR_MEASURE[organ]}
    out.update({c: zs for c, (s, zs) in TISSUE_MEASURE.items() if s == organ})
    return out


@lru_cache(maxsize=1)
def vocabulary() -> list[tuple[str, str, str]]:
    """(phrase lower-case, kind, value), longest first."""
    from napari_pathalign.reporting.vocabulary import BUCKETS, EXTENT, NEGATIVE, POSITIVE, TISSUE

    out = [(p, "diagnosis", "positive") for ps in POSITIVE.values() for p in ps]
    out += [(p, "diagnosis", "negative") for ps in NEGATIVE.values() for p in ps]
    out += [(p, "extent", b) for b, ps in EXTENT.items() for p in ps]
    out += [
        ("less than 10%", "extent", "small"),
        ("between 10% and 30%", "extent", "moderate"),
        ("more than 30%", "extent", "extensive"),
    ]
    out += [(p, "tissue", c) for c, ps in TISSUE.items() for p in ps]
    assert {b for b, _, _ in BUCKETS} == set(EXTENT)
    return sorted({(p.lower(), k, v) for p, k, v in out}, key=lambda x: (-len(x[0]), x[0]))


def find_claims(sentence: str, question: str | None = None) -> list[Claim]:
    """The claims ``sentence`` states (unchecked), in reading order."""
    from napari_pathalign.reporting.vocabulary import bucket

    low = sentence.lower()
    taken = np.zeros(len(low), bool)
    found = []
    for phrase, kind, value in vocabulary():
        for m in re.finditer(r"(?<!\w)" + re.escape(phrase) + r"(?!\w)", low):
            a, b = m.span()
            if not taken[a:b].any():
                taken[a:b] = True
                found.append(Claim(kind, value, sentence[a:b], a, b))
    if (
        not any(c.kind == "extent" for c in found)
        and (m := PERCENT.search(sentence))
        and not taken[m.start() : m.end()].any()
    ):
        b = bucket(float(m.group(1)) / 100)
        if b is not None:
            found.append(Claim("extent", b, m.group(0), m.start(), m.end()))
    if question and not found and (m := re.match(r"\s*(yes|no)\b", low)):
        found.append(Claim("answer", m.group(1), sentence[m.start(1) : m.end(1)], m.start(1), m.end(1)))
    return sorted(found, key=lambda c: c.start)


class ClaimChecker:
    """Checks claims against one prepared ``SlideAnalysis`` (its measurements are computed once)."""

    def __init__(self, analysis, calibration: dict | None = None, head=...):
        """``calibration``: {method: {kind: Calibration}} (default: the shipped file); ``head``: a
        ``MeasureHead`` or None for zero-shot only (default: the shipped head when it fits the models)."""
        from napari_pathalign.reporting.measure_head import load_head

        self.analysis = analysis
        self.calibration = calibration if calibration is not None else load_calibration()
        self.head = load_head() if head is ... else head
        self._measured: dict[
            tuple[str, str], dict[str, np.ndarray]
        ] = {}  # (organ, method) -> class -> per-patch probability
        self._present: dict[str, float] = {}
        self._method: str | None = None

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

    def measure(self, organ: str, method: str | None = None) -> dict[str, float]:
        """Report class -> measured share of the tissue (mean per-patch probability) for one organ."""
        return {c: float(v.mean()) for c, v in self.per_patch(organ, method).items()}

    def per_patch(self, organ: str, method: str | None = None) -> dict[str, np.ndarray]:
        """Report class -> (N,) each patch's probability of it, for one organ (computed once)."""
        method = method or self.method()
        key = (organ, method)
        if key not in self._measured:
            if method == "head":
                from napari_pathalign.reporting.measure_head import patch_inputs

                h = self.head.organs[organ]
                p = h.probabilities(patch_inputs(self.analysis))  # (N, C)
                self._measured[key] = {c: p[:, k].astype(np.float32) for k, c in enumerate(h.classes)}
            else:
                zs = self.zero_shot_per_patch(organ)
                self._measured[key] = {c: zs[z] for c, z in organ_classes(organ).items()}
        return self._measured[key]

    def zero_shot_per_patch(self, set_name: str) -> dict[str, np.ndarray]:
        """Zero-shot class -> (N,) each patch's probability (its neighbourhood against the set's prompts)."""
        from scipy.special import softmax

        from napari_pathalign.engine.zero_shot import class_embeddings, load_class_sets

        sets, _ = load_class_sets()
        if set_name not in sets:
            raise ValueError(
                f"the zero-shot class file has no set {set_name!r}, which measures claims; sets: {sorted(sets)}"
            )
        gen = self.analysis.models["generation"]
        sims = self.analysis.neighbourhood_similarity(class_embeddings(gen, sets[set_name]))  # (N, C)
        p = softmax(float(gen.scale().detach()) * sims, axis=1).astype(np.float32)
        return {c: p[:, k] for k, c in enumerate(sets[set_name])}

    def organ(self, text: str) -> str:
        """The organ's zero-shot set: named in the text, else the one whose tumour and tissue words the
        slide matches best."""
        low = text.lower()
        hits = {s: sum(w in low for w in words) for s, words in ORGAN_HINTS.items()}
        if max(hits.values()) > 0:
            return max(hits, key=hits.get)
        from napari_pathalign.engine.zero_shot import load_class_sets

        sets, _ = load_class_sets()
        z = self.analysis.zero_shot({s: [p for ps in sets[s].values() for p in ps] for s in ORGAN_HINTS}, "retrieval")
        return z.best

    def tumour_present(self, soft, prompt: str) -> float:
        """P(tumour present) from the LM: a positive vs a negative diagnosis right after ``prompt``."""
        if prompt not in self._present:
            alts = [
                (p.capitalize() + ".", value) for p, kind, value in vocabulary() if kind == "diagnosis"
            ]  # the calls _alternatives swaps in
            self._present[prompt] = _choice(self.analysis.models["generation"].lm, soft, prompt, alts, "positive")
        return self._present[prompt]

    # -- checking -----------------------------------------------------------------------------
    def check(self, sentences: list[str], prompt: str, question: str | None = None) -> list[list[Claim]]:
        """The checked claims of each sentence of one text (a draft or an answer) that followed ``prompt``."""
        import torch

        from napari_pathalign.reporting.vocabulary import BUCKETS

        gen = self.analysis.models["generation"]
        soft = None
        if gen.lm is not None:
            with torch.no_grad():
                soft = gen.lm_proj(
                    torch.from_numpy(self.analysis.embedding("generation").queries).to(gen.device)[None]
                ).float()
        organ = self.organ(" ".join([question or "", *sentences]))
        method = self.method()
        how = "measurement head" if method == "head" else "zero-shot map"
        present = None
        out = []
        for k, sentence in enumerate(sentences):
            prefix = " ".join([prompt, *sentences[:k]]).strip()
            claims = find_claims(sentence, question)
            for c in claims:
                if c.kind in ("diagnosis", "answer"):
                    if soft is None:
                        continue
                    c.probability = _choice(gen.lm, soft, prefix, _alternatives(sentence, c), c.value)
                    c.basis = f"the model's probability of '{c.phrase}' against the alternatives, given the slide"
                    if c.kind == "diagnosis":
                        present = c.probability if c.value == "positive" else 1 - c.probability
                elif c.kind == "extent":
                    cal, c.per_patch = (
                        self.calibration[method]["tumour"],
                        self.per_patch(organ, method)[TUMOUR_CLASS[organ]],
                    )
                    raw, c.measured_of = float(c.per_patch.mean()), "tumour"
                    lo, hi = next((lo, hi) for b, lo, hi in BUCKETS if b == c.value)
                    if present is None:
                        present = self.tumour_present(soft, prompt) if soft is not None else 1.0
                    c.measured = cal.estimate(raw)
                    c.probability = cal.probability(raw, lo, hi) * present
                    c.basis = (
                        f"tumour measured at about {c.measured:.0%} of the tissue ({organ}, {how}), tumour present "
                        f"{present:.0%}; claimed {c.value}, {lo:.0%}-{min(hi, 1):.0%}"
                    )
                elif c.kind == "tissue":
                    errors, cls = self.calibration[method], TISSUE_MEASURE[c.value][1]
                    cal = (
                        errors.get(f"tissue:{c.value}", errors["tissue"])
                        if c.value in organ_classes(organ)
                        else errors["tissue"]
                    )  # the class's own error when fitted
                    if c.value in organ_classes(organ):
                        c.per_patch = self.per_patch(organ, method)[c.value]
                        raw, c.measured_of = float(c.per_patch.mean()), cls
                        c.measured = cal.estimate(raw)
                        c.basis = (
                            f"{cls} measured at about {c.measured:.0%} of the tissue ({how}); "
                            "reports name a tissue from "
                            f"{NAMED_FRACTION:.0%}"
                        )
                    else:  # the organ's tissue classes do not hold it: absent as far as the model can measure
                        raw, c.measured = 0.0, 0.0
                        c.basis = (
                            f"{cls} is not among the tissues measured in {organ} ({', '.join(organ_classes(organ))})"
                        )
                    c.probability = cal.probability(raw, NAMED_FRACTION, 1.0)
            out.append([c for c in claims if math.isfinite(c.probability)])
        return out


def _alternatives(sentence: str, claim: Claim) -> list[tuple[str, str]]:
    """The sentence with every phrase of the claim's kind in the claim's place: [(sentence, value)]."""
    if claim.kind == "answer":
        return [("Yes" + sentence[claim.end :], "yes"), ("No" + sentence[claim.end :], "no")]
    out = []
    for phrase, kind, value in vocabulary():
        if kind == claim.kind:
            p = phrase[:1].upper() + phrase[1:] if claim.phrase[:1].isupper() else phrase
            out.append((sentence[: claim.start] + p + sentence[claim.end :], value))
    return out


def _choice(lm, soft, prefix: str, alternatives: list[tuple[str, str]], value: str) -> float:
    """Probability mass of the alternatives with ``value`` among all, by the LM after ``prefix``."""
    logp = np.array(lm.continuation_logprobs(soft, prefix, [t for t, _ in alternatives]))
    values = np.array([v for _, v in alternatives])
    total = np.logaddexp.reduce(logp)
    return float(np.exp(np.logaddexp.reduce(logp[values == value]) - total)) if (values == value).any() else 0.0
