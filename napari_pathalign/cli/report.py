"""``pathalign draft``, ``ask`` and ``check``: a report draft, an answer, or any report checked against the slide."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from napari_pathalign.cli.common import add_slide_arguments, prepare_analysis
from napari_pathalign.reporting.drafting import iter_answer, iter_draft


def _run(gen, stream: bool):
    """Drive a draft/answer generator, printing the text as it grows; its return value."""
    from napari_pathalign.core.generators import run_to_end

    shown = [""]

    def show(text: str) -> None:
        if text.startswith(shown[0]):
            print(text[len(shown[0]) :], end="", flush=True, file=sys.stderr)
        shown[0] = text

    result = run_to_end(gen, show if stream else None)
    if stream:
        print(file=sys.stderr)
    return result


def _analysis(args):

    return prepare_analysis(args)


def _print_statements(draft) -> None:
    for s in draft.sentences:
        flag = "  LOW SUPPORT: check it" if s.flagged else ""
        print(f"  [{s.support:4.0%}] {s.text}{flag}")
        for c in s.claims:
            print(f"         {c.phrase}: {c.probability:.0%} ({c.basis})")
    if draft.note:
        print(f"note: {draft.note}")


def _draft(args) -> int:
    from napari_pathalign.models.decoder import GenerationConfig
    from napari_pathalign.reporting.drafting import case_report

    slides = [args.slide, *(args.case or [])]
    out = Path(args.out) if args.out else None
    if out is not None and out.suffix.lower() not in (".md", ".json"):
        raise ValueError(f"--out {out}: expected a .md or .json file")
    if out is not None and out.exists() and not args.overwrite:
        raise FileExistsError(f"{out} exists; pass --overwrite to replace it")
    if len(slides) > 26:
        raise ValueError(f"a case report has parts A. to Z.; got {len(slides)} slides")
    cfg = GenerationConfig(max_new_tokens=args.max_new_tokens, num_beams=args.beams, top_p=args.top_p)
    drafts = []
    for k, slide in enumerate(slides):
        if len(slides) > 1:
            print(f"part {chr(65 + k)}: {slide}", file=sys.stderr)
        drafts.append(
            _run(
                iter_draft(_analysis(argparse.Namespace(**{**vars(args), "slide": slide})), cfg, args.prompt),
                stream=not args.json,
            )
        )
    labels = [chr(65 + k) for k in range(len(drafts))]
    text = (
        drafts[0].shown_text
        if len(drafts) == 1
        else case_report([(label, d.shown_text) for label, d in zip(labels, drafts)])
    )
    if out is not None:
        from napari_pathalign.io.report_files import write_report_json, write_report_markdown

        parts = [d.to_dict() for d in drafts]
        sentences = [
            {**s, "part": label} if len(drafts) > 1 else s for label, d in zip(labels, parts) for s in d["sentences"]
        ]
        prov = (
            parts[0]["provenance"]
            if len(drafts) == 1
            else {"parts": {label: d["provenance"] for label, d in zip(labels, parts)}}
        )
        writer = write_report_json if out.suffix.lower() == ".json" else write_report_markdown
        writer(text, prov, sentences, out, overwrite=args.overwrite)
    if args.json:
        doc = drafts[0].to_dict() if len(drafts) == 1 else {"parts": {k: d.to_dict() for k, d in zip(labels, drafts)}}
        if len(drafts) > 1:
            doc["text"] = text
        print(json.dumps(doc, indent=2, ensure_ascii=False))
        return 0
    print(text)
    for label, d in zip(labels, drafts):
        if len(drafts) > 1:
            print(f"part {label}:")
        _print_statements(d)
    if out is not None:
        print(f"wrote {out}")
    return 0


def _ask(args) -> int:
    from napari_pathalign.models.decoder import GenerationConfig

    analysis = _analysis(args)
    if args.region:
        from napari_pathalign.engine.regions import rectangle

        x, y, w, h = (float(v) for v in args.region.split(","))
        analysis = analysis.region(rectangle(x, y, w, h))
    answer = _run(
        iter_answer(analysis, args.question, config=GenerationConfig(max_new_tokens=args.max_new_tokens)),
        stream=not args.json,
    )
    if args.json:
        d = answer.to_dict()
        support = min((s["support"] for s in d["sentences"]), default=None)
        print(
            json.dumps(
                {
                    "question": answer.question,
                    "answer": answer.text,
                    "intent": answer.intent,
                    "answered": answer.answered,
                    "support": support,
                    "evidence": [
                        {
                            "sentence": s["text"],
                            "support": s["support"],
                            "claims": s["claims"],
                            "xy_level0": s["evidence_xy_level0"],
                            "attribution_xy_level0": s["attribution_xy_level0"],
                            "patch_size_level0": s["evidence_patch_size_level0"],
                        }
                        for s in d["sentences"]
                    ],
                    "note": answer.note,
                    "in_scope": d["provenance"]["in_scope"],
                    "provenance": d["provenance"],
                },
                indent=2,
            )
        )
        return 0
    print(answer.shown_text)
    if answer.intent:
        print(f"(understood as: {answer.intent['understood_as']})")
    _print_statements(answer)
    return 0


def _check(args) -> int:
    from napari_pathalign.reporting.check import MAX_CHARS

    report = Path(args.report)
    if not report.is_file():
        raise FileNotFoundError(f"report file {report} does not exist; pass a text file with the report")
    if report.stat().st_size > 4 * MAX_CHARS:
        raise ValueError(
            f"{report} is {report.stat().st_size:,} bytes; a report to check is at most {MAX_CHARS:,} characters"
        )
    try:
        text = report.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"{report} is not UTF-8 text; save the report as plain text") from None
    result = prepare_analysis(args).check(text)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2, ensure_ascii=False))
        return 0
    print(
        f"{Path(args.slide).name}: {len(result.checked)} of {len(result.sentences)} sentences checked "
        f"({result.ontology})"
    )
    if result.in_scope is not None and result.in_scope.flagged:
        print(f"  {result.in_scope.banner}")
    for s in result.sentences:
        if not s.claims:
            print(f"  [   -] {s.text}  (no claim in the ontology's words)")
            continue
        flag = "  LOW SUPPORT: check it" if s.flagged else ""
        print(f"  [{s.support:4.0%}] {s.text}{flag}")
        for c in s.claims:
            print(f"         {c.kind} {c.value!r}, '{c.phrase}': {c.probability:.0%} ({c.basis})")
    return 0


def _calibrate(args) -> int:
    from napari_pathalign.core.atomic import atomic_write_text
    from napari_pathalign.core.generators import run_to_end
    from napari_pathalign.reporting.calibration import iter_calibrate

    folder = Path(args.model)
    if args.out:
        out = Path(args.out)
    elif folder.is_dir():
        out = folder / "claim_calibration.json"
    else:
        raise ValueError(f"--out is needed: {args.model!r} is no checkpoint folder to keep the calibration in")
    if out.exists() and not args.overwrite:
        raise FileExistsError(f"{out} exists; pass --overwrite to replace it")

    def analysis_of(slide):
        return prepare_analysis(argparse.Namespace(**{**vars(args), "slide": slide}), quiet=True)

    doc = run_to_end(iter_calibrate(Path(args.data), analysis_of), lambda p: print(p, file=sys.stderr))
    atomic_write_text(out, json.dumps(doc, indent=1) + "\n", overwrite=args.overwrite)
    for method in (m for m in doc if m != "provenance"):
        for kind in ("tumour", "tissue"):
            f = doc[method][kind]
            print(
                f"{method} {kind}: true logit = {f['slope']} x measured + {f['intercept']}, "
                f"sigma {f['sigma']} ({f['pairs']} pairs)"
            )
    print(f"wrote {out}")
    return 0


def add_report_commands(sub) -> None:

    d = sub.add_parser(
        "draft", help="draft a report for a slide (streamed), each sentence with its support and evidence"
    )
    add_slide_arguments(d)
    d.add_argument("--prompt", default="Final diagnosis:")
    d.add_argument("--beams", type=int, default=1, help="beam search width (1: greedy, streamed)")
    d.add_argument("--top-p", type=float, help="nucleus sampling instead of greedy")
    d.add_argument("--max-new-tokens", type=int, default=96)
    d.add_argument(
        "--out", help="write the draft as .md or .json (text, provenance, sentences with support and evidence)"
    )
    d.add_argument("--overwrite", action="store_true")
    d.add_argument(
        "--json", action="store_true", help="print the draft as one JSON object (text, sentences, provenance)"
    )
    d.add_argument(
        "--case",
        nargs="+",
        metavar="SLIDE",
        help="more slides of the same case: the draft becomes a case report with parts A. (the first slide), B., ...",
    )
    d.set_defaults(run=_draft)
    a = sub.add_parser("ask", help="ask a question about a slide (or a region of it)")
    add_slide_arguments(a)
    a.add_argument("question")
    a.add_argument("--region", help="x,y,w,h in level-0 pixels: ask about this box only")
    a.add_argument("--max-new-tokens", type=int, default=32)
    a.add_argument("--json", action="store_true", help="print one JSON object: answer, support, evidence")
    a.set_defaults(run=_ask)
    c = sub.add_parser(
        "check", help="check a report (a text file) against the slide: each sentence's claims and support"
    )
    add_slide_arguments(c)
    c.add_argument("report", help="the report as a UTF-8 text file")
    c.add_argument("--ontology", help="the report ontology to read it with (JSON; default: the model's own)")
    c.add_argument("--json", action="store_true", help="print one JSON object: sentences, support, claims, evidence")
    c.set_defaults(run=_check)
    cal = sub.add_parser(
        "calibrate",
        help="fit a model's measurement errors on slides with known composition (DATA/slides.csv); kept with the model",
    )
    cal.add_argument("model", help="the generation model: a checkpoint folder, or 'embedded' (then give --out)")
    cal.add_argument("data", help="folder with slides.csv: slide, fractions (JSON of class label -> share)")
    cal.add_argument("--out", help="where to write (default: claim_calibration.json in the model folder)")
    cal.add_argument("--overwrite", action="store_true")
    cal.add_argument(
        "--ontology", help="the report ontology whose class labels the fractions use (default: the model's)"
    )
    cal.add_argument("--retrieval-model", default="", help="retrieval model (default: the model itself)")
    cal.add_argument("--encoder", default="embedded", help="patch encoder name (the model's own)")
    cal.add_argument("--encoder-weights", help="local weights of the encoder (default: its shipped file)")
    cal.add_argument("--cache-dir", help="feature cache folder (default: the user's cache folder)")
    cal.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda[:N]")
    cal.set_defaults(run=_calibrate)
