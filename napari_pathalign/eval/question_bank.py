"""The question bank's wordings filled in with class names: (question, what it asks) to measure the
reading of questions (``reporting/questions.py``) on the half of the bank that nothing was fitted on."""

from __future__ import annotations

from dataclasses import dataclass

from napari_pathalign.reporting.questions import ANY_TUMOUR, load_bank

TUMOUR_CLASSES = ("metastatic carcinoma", "adenocarcinoma", "squamous cell carcinoma")  # fillers' tumour classes


@dataclass(frozen=True)
class BankQuestion:
    """A filled-in wording and what it asks."""

    question: str
    kind: str  # the intent kind it asks
    target: str | None  # the class it asks about (None: any, for kinds without a target)
    wording: str  # the bank's wording it was filled from
    history: tuple[str, ...] = ()  # earlier questions (follow-ups)
    negated: bool = False  # asks for absence ("Is X absent?"): 'yes' means absent


def bank_questions(half: str = "held_out", bank: dict | None = None) -> list[BankQuestion]:
    """Every wording of ``half`` ('fit' or 'held_out') filled with the bank's fillers, round robin, so that each
    wording is asked about each class it can name once, with a different surface form each time."""
    if half not in ("fit", "held_out", "blind"):
        raise ValueError(f"half is 'fit', 'held_out' or 'blind', got {half!r}")
    bank = bank or load_bank()
    fillers = bank["fillers"]
    out: list[BankQuestion] = []
    turn = 0

    def surface(value: str) -> str:
        nonlocal turn
        turn += 1
        forms = fillers[value]
        return forms[turn % len(forms)]

    negated = set(bank.get("negated_wordings", []))
    for kind, halves in bank["intents"].items():
        for w in halves.get(half, []):
            if "{class2}" in w:
                q = w.replace("{class}", surface("adenocarcinoma")).replace(
                    "{class2}", surface("squamous cell carcinoma")
                )
                out.append(BankQuestion(q, kind, ANY_TUMOUR if kind == "subtype" else None, w))
            elif "{class}" not in w:
                target = ANY_TUMOUR if kind in ("extent", "where") else None
                out.append(BankQuestion(w, kind, target, w))
            elif kind in ("presence", "where"):
                for value in fillers:
                    out.append(BankQuestion(w.replace("{class}", surface(value)), kind, value, w, (), w in negated))
            elif kind == "extent":
                for value in (ANY_TUMOUR, *TUMOUR_CLASSES):
                    out.append(BankQuestion(w.replace("{class}", surface(value)), kind, value, w))
            else:  # subtype, background, unanswerable: the class word is 'any tumour'
                target = ANY_TUMOUR if kind == "subtype" else None
                out.append(BankQuestion(w.replace("{class}", surface(ANY_TUMOUR)), kind, target, w))
    for w in bank["follow_up"].get(half, []):  # after a presence question, a follow-up asks the same of another class
        for value in TUMOUR_CLASSES:
            out.append(BankQuestion(w.replace("{class}", surface(value)), "presence", value, w, ("Is there tumour?",)))
    return out


def understanding_accuracy(questions: list[BankQuestion], ontology=None) -> dict:
    """{kind: {'n', 'kind_accuracy', 'accuracy' (kind and class right), 'misread': [(question, read as)]}}."""
    from napari_pathalign.reporting.questions import understand

    out: dict[str, dict] = {}
    for bq in questions:
        intent = understand(bq.question, ontology, bq.history)
        row = out.setdefault(bq.kind, {"n": 0, "kind_right": 0, "right": 0, "misread": []})
        row["n"] += 1
        kind_ok = intent.kind == bq.kind
        target_ok = (bq.target is None or intent.target == bq.target) and intent.negated == bq.negated
        row["kind_right"] += kind_ok
        row["right"] += kind_ok and target_ok
        if not (kind_ok and target_ok):
            row["misread"].append((bq.question, intent.kind, intent.target))
    for row in out.values():
        row["kind_accuracy"] = row.pop("kind_right") / row["n"]
        row["accuracy"] = row.pop("right") / row["n"]
    return out
