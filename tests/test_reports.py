"""Part-level curation: realistic multi-part reports in the formats pathologists write."""

import pytest

from napari_pathalign.train.reports import normalise_label, part_text, split_report

LETTER_DOT = """FINAL DIAGNOSIS:
A. Colon, sigmoid, biopsy:
   - Invasive adenocarcinoma, moderately differentiated.
B. Colon, transverse, biopsy:
   - Tubular adenoma with low-grade dysplasia.
C. Rectum, biopsy:
   - Benign colonic mucosa. No dysplasia.
"""

LETTER_PAREN_SECTIONS = """FINAL DIAGNOSIS:
A) Lymph node, left axillary, excision: metastatic carcinoma in one of one lymph node (1/1).
B) Lymph node, sentinel #2, excision: one lymph node, negative for metastatic carcinoma (0/1).

GROSS DESCRIPTION:
A) Received in formalin labeled left axillary node is a 1.5 cm node.
B) Received in formalin labeled sentinel node 2 is a 0.8 cm node.
"""

PART_WORD = """PART 1: STOMACH, ANTRUM, BIOPSY -
CHRONIC GASTRITIS. NEGATIVE FOR HELICOBACTER.
PART 2: STOMACH, BODY, BIOPSY -
INTESTINAL METAPLASIA, NO DYSPLASIA.
"""

SPECIMEN_DASH = """Specimen 1 - Skin, left forearm, shave: basal cell carcinoma, nodular type, margins involved.
Specimen 2 - Skin, right cheek, punch: seborrheic keratosis.
"""

INLINE = (
    "Diagnosis: A. Prostate, left base, needle biopsy: benign prostatic tissue. B. Prostate, right "
    "apex, needle biopsy: adenocarcinoma, Gleason score 3+4=7."
)

NUMBERED_FINDINGS = """Colon, biopsy: adenocarcinoma.
Comment: features favour
2. a primary colorectal origin."""


def test_letter_dot_parts():
    parts = split_report(LETTER_DOT).parts
    assert list(parts) == ["A", "B", "C"]
    assert "adenocarcinoma" in parts["A"] and "adenoma" not in parts["A"]
    assert "Tubular adenoma" in parts["B"]
    assert parts["C"].startswith("Rectum")


def test_same_part_in_two_sections_is_joined_and_headers_dropped():
    parts = split_report(LETTER_PAREN_SECTIONS).parts
    assert list(parts) == ["A", "B"]
    assert "metastatic carcinoma in one" in parts["A"] and "1.5 cm" in parts["A"]
    assert "negative" in parts["B"] and "0.8 cm" in parts["B"]
    assert "GROSS DESCRIPTION" not in parts["A"]


def test_part_word_numbered():
    parts = split_report(PART_WORD).parts
    assert list(parts) == ["1", "2"]
    assert "GASTRITIS" in parts["1"] and "METAPLASIA" in parts["2"]


def test_specimen_dash():
    parts = split_report(SPECIMEN_DASH).parts
    assert parts["1"].startswith("Skin, left forearm") and "keratosis" in parts["2"]


def test_inline_letters_after_header():
    split = split_report(INLINE)
    assert list(split.parts) == ["A", "B"]
    assert "benign" in split.parts["A"] and "Gleason" in split.parts["B"]
    assert split.preamble == "Diagnosis:"


def test_free_text_numbers_are_not_parts():
    assert split_report(NUMBERED_FINDINGS).parts == {}
    assert split_report("Lymph node with metastatic carcinoma.").parts == {}


@pytest.mark.parametrize(
    "raw, norm", [("A", "A"), ("b.", "B"), ("Part 2", "2"), ("SPECIMEN #03", "3"), ("(c)", "C"), ("part A", "A")]
)
def test_normalise_label(raw, norm):
    assert normalise_label(raw) == norm


def test_pairing_by_part_label():
    assert "Tubular adenoma" in part_text(LETTER_DOT, "B")[0]
    assert "METAPLASIA" in part_text(PART_WORD, "B")[0]  # letter slide label, numbered report
    assert "keratosis" in part_text(SPECIMEN_DASH, "Specimen 2")[0]
    single = "Lymph node, excision: negative for tumour."
    assert part_text(single, "A") == (single, "")  # a single-part report pairs whole
    assert part_text(single, None) == (single, "")


def test_unmatched_slides_say_why():
    text, why = part_text(LETTER_DOT, "D")
    assert text is None and "'D'" in why and "A, B, C" in why
    text, why = part_text(LETTER_DOT, None)
    assert text is None and "no part label" in why
    assert part_text("   ", "A")[0] is None
