"""``pathalign`` command line: inspect slides, embed them, train PathAlign, run the demo."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from napari_pathalign.cli.common import USER_ERRORS
from napari_pathalign.core.atomic import atomic_write_text


def _info(args) -> int:
    from PIL import Image

    from napari_pathalign.io import SlideError, open_slide

    try:
        slide = open_slide(args.slide)
    except SlideError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    with slide:
        h, w = slide.shape_level0
        print(f"file:        {slide.path}")
        print(f"format:      {slide.format}")
        print(f"size:        {w} x {h} px (level 0)")
        print(f"mpp:         {slide.mpp if slide.mpp else 'unknown (pixel units)'}  [{slide.mpp_source}]")
        print(f"tile:        {slide.tile_size[1]} x {slide.tile_size[0]} px")
        for k, ((lh, lw), ds) in enumerate(zip(slide.level_shapes, slide.downsamples)):
            kind = "stored" if k < slide.n_stored_levels else "derived"
            print(f"level {k}:     {lw} x {lh} px, downsample {ds:.4g} ({kind})")
        print(f"associated:  {', '.join(slide.associated) or 'none'} (label/macro may identify the patient)")
        if args.associated:
            if args.associated not in slide.associated:
                print(
                    f"error: no {args.associated!r} image in this slide; it has {sorted(slide.associated) or 'none'}",
                    file=sys.stderr,
                )
                return 2
            out = Path(args.out or f"{slide.path.stem}.{args.associated}.png")
            Image.fromarray(slide.associated[args.associated].compute()).save(out)
            print(f"wrote {args.associated} image to {out}")
    return 0


def _embed(args) -> int:
    from napari_pathalign.core.grid_config import GridConfig
    from napari_pathalign.engine.batch import embed_many, expand_slides
    from napari_pathalign.models.encoders import EncoderError, load_patch_encoder

    slides = expand_slides(args.slides)
    if not slides:
        print(f"error: no slides found in {args.slides}", file=sys.stderr)
        return 2
    try:  # a wrong encoder name or weights file fails once, up front, not per slide
        encoder = load_patch_encoder(args.encoder, args.weights, args.device)
    except EncoderError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    grid = GridConfig(args.patch_size, args.target_mpp, args.max_patches, args.min_tissue, args.seed)
    results = embed_many(
        slides,
        args.encoder,
        args.weights,
        Path(args.out),
        grid,
        args.batch_size,
        args.device,
        args.scheduler,
        args.workers,
        encoder=encoder,
    )
    failed = [r for r in results if r.error]
    for r in results:
        print(f"{'FAILED' if r.error else 'ok':6} {r.slide}  {r.error or f'{r.n_patches} patches'}")
    print(f"{len(results) - len(failed)} of {len(results)} slides embedded into {args.out}")
    return 1 if failed else 0


def _train(args) -> int:
    from napari_pathalign.train.config import TrainConfig
    from napari_pathalign.train.loop import train

    try:
        cfg = TrainConfig.from_json(args.config)
        if args.device:
            cfg.device = args.device
        if args.ontology:
            cfg.ontology = args.ontology
            cfg.validate()
        result = train(cfg, resume=args.resume)
    except (ValueError, FileNotFoundError) as exc:  # config, table, features, checkpoint problems
        print(f"error: {exc}", file=sys.stderr)
        return 2
    last = result.history[-1] if result.history else {}
    print(f"checkpoint: {result.checkpoint}  ({', '.join(f'{k} {v:.4f}' for k, v in last.items() if k != 'epoch')})")
    if result.unmatched:
        print(f"{len(result.unmatched)} rows left out by part curation (listed above)")
    return 0


def _demo_data(args) -> int:
    from napari_pathalign.demo.data import make_demo_data

    try:
        counts = make_demo_data(
            Path(args.tiles), Path(args.out), slides=args.slides, seed=args.seed, split_seed=args.split_seed
        )
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for split, n in counts.items():
        print(
            (
                f"{split}: {n} slides, ground truth {Path(args.out) / split / 'slides.csv'}, "
                f"reports {Path(args.out) / split / 'reports.jsonl'}"
            )
        )
    return 0


def _evaluate(args) -> int:
    import json

    from napari_pathalign.eval.evaluate import evaluate
    from napari_pathalign.models.checkpoint import CheckpointError
    from napari_pathalign.models.pathalign import PathAlign

    try:
        model = PathAlign.load(args.model, device=args.device)
        retrieval = args.retrieval_model or ("embedded-r" if args.model == "embedded" else None)
        retrieval_model = PathAlign.load(retrieval, device=args.device) if retrieval else None
        metrics = evaluate(
            model,
            Path(args.data),
            retrieval_model,
            Path(args.features) if args.features else None,
            out_of_scope=Path(args.out_of_scope) if args.out_of_scope else None,
            chat=not args.no_chat,
            organs=tuple(args.organ) if args.organ else None,
        )
    except (ValueError, FileNotFoundError, CheckpointError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    width = max(len(k) for k in metrics)
    ci = metrics.get("ci95", {})
    for k, v in metrics.items():
        if k not in ("examples", "ci95"):
            interval = f"  (95% CI {ci[k][0]:.3f}-{ci[k][1]:.3f}, bootstrap over slides)" if ci.get(k) else ""
            print(f"{k:<{width}}  {v:.4f}{interval}" if isinstance(v, float) else f"{k:<{width}}  {v}")
    if args.out:
        atomic_write_text(Path(args.out), json.dumps(metrics, indent=2))
        print(f"wrote {args.out}")
    return 0


def _demo(args) -> int:
    from napari_pathalign._napari.demo import run_demo

    shot = run_demo(Path(args.screenshot) if args.screenshot else None)
    if shot:
        print(f"demo screenshot written to {shot.resolve()}")
    return 0


def _set_default_reader(args) -> int:
    from napari_pathalign._napari.preferences import claim_slide_extensions

    claimed = claim_slide_extensions()
    print(
        f"napari now opens {', '.join(claimed)} with napari-pathalign"
        if claimed
        else "nothing to change: every slide pattern already has a reader you chose"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pathalign", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    info = sub.add_parser("info", help="print a slide's metadata; optionally save its label/macro image")
    info.add_argument("slide", help="slide file or DICOM folder")
    info.add_argument(
        "--associated",
        choices=["label", "macro", "thumbnail"],
        help="save this associated image (shown only on request: it may identify the patient)",
    )
    info.add_argument("--out", help="where to save the associated image (PNG)")
    info.set_defaults(run=_info)
    embed = sub.add_parser("embed", help="patch features of slides into TRIDENT-layout .h5 files (cached)")
    embed.add_argument("slides", nargs="+", help="slide files, DICOM folders, or folders of slides")
    embed.add_argument("--encoder", required=True, help="patch encoder name (the registry: docs/slides-and-patches.md)")
    embed.add_argument("--weights", help="local weights file or folder of the encoder")
    embed.add_argument("--out", required=True, help="folder for the feature files")
    embed.add_argument("--patch-size", type=int, default=224)
    embed.add_argument("--target-mpp", type=float, default=0.5, help="µm per patch pixel (0.5 ~ 20x)")
    embed.add_argument("--max-patches", type=int, default=10240)
    embed.add_argument("--min-tissue", type=float, default=0.5)
    embed.add_argument("--seed", type=int, default=0)
    embed.add_argument("--batch-size", type=int, default=64)
    embed.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda[:N]")
    embed.add_argument("--scheduler", help="address of a running dask.distributed scheduler")
    embed.add_argument("--workers", type=int, help="start a local dask cluster with this many worker processes")
    embed.set_defaults(run=_embed)
    tr = sub.add_parser(
        "train", help="train a PathAlign model (stage 1 Q-Former, or stage 2 into a frozen LM) from a JSON config"
    )
    tr.add_argument("--config", required=True, help="training config JSON (see examples/train_config_g.json)")
    tr.add_argument("--resume", action="store_true", help="continue from the config's out/train_state")
    tr.add_argument("--device", help="override the config's device: auto, cpu or cuda[:N]")
    tr.add_argument(
        "--ontology", help="the report ontology of the training reports (JSON); stored with the model as ontology.json"
    )
    tr.set_defaults(run=_train)
    dd = sub.add_parser(
        "demo-data", help="assemble demo slides with ground truth and multi-part reports from labelled real tiles"
    )
    dd.add_argument(
        "--tiles", required=True, help="folder with PCam (0/, 1/; train/ + valid/) and/or Kather (01_TUMOR/ ...) tiles"
    )
    dd.add_argument(
        "--out", required=True, help="output folder: train/ and test/ with slides/, slides.csv, reports.jsonl"
    )
    dd.add_argument("--slides", type=int, default=60, help="training slides (the test split gets a third as many)")
    dd.add_argument("--seed", type=int, default=0, help="draws the slides (another seed: other slides, same split)")
    dd.add_argument(
        "--split-seed",
        type=int,
        default=0,
        help="which Kather source images and LC25000 clusters are held out (0: the shipped model's split)",
    )
    dd.set_defaults(run=_demo_data)
    ev = sub.add_parser(
        "evaluate", help="retrieval, zero-shot, draft and VQA metrics of a PathAlign model on demo slides"
    )
    ev.add_argument("--model", required=True, help="'embedded' or a checkpoint folder")
    ev.add_argument(
        "--retrieval-model",
        help="a second (PathAlign-R) model for retrieval and zero-shot; default for 'embedded': 'embedded-r'",
    )
    ev.add_argument("--data", required=True, help="a demo-data split folder (slides.csv, reports.jsonl, slides/)")
    ev.add_argument("--features", help="feature cache folder (default: DATA/features)")
    ev.add_argument("--out", help="write the metrics as JSON here")
    ev.add_argument(
        "--out-of-scope",
        metavar="SHARED_DATA",
        help="the shared data folder (../shared/data): also measure out-of-scope detection on its real slides",
    )
    ev.add_argument("--organ", action="append", help="only the slides of this ontology organ (repeatable)")
    ev.add_argument("--no-chat", action="store_true", help="skip asking the question bank's held-out wordings")
    ev.add_argument("--device", default="auto")
    ev.set_defaults(run=_evaluate)
    from napari_pathalign.cli.analysis import add_analysis_commands
    from napari_pathalign.cli.dicom_export import add_dicom_export_commands
    from napari_pathalign.cli.index import add_index_commands
    from napari_pathalign.cli.report import add_report_commands

    add_analysis_commands(sub)
    add_index_commands(sub)
    add_report_commands(sub)
    add_dicom_export_commands(sub)
    demo = sub.add_parser("demo", help="open napari with the plugin and the sample slide")
    demo.add_argument("--screenshot", help="save a screenshot of the window here and exit (for headless runs)")
    demo.set_defaults(run=_demo)
    reader = sub.add_parser(
        "set-default-reader",
        help="opt in: make this plugin napari's reader for slide files the user has not assigned (*.svs, *.tif, ...)",
    )
    reader.set_defaults(run=_set_default_reader)
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except USER_ERRORS as exc:  # a bad path, model, value ...: what was wrong in one line, not a traceback
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
