"""Check any report against the slide: the pathologist's own, a pasted one, an edited draft.

``check_report(analysis, text)`` (``SlideAnalysis.check``) reads each sentence with the analysis's
report ontology and checks its claims exactly as a draft's are checked (``reporting/claims.py``):
the same ``Statement`` objects, with claims, support and evidence maps. A sentence that states no
claim in the ontology's words is not checked, and the result says so instead of giving it a number.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

MAX_CHARS = 100_000  # a report; a longer paste is refused, not truncated


@dataclass
class ReportCheck:
    """A text checked against one slide, sentence by sentence."""

    text: str  # the text as given
    sentences: list  # Statement per sentence (reporting/drafting.py): claims, support, evidence
    ontology: str  # 'name v<version>' of the ontology the claims were read with
    provenance: object  # Provenance: models, slide fingerprint, time
    in_distribution: object | None = None  # the slide's InDistribution, when the model ships one
    in_scope: object | None = None  # the slide's InScope (models/in_scope.py), when the model ships one

    @property
    def checked(self) -> list:
        """The sentences that state at least one claim (the others carry no support)."""
        return [s for s in self.sentences if s.claims]

    @property
    def unsupported(self) -> list:
        """(sentence, claim) of every claim the slide bears out with probability under one half."""
        from napari_pathalign.reporting.drafting import LOW_SUPPORT

        return [(s, c) for s in self.sentences for c in s.claims if c.probability < LOW_SUPPORT]

    def to_dict(self) -> dict:
        """Plain JSON: per sentence its text, support (None without a claim, and why), claims, evidence."""
        from napari_pathalign.reporting.drafting import claim_dict, out_of_scope_statement

        ind = self.in_distribution
        return {
            "ontology": self.ontology,
            "provenance": asdict(self.provenance),
            "in_distribution": None if ind is None else {"score": float(ind.score), "warn": bool(ind.warn)},
            "in_scope": None if self.in_scope is None else self.in_scope.to_dict(),
            "out_of_scope": out_of_scope_statement(self.in_scope),
            "sentences": [
                {
                    "text": s.text,
                    "support": round(float(s.support), 4) if s.claims else None,
                    "why": "" if s.claims else f"no claim in the words of the ontology {self.ontology}",
                    "flagged": bool(s.claims) and s.flagged,
                    "claims": [claim_dict(c) for c in s.claims],
                    "evidence_xy_level0": s.evidence.top_xy_level0.tolist(),
                    "evidence_patch_size_level0": s.evidence.heatmap.size_level0,
                }
                for s in self.sentences
            ],
        }


def check_report(analysis, text: str, prompt: str = "Final diagnosis:") -> ReportCheck:
    """Each sentence of ``text`` with its claims checked against the prepared ``analysis``.

    ValueError for an empty or overlong text, and for one in which no sentence states anything the
    ontology can read: such a text is not presented as checked.
    """
    from napari_pathalign.reporting.drafting import analysis_in_scope, build_statements, provenance, split_sentences

    analysis.need_ready()
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"the report is empty ({text!r:.40}); paste or type the report's text")
    if len(text) > MAX_CHARS:
        raise ValueError(
            f"the report is {len(text):,} characters; a report to check is at most {MAX_CHARS:,} "
            "(check it part by part)"
        )
    if analysis.models["generation"].lm is None:
        raise ValueError(
            "this model has no language model (a retrieval model, PathAlign-R), so it cannot weigh a diagnosis; "
            "check with a generation model (PathAlign-G, e.g. 'embedded')"
        )
    onto = analysis.ontology
    name = f"'{onto.name}' v{onto.version}"
    text = _unwrap(text)
    if not split_sentences(text):
        raise ValueError("the report holds no sentence to check")
    statements = build_statements(analysis, text, "", prompt, own_words=False)
    if not any(s.claims for s in statements):
        raise ValueError(
            f"nothing in this report can be checked: no sentence names a diagnosis, a negative finding, an extent "
            f"or a tissue in the words of the ontology {name}. Check the wording, or pass the ontology your "
            "department writes with (--ontology / docs/your-own-reports.md)"
        )
    distribution = getattr(analysis, "in_distribution", None)
    ind = distribution() if callable(distribution) else None
    scope = analysis_in_scope(analysis)
    return ReportCheck(text, statements, name, provenance(analysis, prompt, _NoDecoding()), ind, scope)


def _unwrap(text: str) -> str:
    """Join hard-wrapped lines (a line that does not end a sentence or a heading continues on the next),
    so that "... is" / "not identified." is read as one sentence."""
    import re

    return re.sub(r"(?<![.!?:])[ \t]*\n[ \t]*(?=\S)", " ", text.strip())


@dataclass
class _NoDecoding:
    """A check decodes nothing: its provenance records an empty decoding."""
