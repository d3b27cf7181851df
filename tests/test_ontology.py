"""The report ontology: the schema's errors name the field, claims are found in the ontology's own
words (longest first, negation-aware), and the shipped ontology covers the demo writer's phrases."""

from __future__ import annotations

import copy
import json

import pytest

from napari_pathalign.reporting.ontology import Ontology, OntologyError, load_ontology

# a domain the code never mentions: a made-up gland with two tumour subtypes and one background tissue
GLAND = {
    "name": "glandula-test",
    "version": 1,
    "extent": [
        {"name": "limited", "upper": 0.2, "phrases": ["a limited portion"]},
        {"name": "diffuse", "upper": 1.0, "phrases": ["diffuse replacement"]},
    ],
    "organs": [
        {
            "name": "glandula",
            "words": ["glandula", "glandular core"],
            "negative_phrases": ["benign glandula", "no neoplasm"],
            "classes": [
                {"name": "spindle neoplasm", "tumour": True, "phrases": ["spindle neoplasm", "fusiform tumour"]},
                {
                    "name": "clear-cell neoplasm",
                    "tumour": True,
                    "phrases": ["clear-cell neoplasm"],
                    "prompts": ["clear cells"],
                },
                {"name": "acini", "tumour": False, "phrases": ["normal acini", "acinar tissue"]},
            ],
        }
    ],
}


def claims(onto, sentence):
    return [(c.kind, c.value, c.phrase) for c in onto.find_claims(sentence)]


def test_claims_in_the_ontologys_own_words():
    onto = Ontology.from_dict(GLAND)
    assert claims(onto, "Glandula, core: Fusiform tumour, diffuse replacement (about 65%).") == [
        ("diagnosis", "spindle neoplasm", "Fusiform tumour"),
        ("extent", "diffuse", "diffuse replacement"),
        ("extent", "diffuse", "65%"),
    ]
    assert claims(onto, "BENIGN GLANDULA.") == [("negative", "tumour", "BENIGN GLANDULA")]  # case-insensitive
    # negation of a class, before or after it, within its clause only
    assert claims(onto, "No clear-cell neoplasm is seen; normal acini.") == [
        ("negative", "clear-cell neoplasm", "clear-cell neoplasm"),
        ("tissue", "acini", "normal acini"),
    ]
    assert claims(onto, "Spindle neoplasm is not identified.")[0][:2] == ("negative", "spindle neoplasm")
    assert claims(onto, "Without any residual spindle neoplasm.")[0][:2] == ("negative", "spindle neoplasm")
    assert claims(onto, "Neoplasm not seen in the acinar tissue.") == [("tissue", "acini", "acinar tissue")]
    assert claims(onto, "The specimen is received in formalin.") == []
    assert onto.bucket(0.1) == "limited" and onto.bucket(0.2) == "diffuse" and onto.bucket(0) is None
    assert onto.organ("glandula").zero_shot_classes()["clear-cell neoplasm"] == ["clear cells"]
    assert onto.organ("glandula").zero_shot_classes()["acini"] == ["normal acini", "acinar tissue"]  # phrases serve
    assert Ontology.from_dict(onto.to_dict()) == onto


def test_longest_phrase_wins_and_spans_do_not_overlap():
    onto = load_ontology()
    found = onto.find_claims("Lymph node, sentinel, excision: Negative for metastatic carcinoma.")
    assert [(c.kind, c.value) for c in found] == [("negative", "tumour")]
    found = onto.find_claims("Involved by metastatic carcinoma; the rest is nodal lymphoid parenchyma.")
    assert [(c.kind, c.value, c.organs) for c in found] == [
        ("diagnosis", "metastatic carcinoma", ("lymph node",)),
        ("tissue", "lymphoid tissue", ("lymph node",)),
    ]
    shared = onto.find_claims("No tumour identified.")[0]
    assert shared.kind == "negative" and set(shared.organs) == {"lymph node", "colon", "lung"}  # text or slide decides


def test_the_demo_writer_words_every_tile_source_with_the_shipped_ontology():
    """The writer holds no phrase of its own: each tile source maps to an ontology organ whose class labels
    are exactly the source's class-map labels, so every written phrase is one the ontology reads back."""
    from napari_pathalign.demo.report_writer import load_writer
    from napari_pathalign.train.tile_sources import KATHER_CLASSES, LUNG_CLASSES

    writer = load_writer()
    assert writer.ontology == load_ontology()
    labels = {"pcam": {"normal", "tumour"}, "kather": set(KATHER_CLASSES), "lung": set(LUNG_CLASSES)}
    for source, spec in writer.config["sources"].items():
        organ = writer.ontology.organ(spec["organ"])
        assert {c.label for c in organ.classes} == labels[source], source
        assert organ.negative_phrases, source
        assert writer.ontology.organs_named(spec["specimen"]) == (organ.name,), source
    lung = writer.ontology.organ("lung")
    assert [c.name for c in lung.tumour_classes] == ["adenocarcinoma", "squamous cell carcinoma"]
    assert [c.name for c in lung.tissue_classes] == ["benign lung"]


def _broken(edit):
    doc = copy.deepcopy(GLAND)
    edit(doc)
    return doc


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda d: d.pop("extent"), "the top level: 'extent' is a required property"),
        (lambda d: d["organs"][0].pop("words"), r"organs\[0\]: 'words' is a required property"),
        (lambda d: d["organs"][0]["classes"][1].update(tumour="yes"), r"organs\[0\].classes\[1\].tumour: 'yes'"),
        (lambda d: d["organs"][0].update(classes=[]), r"organs\[0\].classes: \[\] should be non-empty"),
        (
            lambda d: d["organs"][0]["classes"][2]["phrases"].append("fusiform tumour"),
            r"organs\[0\].classes\[2\].phrases: the phrase 'fusiform tumour' also stands for class 'spindle neoplasm'",
        ),
        (
            lambda d: d["organs"][0]["negative_phrases"].append("normal acini"),
            r"the phrase 'normal acini' also stands for",
        ),
        (lambda d: d["extent"][1].update(upper=0.1), r"extent\[1\] \('diffuse'\) has upper 0.1, not above"),
        (lambda d: d["extent"][1].update(upper=0.9), "it must reach 1.0"),
        (lambda d: d["organs"].append(copy.deepcopy(d["organs"][0])), "two organs share a name"),
        (lambda d: d.update(colour="blue"), "Additional properties are not allowed"),
    ],
)
def test_a_malformed_ontology_names_the_field(edit, message):
    with pytest.raises(OntologyError, match=message):
        Ontology.from_dict(_broken(edit), "test.json")


def test_bad_files_say_what_is_accepted(tmp_path):
    with pytest.raises(OntologyError, match="does not exist"):
        load_ontology(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"name": "x",')
    with pytest.raises(OntologyError, match=r"not valid JSON \(line 1"):
        load_ontology(bad)
    bad.write_bytes(b"\xff\xfe{}")
    with pytest.raises(OntologyError, match="not UTF-8"):
        load_ontology(bad)
    bad.write_text(" " * 3_000_000)
    with pytest.raises(OntologyError, match="an ontology is a small JSON file"):
        load_ontology(bad)
    good = tmp_path / "gland.json"
    good.write_text(json.dumps(GLAND))
    assert load_ontology(good).organ("glandula").tumour_classes[1].name == "clear-cell neoplasm"


def test_zero_shot_class_sets_come_from_the_ontology():
    sets, default = Ontology.from_dict(GLAND).class_sets()
    assert default == "diagnosis" and set(sets) == {"diagnosis", "glandula"}
    assert sets["diagnosis"] == {
        "tumour": ["spindle neoplasm", "fusiform tumour", "clear cells"],
        "no tumour": ["benign glandula", "no neoplasm"],
    }
    assert sets["glandula"]["clear-cell neoplasm"] == ["clear cells"]
    embedded, _ = load_ontology().class_sets()
    assert (
        set(embedded) == {"diagnosis", "lymph node", "colon", "lung"}
        and "no tumour identified" in embedded["diagnosis"]["no tumour"]
    )


@pytest.mark.parametrize(
    "sentence, expected",
    [
        ("Metastatic carcinoma is\nnot identified.", [("negative", "metastatic carcinoma")]),  # hard-wrapped
        ("Metastatic\xa0carcinoma is present.", [("diagnosis", "metastatic carcinoma")]),  # a no-break space
        ("Metastatic carcinoma: not identified.", [("negative", "metastatic carcinoma")]),  # synoptic form
        ("Adenocarcinoma is not well differentiated.", [("diagnosis", "adenocarcinoma")]),  # "not" of a grade
        ("Cannot rule out metastatic carcinoma.", []),  # uncertainty claims neither way
        ("Metastatic carcinoma not excluded.", []),
        ("No extensive involvement.", []),  # a negated bucket names none
        ("No adenocarcinoma or fibrous stroma seen.", [("negative", "adenocarcinoma"), ("negative", "stroma")]),
        ("Tumour <10% of the tissue.", [("extent", "small")]),
        ("Tumour 5-10%.", [("extent", "small")]),
        ("Tumour between 10% and 30%.", [("extent", "moderate")]),
        ("Ki-67 index 80%.", []),  # a percentage not about the tumour
        ("Benign colonic mucosa, 60% of the tissue.", [("tissue", "mucosa")]),
    ],
)
def test_hard_cases_of_negation_wrapping_and_percentages(sentence, expected):
    assert [(c.kind, c.value) for c in load_ontology().find_claims(sentence)] == expected


def test_classes_of_an_organ_need_their_own_labels():
    doc = copy.deepcopy(GLAND)
    for c in doc["organs"][0]["classes"][:2]:
        c["label"] = "tumour"
    with pytest.raises(OntologyError, match="two classes share a label"):
        Ontology.from_dict(doc)
    doc = _broken(lambda d: d["extent"][0]["phrases"].append("   "))
    with pytest.raises(OntologyError, match=r"extent\[0\].phrases\[1\]"):
        Ontology.from_dict(doc)
