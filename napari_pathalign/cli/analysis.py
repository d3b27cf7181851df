"""``pathalign heatmap`` and ``pathalign zero-shot``: the workspace's analyses for batch use and scripts."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from napari_pathalign.cli.common import add_slide_arguments, prepare_analysis


def _heatmap(args) -> int:
    from napari_pathalign.io.heatmap_files import write_heatmap

    if (args.text is None) == (not args.attention):
        print("error: choose one map: --text PHRASE or --attention", file=sys.stderr)
        return 2
    out = Path(args.out)
    if out.exists() and not args.overwrite:
        raise FileExistsError(f"{out} exists; pass --overwrite to replace it")
    analysis = prepare_analysis(args)
    if args.text is not None:
        heatmap = analysis.text_heatmap(args.text)
    else:
        heatmap = analysis.attention_heatmap(args.layer, args.head, args.query, args.reduce, text=args.weight_text)
    heatmap = heatmap.normalised(args.normalise)
    write_heatmap(heatmap, out, overwrite=args.overwrite)
    top = heatmap.top_patches(1)
    print(
        (
            f"{heatmap.title}: {len(heatmap)} patches, values {heatmap.values.min():.4g} "
            f"to {heatmap.values.max():.4g}; "
            f"highest at level-0 x,y = {tuple(heatmap.xy_level0[top[0]])}"
        )
    )
    print(f"wrote {out}")
    return 0


def _zero_shot(args) -> int:
    from napari_pathalign.engine.zero_shot import load_class_sets

    if args.classes:  # a class file given: checked before the slide is analysed
        sets, default = load_class_sets(args.classes)
        if (args.set or default) not in sets:
            raise ValueError(f"no class set {args.set or default!r} in the class file; it has {sorted(sets)}")
    analysis = prepare_analysis(args)
    if not args.classes:  # the sets of the model's report ontology
        sets, default = analysis.ontology.class_sets()
    name = args.set or default
    if name not in sets:
        raise ValueError(f"no class set {name!r} in the report ontology; it has {sorted(sets)}")
    result = analysis.zero_shot(sets[name], model=args.scorer)
    if args.json:
        print(
            json.dumps(
                {
                    "slide": str(args.slide),
                    "set": name,
                    "model": result.model,
                    "temperature": result.temperature,
                    "probabilities": result.probabilities,
                    "similarities": result.similarities,
                    "best": result.best,
                    "in_scope": None if analysis.in_scope() is None else analysis.in_scope().to_dict(),
                },
                indent=2,
            )
        )
        return 0
    width = max(len(c) for c in result.probabilities)
    print(f"{Path(args.slide).name}: class set {name!r}, {result.model} model, temperature {result.temperature:.1f}")
    scope = analysis.in_scope()
    if scope is not None and scope.flagged:
        print(f"  {scope.banner} These are the nearest classes the model knows, not a diagnosis.")
    for c, p in sorted(result.probabilities.items(), key=lambda kv: -kv[1]):
        print(f"  {c:<{width}}  {p:6.1%}  {'#' * round(p * 30):<30}  similarity {result.similarities[c]:+.3f}")
    return 0


def add_analysis_commands(sub) -> None:
    hm = sub.add_parser(
        "heatmap", help="a text->region or attention heatmap of a slide, written as GeoJSON (QuPath), h5 or PNG"
    )
    add_slide_arguments(hm)
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
    add_slide_arguments(zs)
    zs.add_argument(
        "--classes",
        help="JSON class file {'default': set, 'sets': {set: {class: [prompts]}}} (default: the sets of the model's "
        "report ontology: 'diagnosis' and one per organ)",
    )
    zs.add_argument("--set", help="class set to score (default: the file's default, or 'diagnosis')")
    zs.add_argument("--ontology", help="the report ontology whose class sets to use (JSON; default: the model's own)")
    zs.add_argument(
        "--scorer", choices=["retrieval", "generation"], default="retrieval", help="which model scores the slide"
    )
    zs.add_argument("--json", action="store_true", help="print one JSON object")
    zs.set_defaults(run=_zero_shot)
