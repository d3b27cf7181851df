"""Reading questions however they are worded (reporting/questions.py), measured on the bank's held-out half."""

from __future__ import annotations

import pytest

from napari_pathalign.eval.question_bank import bank_questions, understanding_accuracy
from napari_pathalign.reporting.ontology import Ontology, OntologyError, load_ontology
from napari_pathalign.reporting.questions import ANY_TUMOUR, load_bank, mentions, understand


def test_the_bank_has_enough_wordings_and_its_halves_do_not_meet():
    bank = load_bank()
    for kind, halves in bank["intents"].items():
        assert len(halves["fit"]) + len(halves["held_out"]) >= 15, kind
        assert len(halves["held_out"]) >= 8, kind
        fit = {w.lower() for w in halves["fit"]}
        assert not fit & {w.lower() for w in halves["held_out"]}, kind


def test_held_out_wordings_are_understood():
    """Accuracy (kind and class right) on wordings never fitted; the issue's goal is 0.85 for the closed ones."""
    result = understanding_accuracy(bank_questions("held_out"))
    for kind in ("presence", "subtype", "extent"):
        assert result[kind]["accuracy"] >= 0.85, (kind, result[kind]["misread"][:5])
    for kind in ("background", "where", "open", "unanswerable"):
        assert result[kind]["accuracy"] >= 0.75, (kind, result[kind]["misread"][:5])
    # the fit half is read back (the classifier is not degenerate), and the held-out one is not trivially so
    fit = understanding_accuracy(bank_questions("fit"))
    assert all(row["accuracy"] >= 0.9 for row in fit.values())


@pytest.mark.parametrize(
    "question, kind, target",
    [
        ("Is there tumour in this slide?", "presence", ANY_TUMOUR),
        ("Is there metastatic carcinoma?", "presence", "metastatic carcinoma"),
        ("Does this lymph node contain metastasis?", "presence", "metastatic carcinoma"),
        ("Any SCC?", "presence", "squamous cell carcinoma"),
        ("Is there squamous cell carcinoma?", "presence", "squamous cell carcinoma"),
        ("Which subtype is this?", "subtype", ANY_TUMOUR),
        ("How much of the tissue is tumor?", "extent", ANY_TUMOUR),
        ("Where is the adenocarcinoma?", "where", "adenocarcinoma"),
        ("Which tissues are present?", "background", None),
        ("What is the diagnosis?", "open", None),
        ("What is the patient's age?", "unanswerable", None),
        ("Is the margin clear?", "unanswerable", None),
        ("Is there lymphovascular invasion?", "unanswerable", None),
    ],
)
def test_questions_of_the_issue(question, kind, target):
    intent = understand(question)
    assert intent.kind == kind and intent.target == target, intent
    assert intent.understood_as and intent.to_dict()["kind"] == kind


def test_two_types_named_make_a_choice_and_unknown_things_are_not_answered():
    intent = understand("Is this adenocarcinoma or squamous cell carcinoma?")
    assert intent.kind == "subtype" and intent.choices == ("adenocarcinoma", "squamous cell carcinoma")
    assert "adenocarcinoma or squamous cell carcinoma" in intent.understood_as
    unknown = understand("Is there a granuloma?")  # presence of something no class of the ontology is
    assert unknown.kind == "unanswerable" and "names nothing" in unknown.reason
    assert understand("What is the weather like?").kind == "unanswerable"


def test_follow_ups_resolve_against_the_conversation():
    history = [("Is there tumour?", "Yes — metastatic carcinoma.")]
    how_much = understand("And how much?", history=history)
    assert how_much.kind == "extent" and how_much.target == ANY_TUMOUR and how_much.from_history
    where = understand("Where?", history=[("Is there metastasis?", "Yes.")])
    assert where.kind == "where" and where.target == "metastatic carcinoma" and where.from_history
    other = understand("What about SCC?", history=[("Is there adenocarcinoma?", "No.")])
    assert other.kind == "presence" and other.target == "squamous cell carcinoma" and other.from_history
    # a question that names what it asks is not bent by the conversation
    own = understand("Is there adenocarcinoma?", history=[("How much tumour is there?", "10 %")])
    assert own.kind == "presence" and own.target == "adenocarcinoma" and not own.from_history
    # follow-up questions of the held-out half, after a presence question
    follow = [q for q in bank_questions("held_out") if q.history]
    right = [understand(q.question, history=q.history) for q in follow]
    assert sum(i.kind == q.kind and i.target == q.target for i, q in zip(right, follow)) / len(follow) >= 0.8


def test_a_second_ontology_is_understood_in_its_own_words():
    doc = {
        "name": "breast-test",
        "version": 1,
        "tumour_words": ["malignancy", "cancer"],
        "extent": [{"name": "any", "upper": 1.0, "phrases": ["involved"]}],
        "organs": [
            {
                "name": "breast",
                "words": ["breast", "mammary"],
                "classes": [
                    {
                        "name": "invasive ductal carcinoma",
                        "tumour": True,
                        "phrases": ["invasive ductal carcinoma"],
                        "synonyms": ["IDC", "ductal cancer"],
                    },
                    {
                        "name": "invasive lobular carcinoma",
                        "tumour": True,
                        "phrases": ["invasive lobular carcinoma"],
                        "synonyms": ["ILC"],
                    },
                    {"name": "benign breast", "tumour": False, "phrases": ["benign breast tissue"]},
                ],
            }
        ],
    }
    onto = Ontology.from_dict(doc)
    assert [m.value for m in mentions("Is there IDC or ILC?", onto)] == [
        "invasive ductal carcinoma",
        "invasive lobular carcinoma",
    ]
    assert understand("Do you see ductal cancer?", onto).target == "invasive ductal carcinoma"
    choice = understand("Is it IDC or ILC?", onto)
    assert choice.kind == "subtype" and choice.choices == ("invasive ductal carcinoma", "invasive lobular carcinoma")
    assert understand("Any malignancy in this breast?", onto).target == ANY_TUMOUR
    assert Ontology.from_dict(onto.to_dict()).organs[0].classes[0].synonyms == ("IDC", "ductal cancer")
    bad = dict(doc, tumour_words="cancer")
    with pytest.raises(OntologyError, match="tumour_words"):
        Ontology.from_dict(bad)


def test_the_shipped_ontology_names_what_chat_needs():
    onto = load_ontology()
    assert onto.tumour_words and all(c.synonyms for o in onto.organs for c in o.tumour_classes)
