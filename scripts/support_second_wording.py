"""Support AUC on held-out demo slides, for sentences in the demo writer's wording and in a second
wording it never uses (``examples/second_ontology.json``): does support separate true from false
claims when a department words its reports its own way?

For each held-out slide, true and false sentences are written from its known composition, one claim
each: the diagnosis (the organ's tumour class, and the other organ's), for lung each subtype (true
where it is on the slide), a negative phrase, a class negated ("No <class> is seen"), the extent
bucket (true and a wrong one), and background tissues (named at >= 10 % of the tissue: true;
absent: false). Each sentence is checked on its own after the
specimen line (``SlideAnalysis.check``) with the ontology it is worded in. Nothing is fitted here.

    python scripts/support_second_wording.py [--data demo-data/test] [--slides 40]
    (the data: make_demo_data(Path('../shared/data/tiles'), Path('demo-data'), slides=360, seed=0,
     splits=('test',), test_slides=40), built when missing)
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
ORGAN_OF = {"pcam": "lymph node", "kather": "colon", "lung": "lung"}
SPECIMEN = {
    "pcam": "Lymph node, sentinel, excision:",
    "kather": "Colon, sigmoid, resection:",
    "lung": "Lung, right upper lobe, lobectomy:",
}
TEMPLATES = {  # a sentence around each kind of phrase; {p} the phrase, {P} capitalised
    "diagnosis": ["{P} is present.", "The specimen shows {p}.", "There is {p}."],
    "negative": ["{P}.", "Overall: {p}."],
    "class_negated": ["No {p} is seen.", "There is no {p}."],
    "extent": ["The neoplastic component represents {p}.", "Tumour: {p}."],
    "tissue": ["The background comprises {p}.", "Also seen: {p}."],
}


def sentences_for(onto, source: str, fractions: dict, tumour_fraction: float, rng) -> list[tuple[str, str, bool]]:
    """(sentence, kind, true?) for one slide, in ``onto``'s wording."""
    pick = lambda xs: xs[int(rng.integers(len(xs)))]  # noqa: E731

    def say(kind: str, phrase: str) -> str:
        clause = any(w in f" {phrase} " for w in (" is ", " are ", "positive ", "involved ", "negative ", " no "))
        t = "{P}." if clause else pick(TEMPLATES[kind])  # a phrase that is already a clause stands alone
        return t.format(p=phrase, P=phrase[:1].upper() + phrase[1:])

    def noun(c) -> str:  # a phrase of the class that can follow "No ..."
        return next(
            (p for p in c.phrases if not any(w in f" {p} " for w in (" is ", "positive ", "involved "))), c.name
        )

    organ = onto.organ(ORGAN_OF[source])
    other = next(o for o in onto.organs if o.name != organ.name)
    present = tumour_fraction > 0
    tumour = organ.tumour_classes[0]
    out = [
        (say("diagnosis", pick(tumour.phrases)), "diagnosis", present),
        (say("diagnosis", pick(other.tumour_classes[0].phrases)), "diagnosis", False),  # the wrong organ's tumour
        (say("negative", pick(organ.negative_phrases)), "negative", not present),
        (say("class_negated", noun(tumour)), "negative", not present),
    ]
    if len(organ.tumour_classes) > 1:  # subtypes (lung): each one named, true where it is on the slide
        for c in organ.tumour_classes:
            out.append((say("diagnosis", pick(c.phrases)), "subtype", fractions.get(c.label, 0.0) > 0))
    if present:
        right = onto.bucket(tumour_fraction)
        wrong = pick([b.name for b in onto.extent if b.name != right])
        for name, truth in ((right, True), (wrong, False)):
            out.append((say("extent", pick(next(b for b in onto.extent if b.name == name).phrases)), "extent", truth))
    named = [c for c in organ.tissue_classes if fractions.get(c.label, 0.0) >= 0.10]
    absent = [c for c in organ.tissue_classes if fractions.get(c.label, 0.0) == 0.0]
    absent += [c for c in other.tissue_classes if c.label not in {x.label for x in organ.classes}]
    for c in list(rng.permutation(named))[:2]:
        out.append((say("tissue", pick(c.phrases)), "tissue", True))
    for c in list(rng.permutation(absent))[:2]:
        out.append((say("tissue", pick(c.phrases)), "tissue", False))
    return out


def main() -> None:
    from napari_pathalign.core.metrics import auc
    from napari_pathalign.eval.bootstrap import bootstrap_ci
    from napari_pathalign.eval.evaluate import read_truth
    from napari_pathalign.io import open_slide
    from napari_pathalign.reporting.analysis import SlideAnalysis
    from napari_pathalign.reporting.ontology import load_ontology

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT / "demo-data" / "test")
    parser.add_argument("--slides", type=int, default=40)
    parser.add_argument("--out", type=Path, help="write every checked sentence as JSON lines here")
    args = parser.parse_args()
    if not (args.data / "slides.csv").is_file():
        from napari_pathalign.demo.data import make_demo_data

        print(f"building the held-out demo slides in {args.data.parent} ...")
        make_demo_data(
            ROOT.parent / "shared" / "data" / "tiles",
            args.data.parent,
            slides=360,
            seed=0,
            splits=("test",),
            test_slides=40,
        )
    rows, truths, _ = read_truth(args.data)
    wordings = {
        "writer's wording": load_ontology(),
        "second wording": load_ontology(ROOT / "examples" / "second_ontology.json"),
    }
    records = []
    rng = np.random.default_rng(0)
    from tqdm import tqdm

    for i, (row, truth) in enumerate(tqdm(list(zip(rows, truths))[: args.slides], desc="slides", unit="slide")):
        analysis = SlideAnalysis(open_slide(args.data / row["slide"]), cache_dir=args.data / "features")
        for _ in analysis.iter_prepare():
            pass
        for wording, onto in wordings.items():
            analysis.ontology_spec = onto
            analysis.cache.pop("claim_checker", None)  # its claims are read with this ontology
            for sentence, kind, true in sentences_for(onto, truth.source, truth.fractions, truth.tumour_fraction, rng):
                try:
                    checked = analysis.check(f"{SPECIMEN[truth.source]}\n{sentence}").sentences[-1]
                except ValueError:  # no claim found in the sentence: counted as not found
                    checked = None
                records.append(
                    {
                        "slide": i,
                        "wording": wording,
                        "sentence": sentence,
                        "kind": kind,
                        "true": true,
                        "found": bool(checked is not None and checked.claims),
                        "support": float(checked.support) if checked is not None and checked.claims else None,
                        "claims": []
                        if checked is None
                        else [(c.kind, c.value, round(c.probability, 4)) for c in checked.claims],
                    }
                )
    if args.out:
        from napari_pathalign.core.atomic import atomic_write_text

        atomic_write_text(args.out, "".join(json.dumps(r) + "\n" for r in records))
    print(
        f"\n{min(args.slides, len(rows))} held-out slides ({args.data}); "
        "AUC of support, true vs false sentences [95% CI]"
    )
    print(
        "| wording | claim kind | sentences (true / false) | claim found | support AUC [95% CI] |\n"
        "|---|---|---|---|---|"
    )
    for wording in wordings:
        for kind in ("all", "diagnosis", "subtype", "negative", "extent", "tissue"):
            rs = [r for r in records if r["wording"] == wording and (kind == "all" or r["kind"] == kind)]
            found = [r for r in rs if r["found"]]
            if not found:
                continue
            score = np.array([r["support"] for r in found])
            true = np.array([r["true"] for r in found])
            slide = np.array([r["slide"] for r in found])

            def stat(idx, score=score, true=true, slide=slide):
                keep = np.concatenate([np.flatnonzero(slide == s) for s in idx])
                return auc(score[keep], true[keep])

            ci = bootstrap_ci(stat, {"idx": np.unique(slide)}, n_boot=1000)
            a = auc(score, true)
            ci_text = f"[{ci[0]:.2f}-{ci[1]:.2f}]" if ci else ""
            print(
                f"| {wording} | {kind} | {int(true.sum())} / {int((~true).sum())} | {len(found)}/{len(rs)} | "
                f"{'-' if a is None else f'{a:.2f}'} {ci_text} |"
            )


if __name__ == "__main__":
    main()
