"""Where a training text states a clinical fact: the spans stage 2 can weigh more in the LM loss.

A report's facts are few tokens among many ("Metastatic carcinoma", "a moderate proportion",
"17%"); the specimen line and the connecting words are most of the loss. With
``TrainConfig.fact_weight`` above 1, the tokens inside these spans count that many times as much,
so the Q-Former learns first what the slide shows. The spans are the ontology's claims (diagnosis,
negative, extent phrase or percent, tissue) and an answer's leading "Yes" / "No".
"""

from __future__ import annotations

import re

ANSWER = re.compile(r"^\s*(yes|no|none)\b", re.IGNORECASE)  # a closed answer's own word is its fact


def fact_spans(text: str, ontology) -> list[tuple[int, int]]:
    """Character spans of ``text`` that state a fact, in reading order."""
    spans = [(c.start, c.end) for c in ontology.find_claims(text)]
    m = ANSWER.match(text)
    if m:
        spans.append(m.span(1))
    return sorted(spans)
