"""What a question asks (its intent), however it is worded, read with the report ontology.

Two parts, each measured (``pathalign evaluate``, ``tests/test_questions.py``) on wordings kept out of
the fit (``resources/question_bank.json``: 'fit' and 'held_out' halves):

- **What it names**: the classes the question mentions, found with the ontology (class names,
  phrases, synonyms; the ontology's tumour words stand for any tumour class), longest match first.
  Those spans, and the organ's words, are masked ('class_x', 'organ_x') before the wording is read,
  so the reading of a wording does not depend on the class it names.
- **What it asks**: a small classifier (TF-IDF of word and character n-grams, logistic regression)
  fitted on the bank's 'fit' wordings, masked, with an elliptical 'follow_up' form ("And SCC?").
  On top, three rules that no wording can talk away: a question about a topic no H&E ontology
  measures (the bank's 'outside_words': age, margins, grade, stage, stains) is not answered; a
  presence question that names nothing the ontology knows is not answered; an open question that
  is about nothing on the slide is not answered. A follow-up ("And how much?") takes what it lacks
  from the conversation's last understood question.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

from napari_pathalign.core.resources import RESOURCES
from napari_pathalign.reporting.ontology import Ontology, load_ontology

BANK_FILE = RESOURCES / "question_bank.json"
KINDS = ("presence", "subtype", "extent", "background", "where", "open", "unanswerable")
ANY_TUMOUR = "tumour"  # the target of a question about any tumour class ("Is there cancer?")
CLASS_TOKEN, CLASS2_TOKEN, ORGAN_TOKEN = "class_x", "class_y", "organ_x"  # what masked spans read as
MAX_HISTORY = 6  # earlier turns looked at to resolve a follow-up
_WORD = re.compile(r"[a-z0-9][a-z0-9\-']*")


@dataclass(frozen=True)
class Mention:
    """A class the question names."""

    value: str  # an ontology class name, or ANY_TUMOUR
    surface: str  # the words of the question
    start: int  # character span in the question
    end: int
    tumour: bool  # a tumour class (or any tumour)
    organs: tuple[str, ...]  # the organs whose class it is (() for any tumour)


@dataclass(frozen=True)
class Intent:
    """What a question asks."""

    kind: str  # one of KINDS
    target: str | None = None  # the class asked about: an ontology class name, ANY_TUMOUR, or None
    choices: tuple[str, ...] = ()  # subtype: the classes the question offers ("adenocarcinoma or SCC?"); (): all
    organ: str | None = None  # the organ the question names; None: the slide decides
    confidence: float = 1.0  # the classifier's probability of the kind it read
    from_history: bool = False  # what it lacked was taken from an earlier question
    reason: str = ""  # why it is not answered (kind 'unanswerable')
    negated: bool = False  # presence asked as absence ("Is X absent?", "Can X be ruled out?"): 'yes' means absent

    def to_dict(self) -> dict:
        d = asdict(self)
        d["class"] = d.pop("target")
        d["choices"] = list(self.choices)
        d["confidence"] = round(float(self.confidence), 3)
        d["understood_as"] = self.understood_as
        return d

    @property
    def understood_as(self) -> str:
        """The question as the model reads it, for the reader to catch a misreading."""
        what = "any tumour" if self.target == ANY_TUMOUR else self.target
        if self.kind == "presence":
            return f"is {what} absent?" if self.negated else f"is {what} present?"
        if self.kind == "subtype":
            return f"which is it: {' or '.join(self.choices)}?" if self.choices else "which tumour type (subtype)?"
        if self.kind == "extent":
            return f"how much of the tissue is {'tumour' if self.target == ANY_TUMOUR else what}?"
        if self.kind == "background":
            return "which background tissues are present?"
        if self.kind == "where":
            return f"where is {'the tumour' if self.target == ANY_TUMOUR else what}?"
        if self.kind == "open":
            return "an open question: the model writes the answer, and its claims are checked"
        return f"not answerable from this slide: {self.reason}"


# ---------------------------------------------------------------------- the bank
@lru_cache(maxsize=2)
def load_bank(path: str | None = None) -> dict:
    """The question bank (``resources/question_bank.json``)."""
    return json.loads((BANK_FILE if path is None else Path(path)).read_text(encoding="utf-8"))


def _normal(text: str) -> str:
    """Lower case, American spellings of the words reports use read as British ones, hyphens as spaces."""
    low = text.lower().replace("tumor", "tumour").replace("izing", "ising").replace("summarize", "summarise")
    return re.sub(r"(?<=\w)-(?=\w)", " ", low)


def tumour_words(ontology: Ontology) -> tuple[str, ...]:
    """The words for 'any tumour': the ontology's own, else the bank's English default (its 'tumour' fillers)."""
    return ontology.tumour_words or tuple(load_bank()["fillers"][ANY_TUMOUR])


@lru_cache(maxsize=16)
def _names(ontology: Ontology) -> tuple:
    """(normalised surface, value, tumour, organs) of every name of every class, longest first."""
    rows: dict[tuple[str, str, bool], set] = {}
    for o in ontology.organs:
        for c in o.classes:
            for s in (c.name, *c.phrases, *c.synonyms):
                rows.setdefault((_normal(s).strip(), c.name, c.tumour), set()).add(o.name)
    for w in tumour_words(ontology):
        key = _normal(w).strip()
        if not any(k[0] == key for k in rows):  # a class's own name wins ("carcinoma" is no class here)
            rows.setdefault((key, ANY_TUMOUR, True), set())
    table = [(s, v, t, tuple(sorted(organs))) for (s, v, t), organs in rows.items() if s]
    return tuple(sorted(table, key=lambda r: (-len(r[0]), r[0])))


def mentions(question: str, ontology: Ontology | None = None) -> list[Mention]:
    """The classes ``question`` names, in reading order (a longer name wins over the shorter one inside it)."""
    onto = ontology or load_ontology()
    low = _normal(question)
    taken: list[tuple[int, int]] = []
    out = []
    for surface, value, tumour, organs in _names(onto):
        pattern = r"\s+".join(re.escape(w) for w in surface.split())
        for m in re.finditer(rf"(?<![\w]){pattern}(?![\w])", low):
            s, e = m.span()
            if any(s < te and ts < e for ts, te in taken):
                continue
            taken.append((s, e))
            out.append(Mention(value, question[s:e], s, e, tumour, organs))
    return sorted(out, key=lambda m: m.start)


def organs_named(question: str, ontology: Ontology) -> list[tuple[int, int, str]]:
    """(start, end, organ) of the organ words in the question."""
    low = _normal(question)
    out = []
    for o in ontology.organs:
        for w in sorted(o.words, key=len, reverse=True):
            pattern = r"\s+".join(re.escape(x) for x in _normal(w).split())
            out += [(m.start(), m.end(), o.name) for m in re.finditer(rf"(?<!\w){pattern}(?!\w)", low)]
    return out


def mask(question: str, found: list[Mention], organ_spans=()) -> str:
    """The question with the classes it names (and organ words) replaced by placeholder tokens."""
    low = _normal(question)
    spans = [(m.start, m.end, CLASS_TOKEN if i == 0 else CLASS2_TOKEN) for i, m in enumerate(found)]
    for s, e, _ in organ_spans:
        if not any(s < te and ts < e for ts, te, _ in spans):
            spans.append((s, e, ORGAN_TOKEN))
    for s, e, token in sorted(spans, reverse=True):
        low = low[:s] + f" {token} " + low[e:]
    return re.sub(r"\s+", " ", low).strip()


# ---------------------------------------------------------------------- the classifier
@lru_cache(maxsize=4)
def intent_classifier(ontology: Ontology):
    """The intent classifier fitted on the bank's 'fit' wordings, masked as questions are (a class word
    filled in), a few hundred ms; never on 'held_out'."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline, make_union

    bank = load_bank()
    texts, labels = [], []
    rows = [(w, kind) for kind, halves in bank["intents"].items() for w in halves["fit"]]
    for w, kind in rows + [(w, "follow_up") for w in bank["follow_up"]["fit"]]:
        word = tumour_words(ontology)[0]  # a word this ontology masks as a class, as questions will be
        q = w.replace("{class}", word).replace("{class2}", word)
        texts.append(mask(q, mentions(q, ontology), organs_named(q, ontology)))
        labels.append(kind)
    from sklearn.preprocessing import FunctionTransformer

    features = make_union(
        TfidfVectorizer(analyzer="word", ngram_range=(1, 2), token_pattern=r"[a-z0-9_']+", sublinear_tf=True),
        TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 4), sublinear_tf=True),
        FunctionTransformer(sentence_vectors),
    )
    model = make_pipeline(features, LogisticRegression(C=10.0, max_iter=2000, class_weight="balanced"))
    model.fit(texts, labels)
    return model


SENTENCE_WORDS = {CLASS_TOKEN: "this lesion", CLASS2_TOKEN: "that lesion", ORGAN_TOKEN: "the organ"}


@lru_cache(maxsize=1)
def _text_tower():
    from napari_pathalign.models.text_tower import TextTower

    return TextTower().eval()


@lru_cache(maxsize=4096)
def _sentence_vector(masked: str):
    """The text tower's (all-MiniLM-L6-v2) normalised sentence vector of a masked question, placeholders in words."""
    import torch

    text = masked
    for token, words in SENTENCE_WORDS.items():
        text = text.replace(token, words)
    tower = _text_tower()
    with torch.no_grad():
        _, pooled = tower(tower.tokenize([text], 64))
    v = torch.nn.functional.normalize(pooled, dim=-1)[0]
    return v.numpy().astype("float64")


def sentence_vectors(masked: list[str]):
    """(n, 384) sentence vectors: what the wording means, beyond the words it shares with the bank's."""
    import numpy as np

    return np.stack([_sentence_vector(m) for m in masked])


def _tokens(text: str) -> set[str]:
    return set(_WORD.findall(text))


def understand(question: str, ontology: Ontology | None = None, history=()) -> Intent:
    """What ``question`` asks. ``history``: earlier turns, (question, answer) pairs or questions, oldest first;
    a follow-up ("And how much?", "What about SCC?") takes what it lacks from the last understood one."""
    onto = ontology or load_ontology()
    bank = load_bank()
    found = mentions(question, onto)
    organ_spans = organs_named(question, onto)
    masked = mask(question, found, organ_spans)
    model = intent_classifier(onto)
    probs = dict(zip(model.classes_, model.predict_proba([masked])[0]))
    kind = str(max(probs, key=probs.get))
    confidence = float(probs[kind])
    organ = organ_spans[0][2] if organ_spans else None
    tumours = list(dict.fromkeys(m.value for m in found if m.tumour and m.value != ANY_TUMOUR))
    target = found[0].value if found else None
    words = _tokens(masked)

    outside = sorted(words & set(bank["outside_words"]))
    if outside:
        return Intent(
            "unanswerable",
            target,
            organ=organ,
            confidence=confidence,
            reason=f"it asks about {', '.join(outside)}, which the model does not assess from H&E tissue",
        )
    previous = _previous(history, onto)
    if kind == "follow_up":
        if previous is not None and previous.kind in ("presence", "extent", "where", "subtype"):
            return _finish(previous.kind, target or previous.target, tumours, organ or previous.organ, confidence, True)
        kind = "presence"
    if kind == "unanswerable":
        reason = (
            "the model cannot tell this from the slide"
            if found
            else "it names nothing the model's report ontology knows (" + _known(onto) + ")"
        )
        return Intent("unanswerable", target, organ=organ, confidence=confidence, reason=reason)
    if kind in ("presence", "extent", "where") and target is None:
        if previous is not None and previous.target is not None:
            return _finish(kind, previous.target, tumours, organ or previous.organ, confidence, True)
        if kind == "presence":
            return Intent(
                "unanswerable",
                organ=organ,
                confidence=confidence,
                reason="it names nothing the model's report ontology knows (" + _known(onto) + ")",
            )
        target = ANY_TUMOUR
    if kind == "open" and not found and not organ_spans and not (words & set(bank["domain_words"])):
        return Intent("unanswerable", organ=organ, confidence=confidence, reason="it asks nothing about the tissue")
    intent = _finish(kind, target, tumours, organ, confidence, False)
    if intent.kind == "presence" and _asks_absence(masked, bank):
        from dataclasses import replace

        intent = replace(intent, negated=True)
    return intent


def _asks_absence(masked: str, bank: dict) -> bool:
    """Whether a presence question asks for absence ('absent', 'ruled out', 'free of', 'negative for')."""
    return any(re.search(rf"(?<!\w){re.escape(w)}(?!\w)", masked) for w in bank.get("negating_words", []))


def _finish(kind: str, target, tumours: list[str], organ, confidence: float, from_history: bool) -> Intent:
    if kind in ("presence", "subtype") and len(tumours) >= 2:  # "adenocarcinoma or squamous?": a choice
        return Intent("subtype", ANY_TUMOUR, tuple(tumours), organ, confidence, from_history)
    target = {"subtype": ANY_TUMOUR, "background": None}.get(kind, target)  # what those kinds ask about
    return Intent(kind, target, (), organ, confidence, from_history)


def _previous(history, onto: Ontology) -> Intent | None:
    """The intent of the last earlier question that asked something answerable, or None."""
    turns = [h[0] if isinstance(h, (tuple, list)) else h for h in list(history)[-MAX_HISTORY:]]
    for k in range(len(turns) - 1, -1, -1):
        if not isinstance(turns[k], str) or not turns[k].strip():
            continue
        intent = understand(turns[k], onto, turns[:k])
        if intent.kind not in ("unanswerable", "open"):
            return intent
    return None


def _known(onto: Ontology) -> str:
    names = list(dict.fromkeys(c.name for o in onto.organs for c in o.classes))
    return ", ".join(names[:8]) + (", ..." if len(names) > 8 else "")
