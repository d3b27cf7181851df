"""``pathalign index``: build, grow and search a slide library (FAISS + SQLite) from the command line."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _models(model_name: str, encoder_name: str, weights: str | None, device: str):
    from napari_pathalign.models.encoders import load_patch_encoder
    from napari_pathalign.models.pathalign import PathAlign

    model = PathAlign.load(model_name, device=device)
    return model, load_patch_encoder(encoder_name or model.cfg.patch_encoder, weights, device)


def _features_dir(args) -> Path:
    from napari_pathalign.engine.features import default_cache_dir

    return Path(args.features) if args.features else default_cache_dir()


def _add_slides(lib, args, model, encoder) -> int:
    from tqdm import tqdm

    from napari_pathalign.core.generators import run_to_end
    from napari_pathalign.core.grid_config import GridConfig
    from napari_pathalign.engine.batch import expand_slides
    from napari_pathalign.engine.library_build import iter_build, read_slide_table

    slides = expand_slides(args.slides)
    if not slides:
        raise ValueError(f"no slides found in {args.slides}")
    table = read_slide_table(args.table) if args.table else None
    gen = iter_build(
        slides, lib, model, encoder, GridConfig(), _features_dir(args), table, args.workers, args.scheduler
    )
    bar = tqdm(total=len(slides), desc="library", unit="slide")

    def step(item) -> None:
        res = item[2]
        if res is not None:
            if res.error:
                tqdm.write(f"skipped {res.slide}: {res.error}")
            bar.update(1)

    results = run_to_end(gen, step)
    bar.close()
    ok = [r for r in results if not r.error]
    print(f"{len(ok)} of {len(results)} slides added; the library holds {len(lib)} slides ({lib.info().index_type})")
    return 0 if len(ok) == len(results) else 1


def _build(args) -> int:
    from napari_pathalign.engine.library_build import model_identity
    from napari_pathalign.index import Library

    model, encoder = _models(args.model, args.encoder, args.encoder_weights, args.device)
    lib = Library.create(args.out, index_type=args.index_type, **model_identity(model, encoder))
    with lib:
        return _add_slides(lib, args, model, encoder)


def _open(args):
    from napari_pathalign.index import Library

    lib = Library.open(args.library)
    if lib.repaired:
        print(f"note: {lib.repaired}", file=sys.stderr)
    return lib


def _add(args) -> int:
    from napari_pathalign.engine.library_build import model_identity

    with _open(args) as lib:
        info = lib.info()
        model, encoder = _models(info.model, args.encoder, args.encoder_weights, args.device)
        lib.check_model(**model_identity(model, encoder))
        return _add_slides(lib, args, model, encoder)


def _remove(args) -> int:
    with _open(args) as lib:
        before = len(lib)
        from napari_pathalign.engine.features import slide_fingerprint

        # a slide file (or DICOM folder) by its content fingerprint; else a row id or a fingerprint
        keys = [slide_fingerprint(Path(k)) if Path(k).exists() else int(k) if k.isdigit() else k for k in args.slides]
        lib.remove(keys)
        print(f"removed {before - len(lib)}; {len(lib)} slides left")
    return 0


def _info(args) -> int:
    with _open(args) as lib:
        info = lib.info()
    for k, v in vars(info).items():
        print(f"{k:<14} {v}")
    return 0


def _region(text: str) -> tuple[float, float, float, float]:
    try:
        x, y, w, h = (float(v) for v in text.split(","))
    except ValueError:
        raise ValueError(f"--region {text!r}: expected x,y,w,h in level-0 pixels, e.g. 1000,800,2000,1500") from None
    return x, y, w, h


def _search(args) -> int:
    from napari_pathalign.engine.library_build import model_identity
    from napari_pathalign.engine.similar import locate_region, text_vector
    from napari_pathalign.index import Library

    if (args.slide is None) == (args.text is None):
        print("error: search by --slide S (optionally with --region x,y,w,h) or by --text T", file=sys.stderr)
        return 2
    filters = {
        k: v for k, v in (("label", args.label), ("site", args.site), ("report_contains", args.report_contains)) if v
    }
    with _open(args) as lib:
        model, encoder = _models(lib.info().model, "", None, args.device)
        lib.check_model(**model_identity(model, encoder))
        side = None
        scope = None
        if args.text is not None:
            vector = text_vector(model, args.text)
        else:
            vector, side = _slide_query(
                Path(args.slide), model, encoder, _features_dir(args), _region(args.region) if args.region else None
            )
            scope = _slide_scope(Path(args.slide), encoder, _features_dir(args))
        hits = lib.search(vector, k=args.k, target=args.target, filters=filters or None)
        if side is not None:
            hits = locate_region(model, hits, vector, side)
        vote = Library.majority_vote(hits)
    if args.json:
        print(
            json.dumps(
                {
                    "hits": [_hit_json(h) for h in hits],
                    "majority_vote": {"label": vote[0], "agreement": vote[1], "counts": vote[2]},
                    "in_scope": None if scope is None else scope.to_dict(),
                },
                indent=2,
            )
        )
        return 0
    if scope is not None and scope.flagged:
        print(f"{scope.banner} The hits below are the nearest slides, not similar cases.")
    if not hits:
        print("no hits (empty library, or no slide matches the filters)")
    for h in hits:
        where = f"  region x,y,w,h={h.region_xywh}" if getattr(h, "region_xywh", None) else ""
        snippet = (h.report or "").replace("\n", " ")[:70]
        print(f"{h.rank:>3}. {h.score:+.3f}  {Path(h.path).name:<32} {h.label or '-':<12} {snippet}{where}")
    if vote[0] is not None:
        print(f"majority vote of the top {len(hits)}: {vote[0]} (agreement {vote[1]:.0%})")
    return 0


def _hit_json(h) -> dict:
    return {
        "rank": h.rank,
        "id": h.id,
        "score": h.score,
        "path": h.path,
        "label": h.label,
        "site": h.site,
        "report": h.report,
        "region_xywh": list(h.region_xywh) if h.region_xywh else None,
        "target": h.target,
    }


def _slide_scope(path: Path, encoder, features_dir: Path):
    from napari_pathalign.engine.similar import slide_in_scope
    from napari_pathalign.io import open_slide

    with open_slide(path) as slide:
        return slide_in_scope(slide, encoder, features_dir)


def _slide_query(path: Path, model, encoder, features_dir: Path, region):
    """The slide's (or a box's) retrieval vector; with a region, the window side for re-ranking."""
    from napari_pathalign.engine.regions import rectangle
    from napari_pathalign.engine.similar import slide_query
    from napari_pathalign.io import open_slide

    with open_slide(path) as slide:
        return slide_query(slide, model, encoder, features_dir, rectangle(*region) if region else None)


def _evaluate(args) -> int:
    from napari_pathalign.eval.library_eval import evaluate_library

    model, encoder = _models(args.model, "", None, args.device)
    metrics = evaluate_library(
        model, encoder, Path(args.data), k=args.k, features_dir=Path(args.features) if args.features else None
    )
    ci = metrics.pop("ci95", {})
    for key, v in metrics.items():
        interval = f"  (95% CI {ci[key][0]:.3f}-{ci[key][1]:.3f}, bootstrap)" if ci.get(key) else ""
        print(f"{key:<32} {v:.4f}{interval}" if isinstance(v, float) else f"{key:<32} {v}")
    return 0


def add_index_commands(sub) -> None:
    idx = sub.add_parser("index", help="a slide library (FAISS + SQLite): build, add, remove, info, search, evaluate")
    cmds = idx.add_subparsers(dest="index_command", required=True)

    def common(p, slides: bool = True):
        if slides:
            p.add_argument("slides", nargs="+", help="slide files, DICOM folders, or folders of slides")
            p.add_argument(
                "--table", help="CSV or JSONL with slide, report, label, site columns (paths relative to it)"
            )
            p.add_argument("--workers", type=int, help="embed on a local dask cluster with this many worker processes")
            p.add_argument("--scheduler", help="embed on a running dask.distributed scheduler")
        p.add_argument("--encoder", default="", help="patch encoder (default: the model's)")
        p.add_argument("--encoder-weights", help="local weights of the encoder")
        p.add_argument("--features", help="feature cache folder (default: the user's cache folder)")
        p.add_argument("--device", default="auto")

    b = cmds.add_parser("build", help="create a library from slides")
    common(b)
    b.add_argument("--out", required=True, help="the library folder to create")
    b.add_argument("--model", default="embedded-r", help="retrieval model: 'embedded-r' or a checkpoint folder")
    b.add_argument(
        "--index-type",
        default="auto",
        choices=["auto", "flat", "hnsw", "ivf"],
        help="auto: exact below a measured size, approximate above",
    )
    b.set_defaults(run=_build)
    a = cmds.add_parser("add", help="add (or update) slides in a library")
    a.add_argument("library")
    common(a)
    a.set_defaults(run=_add)
    r = cmds.add_parser("remove", help="remove slides by path, fingerprint or id")
    r.add_argument("library")
    r.add_argument("slides", nargs="+")
    r.set_defaults(run=_remove)
    i = cmds.add_parser("info", help="what a library holds and how it is indexed")
    i.add_argument("library")
    i.set_defaults(run=_info)
    s = cmds.add_parser("search", help="slide -> slides, region -> slides, text -> slides, slide -> reports")
    s.add_argument("library")
    s.add_argument("--slide", help="query slide")
    s.add_argument(
        "--region", help="with --slide: x,y,w,h in level-0 pixels (region -> slides, with where each hit matches)"
    )
    s.add_argument("--text", help="query text (text -> slides)")
    s.add_argument(
        "--target",
        choices=["slides", "reports"],
        default="slides",
        help="search slides, or report texts (image -> text)",
    )
    s.add_argument("-k", type=int, default=10)
    s.add_argument("--label")
    s.add_argument("--site")
    s.add_argument("--report-contains")
    s.add_argument("--json", action="store_true")
    common(s, slides=False)
    s.set_defaults(run=_search)
    e = cmds.add_parser(
        "evaluate",
        help="leave-one-out retrieval quality on a demo-data split (majority vote @k, text -> slide precision @k)",
    )
    e.add_argument("--data", required=True, help="a demo-data split folder (slides.csv, reports.jsonl, slides/)")
    e.add_argument("--model", default="embedded-r")
    e.add_argument("-k", type=int, default=5)
    e.add_argument("--features", help="feature cache folder (default: DATA/features)")
    e.add_argument("--device", default="auto")
    e.set_defaults(run=_evaluate)
