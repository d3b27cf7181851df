"""Drafts and answers with evidence: every sentence carries a support score and a heatmap.

- **Streaming**: the generation model's LM decodes in a thread through transformers'
  ``TextIteratorStreamer``; the generator yields the text so far, and closing it (Stop, Cancel)
  stops the decoding at the next token. Beam search cannot stream: its text arrives at once.
- **Support** of a sentence: the probability that the slide bears out its weakest claim
  (``reporting/claims.py``): a diagnosis is the LM's choice among the alternative calls, an extent
  or a named tissue is measured on the slide's per-patch class maps against a calibrated
  measurement error. "0.9" reads: the model and the measurements give this sentence's least
  certain claim a 90 % chance. A sentence without a checkable claim (a specimen line) gets the
  retrieval model's slide-sentence similarity ranked among ``reference_sentences()``, and says so.
- **Evidence**, up to three maps: where the slide matches the sentence's words
  (``SlideAnalysis.text_heatmap``, with its top patches: what a pathologist checks), what the
  slide-sentence similarity used (``SlideAnalysis.similarity_attribution``, gradient x input: the
  faithful one, for researchers), and for a measured claim (extent, tissue) what the measurement
  counted (each patch's probability of the class).
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from napari_pathalign.core.heatmap import Heatmap
from napari_pathalign.models.in_scope import cap_support

MAX_QUESTION_CHARS = 1000  # longer questions are refused: the LM was trained on one-line questions
TOP_PATCHES = 6  # evidence patches kept per sentence
LOW_SUPPORT = 0.5  # sentences below this are flagged for review


@dataclass
class Evidence:
    """Where on the slide a statement is supported."""

    heatmap: Heatmap  # where the slide matches the statement's words (text heatmap): what a reader checks
    top_patches: np.ndarray  # (k,) patch indices of the heatmap, best first
    top_xy_level0: np.ndarray  # (k, 2) their level-0 (x, y) corners
    attribution: Heatmap | None = None  # what the slide-sentence similarity used (gradient x input), for researchers
    measurement: Heatmap | None = (
        None  # what its least certain measured claim counted: each patch's probability of the class
    )


@dataclass
class Statement:
    """One sentence of a draft or answer."""

    text: str  # the sentence
    # probability of its weakest claim; without claims, its similarity rank among reference sentences; in [0, 1]
    support: float
    similarity: float  # raw cosine similarity (retrieval model), for researchers
    evidence: Evidence  # heatmap and top patches
    claims: list = field(
        default_factory=list
    )  # checked Claims (reporting/claims.py); empty: support is the similarity rank

    @property
    def basis(self) -> str:
        """How the support was reached, one line per claim."""
        if not self.claims:
            return "no checkable claim: similarity rank among standard report sentences"
        return "\n".join(f"{c.phrase}: {c.probability:.0%} ({c.basis})" for c in self.claims)

    @property
    def flagged(self) -> bool:
        return self.support < LOW_SUPPORT


@dataclass
class Provenance:
    """What produced a draft or answer, so it can be traced and reproduced."""

    model: str  # generation model name or folder
    model_hash: str  # its weights hash
    retrieval_model: str  # the model that scores support
    retrieval_hash: str
    encoder: str  # patch encoder name
    encoder_hash: str  # its weights hash
    slide: str  # slide path
    slide_fingerprint: str  # slide content hash
    prompt: str  # text the LM continued
    decoding: dict  # GenerationConfig as a dict
    time: str  # ISO UTC
    region: list | None = None  # level-0 polygon when asked of a region
    in_scope: dict | None = None  # {"score", "flagged", "basis", ...}: the slide inside the model's training?


@dataclass
class Draft:
    """A drafted report (or an answer: ``question`` set)."""

    text: str  # the model's text
    sentences: list[Statement]  # with support and evidence
    provenance: Provenance
    question: str | None = None  # for answers
    history_used: bool = False  # whether the model saw the earlier turns
    note: str = ""  # what the reader should know (history ignored, out of distribution, ...)
    in_distribution: object | None = None  # InDistribution when the model ships a feature distribution
    extra: dict = field(default_factory=dict)
    in_scope: object | None = None  # InScope (models/in_scope.py) when the model ships an in-scope model
    intent: dict | None = None  # an answer's question as understood (reporting/questions.py: Intent.to_dict())
    answered: bool = True  # False: the model did not answer (out of scope, unanswerable, or off the question)

    @property
    def out_of_scope_statement(self) -> str:
        """The plain sentence a draft or answer on an out-of-scope slide begins with ('' in scope)."""
        return out_of_scope_statement(self.in_scope, answer=self.question is not None)

    @property
    def shown_text(self) -> str:
        """What the reader sees: the out-of-scope statement first where the slide is out of scope, then the text."""
        first = self.out_of_scope_statement
        return f"{first}\n{self.text}" if first else self.text

    def to_dict(self) -> dict:
        """Plain JSON-able dict: text, provenance, sentences with support and evidence coordinates."""
        from dataclasses import asdict

        ind = self.in_distribution
        return {
            "text": self.shown_text,
            "model_text": self.text,
            "out_of_scope": self.out_of_scope_statement,
            "question": self.question,
            "intent": self.intent,
            "answered": self.answered,
            "history_used": self.history_used,
            "note": self.note,
            "provenance": asdict(self.provenance),
            "in_distribution": None
            if ind is None
            else {
                k: (float(v) if isinstance(v, (np.floating, float)) else v)
                for k, v in vars(ind).items()
                if not k.startswith("_")
            },
            "sentences": [
                {
                    "text": s.text,
                    "support": round(s.support, 4),
                    "similarity": round(s.similarity, 4),
                    "flagged": s.flagged,
                    "claims": [claim_dict(c) for c in s.claims],
                    "evidence_xy_level0": s.evidence.top_xy_level0.tolist(),
                    "attribution_xy_level0": []
                    if s.evidence.attribution is None
                    else s.evidence.attribution.xy_level0[s.evidence.attribution.top_patches(TOP_PATCHES)].tolist(),
                    "evidence_patch_size_level0": s.evidence.heatmap.size_level0,
                }
                for s in self.sentences
            ],
        }


Answer = Draft  # an answer is a draft with a question


@dataclass
class PatchStatements:
    """Evidence the other way: what the drafts say about one patch."""

    patch: int  # patch index
    xy_level0: np.ndarray  # (2,) its corner
    statements: list  # [(Statement, percentile of this patch in its evidence map)], best supported first
    class_probabilities: dict  # zero-shot class -> probability at this patch


def split_sentences(text: str) -> list[str]:
    """Sentences at '.', '!' or '?' followed by a space or line end, and at line breaks."""
    parts = re.split(r"(?<=[.!?])\s+|\n+", text.strip())
    return [p.strip() for p in parts if p and p.strip()]


def reference_sentences(ontology=None) -> list[str]:
    """The findings an ontology's reports state, as sentences: the similarity rank's yardstick
    (``ontology``: default the embedded model's)."""
    from napari_pathalign.reporting.ontology import load_ontology

    onto = ontology or load_ontology()
    out = []
    for o in onto.organs:
        out += [p[:1].upper() + p[1:] + "." for c in o.tumour_classes for p in c.phrases]
        out += [p[:1].upper() + p[1:] + "." for p in o.negative_phrases]
        out += [f"Background shows {p}." for c in o.tissue_classes for p in c.phrases]
    out += [f"Tumour forms {p}." for b in onto.extent for p in b.phrases]
    return list(dict.fromkeys(out))


def check_question(question) -> str:
    if not isinstance(question, str) or not question.strip():
        raise ValueError("the question is empty; ask e.g. 'Is tumour present?'")
    if len(question) > MAX_QUESTION_CHARS:
        raise ValueError(
            (
                f"the question is {len(question):,} characters; ask one question of at most {MAX_QUESTION_CHARS:,} "
                "characters (the model was trained on one-line questions)"
            )
        )
    return question.strip()


def stream_generate(model, slide_embedding, prompt: str, config) -> Iterator[str]:
    """Generator of the text so far; returns the final text. Closing it stops decoding."""
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

    if model.lm is None:
        raise ValueError(
            (
                "this model has no language model (a retrieval model, PathAlign-R); pick a generation model "
                "(PathAlign-G, e.g. 'embedded') to draft or answer"
            )
        )
    if config.num_beams > 1:  # transformers cannot stream beam search
        text = model.generate(slide_embedding, prompt, config)
        yield text
        return text
    lm = model.lm
    stop = threading.Event()

    class _Stop(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            return stop.is_set()

    streamer = TextIteratorStreamer(lm.tokenizer, skip_prompt=False, skip_special_tokens=True, timeout=120)
    soft = model.soft_prompt(slide_embedding)  # (1, Q, dim)
    errors: list = []

    def run():
        try:
            with torch.no_grad():
                lm.generate(soft, prompt, config, streamer=streamer, stopping_criteria=StoppingCriteriaList([_Stop()]))
        except Exception as exc:  # reported in the consumer's thread
            errors.append(exc)
            streamer.end()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    text = ""
    try:
        for chunk in streamer:
            text += chunk
            yield text.strip()
    finally:
        stop.set()
        thread.join()
    if errors:
        raise errors[0]
    return text.strip()


def build_statements(
    analysis, text: str, context: str = "", prompt: str = "Final diagnosis:", own_words: bool = True
) -> list[Statement]:
    """Sentences of ``text`` (which followed ``prompt``) with support (their claims) and evidence heatmaps.

    ``context`` (an answer's question) is read with each sentence: "Yes." alone says nothing,
    "Is tumour present? Yes." does.
    """
    from napari_pathalign.reporting.claims import checker_of

    sentences = split_sentences(text)
    if not sentences:
        return []
    emb = analysis.embedding("retrieval").embedding  # (Q, E)
    ref_sims = (
        emb @ analysis.text_embeddings(reference_sentences(getattr(analysis, "ontology", None)), "retrieval").T
    ).max(0)  # (R,) encoded once per analysis
    read = [f"{context} {s}".strip() for s in sentences]
    sims = (emb @ analysis.text_embeddings(read, "retrieval").T).max(
        0
    )  # (S,) cached: the attribution below reuses them
    claims = checker_of(analysis).check(sentences, prompt, context or None, own_words=own_words)
    attributions = analysis.similarity_attribution(read, "retrieval")
    scope = analysis_in_scope(analysis)
    out = []
    for sentence, full, sim, checked, attribution in zip(sentences, read, sims, claims, attributions):
        heatmap = analysis.text_heatmap(full)
        top = heatmap.top_patches(TOP_PATCHES)
        checked = [cap_claim(c, scope) for c in checked]
        support = min(c.probability for c in checked) if checked else float((ref_sims < sim).mean())
        support = cap_support(support, scope)
        measured = [c for c in checked if c.per_patch is not None]
        weakest = min(measured, key=lambda c: c.probability) if measured else None
        measurement = (
            None
            if weakest is None
            else analysis.heatmap(
                weakest.per_patch,
                "measurement",
                f"what '{weakest.phrase}' was measured on: each patch's probability of {weakest.measured_of}",
                claim=weakest.phrase,
            )
        )
        out.append(
            Statement(
                sentence,
                float(support),
                float(sim),
                Evidence(heatmap, top, heatmap.xy_level0[top], attribution, measurement),
                checked,
            )
        )
    return out


def analysis_in_scope(analysis):
    """The analysis's ``InScope``, or None (no in-scope model for its encoder, or an analysis without one)."""
    fn = getattr(analysis, "in_scope", None)
    return fn() if callable(fn) else None


def cap_claim(claim, scope):
    """On an out-of-scope slide a claim's probability is at most the slide's in-scope probability."""
    from dataclasses import replace

    capped = cap_support(claim.probability, scope)
    if capped >= claim.probability:
        return claim
    return replace(
        claim,
        probability=capped,
        basis=f"{claim.basis}; capped at the slide's in-scope probability {scope.score:.2f}: OUT OF SCOPE",
    )


def out_of_scope_statement(scope, answer: bool = False) -> str:
    """'' in scope; otherwise the plain statement a draft (or answer) begins with."""
    if scope is None or not getattr(scope, "flagged", False):
        return ""
    if answer:
        return (
            f"This tissue is outside what the model was trained on (in-scope probability {scope.score:.2f}), "
            "so the model does not answer questions about it."
        )
    return (
        f"OUT OF SCOPE: this tissue is outside what the model was trained on (in-scope probability "
        f"{scope.score:.2f}); the draft below is not reliable and must not be used as a diagnosis."
    )


def claim_dict(c) -> dict:
    return {
        "kind": c.kind,
        "value": c.value,
        "phrase": c.phrase,
        "probability": round(c.probability, 4),
        "measured": None if c.measured is None else round(c.measured, 4),
        "basis": c.basis,
    }


def provenance(analysis, prompt: str, config) -> Provenance:
    from dataclasses import asdict
    from datetime import datetime, timezone

    from napari_pathalign.engine.features import slide_fingerprint
    from napari_pathalign.engine.library_build import model_identity

    scope = analysis_in_scope(analysis)
    g = model_identity(analysis.models["generation"], analysis.encoder)
    r = model_identity(analysis.models["retrieval"], analysis.encoder)
    return Provenance(
        g["model"],
        g["model_hash"],
        r["model"],
        r["model_hash"],
        g["encoder"],
        g["encoder_hash"],
        str(analysis.slide.path),
        slide_fingerprint(analysis.slide.path),
        prompt,
        asdict(config),
        datetime.now(timezone.utc).isoformat(timespec="seconds"),
        None if analysis.polygon_xy_level0 is None else np.asarray(analysis.polygon_xy_level0).tolist(),
        None if scope is None else scope.to_dict(),
    )


def iter_generate(
    analysis, prompt: str, config, question: str | None = None, history_used: bool = False, note: str = ""
) -> Iterator[str]:
    """Stream the generation model's text after ``prompt``; return a ``Draft`` with evidence."""
    start = time.perf_counter()
    text = yield from stream_generate(analysis.models["generation"], analysis.embedding("generation"), prompt, config)
    draft = Draft(
        text,
        build_statements(analysis, text, question or "", prompt),
        provenance(analysis, prompt, config),
        question,
        history_used,
        note,
    )
    draft.extra["seconds"] = round(time.perf_counter() - start, 3)
    distribution = getattr(analysis, "in_distribution", None)
    draft.in_distribution = distribution() if callable(distribution) else None
    draft.in_scope = analysis_in_scope(analysis)
    if draft.in_scope is not None and draft.in_scope.flagged:
        draft.note = draft.in_scope.explanation + (" " + draft.note if draft.note else "")
    elif draft.in_scope is None and draft.in_distribution is not None and getattr(draft.in_distribution, "warn", False):
        draft.note = (draft.note + " " if draft.note else "") + draft.in_distribution.explanation
    analysis.statements.extend(draft.sentences)
    return draft


def iter_draft(analysis, config=None, prompt: str = "Final diagnosis:"):
    """Generator of the draft so far (text, token by token); returns a ``Draft`` with support and evidence."""
    from napari_pathalign.models.decoder import GenerationConfig

    analysis.need_ready()
    if not isinstance(prompt, str):
        raise ValueError(f"the prompt must be text, got {prompt!r}")
    return (yield from iter_generate(analysis, prompt, config or GenerationConfig()))


def iter_answer(analysis, question: str, history: list | None = None, config=None):
    """Generator of the answer so far; returns an ``Answer`` (a Draft with ``question``) with evidence.

    The question is understood first (``reporting/questions.py``): a closed question (is X present,
    which subtype, how much, the background, where) is answered by choice among its alternatives, each
    scored by the model (``reporting/answering.py``), in a full sentence with its probability and its
    evidence map. An open question is answered by the LM; its support counts only claims about what was
    asked. A question the model cannot answer from the slide, or any question on an out-of-scope slide,
    gets "I can't answer that from this slide" and ``answered`` False.

    ``history``: earlier (question, answer) pairs. A follow-up ("And how much?") takes what it lacks
    from them; the model itself sees them only when its checkpoint says it was trained with them.
    """
    from napari_pathalign.models.decoder import GenerationConfig
    from napari_pathalign.reporting.answering import addresses, unknown_to_model
    from napari_pathalign.reporting.questions import understand

    analysis.need_ready()
    question = check_question(question)
    history = list(history or [])
    intent = understand(question, getattr(analysis, "ontology", None), history)
    config = config or GenerationConfig(max_new_tokens=32)
    scope = analysis_in_scope(analysis)
    note = ""
    if intent.from_history:
        note = f"read with the conversation: understood as '{intent.understood_as}'"
    if scope is not None and scope.flagged:
        return (yield from _not_answered(analysis, question, intent, scope.explanation, config, scope))
    if intent.kind == "unanswerable":
        return (yield from _not_answered(analysis, question, intent, intent.reason, config, scope))
    if intent.kind != "open":
        unknown = unknown_to_model(analysis, intent)
        if unknown:
            return (yield from _not_answered(analysis, question, intent, unknown, config, scope))
        return (yield from _closed_answer(analysis, question, intent, config, note))
    uses = bool(history) and trained_with_history(analysis.models["generation"])
    prompt = " ".join(f"{q} {a}" for q, a in history) + " " + question if uses else question
    answer = yield from iter_generate(analysis, prompt.strip(), config, question=question, history_used=uses, note=note)
    answer.intent = intent.to_dict()
    relevant = [c for s in answer.sentences for c in addresses(intent, s.claims)]
    if not relevant:  # it names nothing the model can check about what was asked: no support
        for s in answer.sentences:
            s.support = 0.0
            s.claims = []
        answer.answered = False
        answer.note = "This answer states nothing the model can check about what was asked, so it has no support." + (
            " " + answer.note if answer.note else ""
        )
    return answer


CANT_ANSWER = "I can't answer that from this slide"


def _not_answered(analysis, question: str, intent, reason: str, config, scope):
    """An answer that says why the model does not answer (no sentence, no support)."""
    text = f"{CANT_ANSWER}: {reason.rstrip('.')}." if not (scope is not None and scope.flagged) else f"{CANT_ANSWER}."
    yield text
    answer = Draft(text, [], provenance(analysis, question, config), question)
    answer.intent, answer.answered, answer.in_scope = intent.to_dict(), False, scope
    return answer


def _closed_answer(analysis, question: str, intent, config, note: str):
    """A closed question answered by choice: one sentence, its probability, its evidence map."""
    from napari_pathalign.reporting.answering import answer_closed
    from napari_pathalign.reporting.claims import Claim

    yield ""
    start = time.perf_counter()
    closed = answer_closed(analysis, intent, question)
    yield closed.text
    emb = analysis.embedding("retrieval").embedding
    sim = float((emb @ analysis.text_embeddings([f"{question} {closed.text}"], "retrieval").T).max())
    claim = Claim(
        "answer",
        closed.choice,
        closed.text,
        0,
        len(closed.text),
        probability=float(closed.probability),
        basis=closed.basis,
        per_patch=closed.per_patch,
        measured_of=closed.measured_of,
    )
    if closed.per_patch is not None:
        heatmap = analysis.heatmap(
            closed.per_patch,
            "measurement",
            f"'{question}': each patch's probability of {closed.measured_of}",
            claim=closed.text,
        )
    else:
        heatmap = analysis.text_heatmap(f"{question} {closed.text}")
    top = heatmap.top_patches(TOP_PATCHES)
    statement = Statement(
        closed.text,
        float(closed.probability),
        sim,
        Evidence(heatmap, top, heatmap.xy_level0[top], None, heatmap if closed.per_patch is not None else None),
        [claim],
    )
    answer = Draft(
        closed.text, [statement], provenance(analysis, question, config), question, intent.from_history, note
    )
    answer.intent, answer.answered = intent.to_dict(), True
    answer.extra["alternatives"] = {
        k: round(float(v), 4) for k, v in closed.alternatives.items() if not k.startswith("_")
    }
    answer.extra["seconds"] = round(time.perf_counter() - start, 3)
    answer.in_scope = analysis_in_scope(analysis)
    distribution = getattr(analysis, "in_distribution", None)
    answer.in_distribution = distribution() if callable(distribution) else None
    analysis.statements.append(statement)
    return answer


def statements_at(analysis, xy_level0) -> PatchStatements | None:
    """What the drafts and answers say about one place: their sentences ranked by how much this
    patch supports each (its percentile in the sentence's evidence map), and the patch's zero-shot
    class probabilities. None off the analysed patches."""
    from napari_pathalign.core.heatmap import patch_at

    analysis.need_ready()
    f = analysis.features
    i = patch_at(f.xy_level0, f.size_level0, xy_level0)
    if i is None:
        return None
    ranked = []
    for s in analysis.statements:
        v = s.evidence.heatmap.raw_values
        ranked.append((s, float((v < v[i]).mean())))
    ranked.sort(key=lambda sv: -sv[1])
    if analysis.cache.get("default_zero_shot") is None:  # a click in the dock asks this: compute the class maps once
        analysis.cache["default_zero_shot"] = analysis.zero_shot()
    z = analysis.cache["default_zero_shot"]
    return PatchStatements(i, f.xy_level0[i].copy(), ranked, {c: float(h.values[i]) for c, h in z.heatmaps.items()})


def trained_with_history(model) -> bool:
    """Whether a checkpoint says its VQA training saw earlier turns (config extra 'vqa_history')."""
    return bool((getattr(model, "checkpoint_meta", {}) or {}).get("extra", {}).get("vqa_history", False))


def case_report(parts: list[tuple[str, str]]) -> str:
    """One report for a case of several slides: lettered parts, as ``train/reports.py`` reads them back."""
    if not parts:
        raise ValueError("a case report needs at least one part (label, text)")
    if len(parts) == 1:
        return "FINAL DIAGNOSIS:\n" + parts[0][1].strip()
    return "FINAL DIAGNOSIS:\n" + "\n".join(f"{label}. {text.strip()}" for label, text in parts)
