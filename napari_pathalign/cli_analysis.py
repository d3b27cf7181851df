"""``pathalign heatmap`` and ``pathalign zero-shot``: the workspace's analyses for batch use and scripts."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _prepare(args):
    """Open the slide and run ``SlideAnalysis.iter_prepare`` with progress bars; the analysis."""
    from tqdm import tqdm

    from napari_pathalign.io import open_slide
    from napari_pathalign.pipeline.analysis import SlideAnalysis

    slide = open_slide(args.slide)
    analysis = SlideAnalysis(slide, encoder=args.encoder, model=args.model, retrieval_model=args.retrieval_model or None, cache_dir=args.cache_dir, device=args.device, encoder_weights=args.encoder_weights)
    bar, stage = None, None
    for p in analysis.iter_prepare():
        if p.stage != stage and bar is not None:
            bar.close()
            bar = None
        stage = p.stage
        if p.stage in ("features", "regions"):
            bar = bar or tqdm(total=p.total, desc=p.stage, unit="patch", file=sys.stderr)
            bar.update(p.done - bar.n)
        elif p.stage != "ready":
            print(p.message, file=sys.stderr)
    if bar is not None:
        bar.close()
    return analysis


def _errors():
    from napari_pathalign.io import SlideError
    from napari_pathalign.models.checkpoint import CheckpointError
    from napari_pathalign.models.encoders import EncoderError

    return (SlideError, CheckpointError, EncoderError, ValueError, FileNotFoundError, FileExistsError)


def _heatmap(args) -> int:
    from napari_pathalign.io.heatmap_files import write_heatmap

    if (args.text is None) == (not args.attention):
        print("error: choose one map: --text PHRASE or --attention", file=sys.stderr)
        return 2
    try:
        out = Path(args.out)
        if out.exists() and not args.overwrite:
            raise FileExistsError(f"{out} exists; pass --overwrite to replace it")
        analysis = _prepare(args)
        if args.text is not None:
            heatmap = analysis.text_heatmap(args.text)
        else:
            heatmap = analysis.attention_heatmap(args.layer, args.head, args.query, args.reduce, text=args.weight_text)
        heatmap = heatmap.normalised(args.normalise)
        write_heatmap(heatmap, out, overwrite=args.overwrite)
    except _errors() as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    top = heatmap.top_patches(1)
    print(f"{heatmap.title}: {len(heatmap)} patches, values {heatmap.values.min():.4g} to {heatmap.values.max():.4g}; highest at level-0 x,y = {tuple(heatmap.xy_level0[top[0]])}")
    print(f"wrote {out}")
    return 0


def _zero_shot(args) -> int:
    from napari_pathalign.pipeline.zero_shot import load_class_sets

    try:
        sets, default = load_class_sets(args.classes)
        name = args.set or default
        if name not in sets:
            raise ValueError(f"no class set {name!r} in the class file; it has {sorted(sets)}")
        analysis = _prepare(args)
        result = analysis.zero_shot(sets[name], model=args.scorer)
    except _errors() as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({"slide": str(args.slide), "set": name, "model": result.model, "temperature": result.temperature, "probabilities": result.probabilities, "similarities": result.similarities, "best": result.best}, indent=2))
        return 0
    width = max(len(c) for c in result.probabilities)
    print(f"{Path(args.slide).name}: class set {name!r}, {result.model} model, temperature {result.temperature:.1f}")
    for c, p in sorted(result.probabilities.items(), key=lambda kv: -kv[1]):
        print(f"  {c:<{width}}  {p:6.1%}  {'#' * round(p * 30):<30}  similarity {result.similarities[c]:+.3f}")
    return 0


def _common(p) -> None:
    p.add_argument("slide", help="slide file or DICOM folder")
    p.add_argument("--model", default="embedded", help="generation model: 'embedded' or a PathAlign checkpoint folder")
    p.add_argument("--retrieval-model", default="embedded-r", help="retrieval model ('embedded-r', a folder, or '' to use --model for both)")
    p.add_argument("--encoder", default="embedded", help="patch encoder name (the models' own)")
    p.add_argument("--encoder-weights", help="local weights of the encoder (default: its shipped file)")
    p.add_argument("--cache-dir", help="feature cache folder (default: the user's cache folder)")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda[:N]")


def add_analysis_commands(sub) -> None:
    hm = sub.add_parser("heatmap", help="a text->region or attention heatmap of a slide, written as GeoJSON (QuPath), h5 or PNG")
    _common(hm)
    hm.add_argument("--text", help="phrase to localise, e.g. 'metastatic carcinoma'")
    hm.add_argument("--attention", action="store_true", help="the Q-Former's cross-attention instead of a text")
    hm.add_argument("--layer", type=int, help="cross-attention layer (default: all)")
    hm.add_argument("--head", type=int, help="attention head (default: all)")
    hm.add_argument("--query", type=int, help="query (default: all)")
    hm.add_argument("--reduce", choices=["mean", "max"], default="mean", help="how the axes left open are combined")
    hm.add_argument("--weight-text", help="with --attention: weight the queries by their similarity to this text")
    hm.add_argument("--normalise", choices=["raw", "percentile", "rank"], default="raw")
    hm.add_argument("--out", required=True, help="output file: .geojson, .h5 or .png")
    hm.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    hm.set_defaults(run=_heatmap)
    zs = sub.add_parser("zero-shot", help="zero-shot class probabilities of a slide from prompt ensembles")
    _common(zs)
    zs.add_argument("--classes", help="JSON of {class: [prompts]} (default: the shipped classes for the embedded model)")
    zs.add_argument("--set", help="class set inside the JSON (default: its 'default')")
    zs.add_argument("--scorer", choices=["retrieval", "generation"], default="retrieval", help="which model scores the slide")
    zs.add_argument("--json", action="store_true", help="print one JSON object")
    zs.set_defaults(run=_zero_shot)
