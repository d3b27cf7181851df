"""``pathalign export-dicom``: a slide's report, heatmap and regions as DICOM, to a folder and/or to the archive.

The results reference the slide's own DICOM instances (study, series, frame of reference), so the slide
must be DICOM: a ``dicomweb+`` address (``--send`` stores into its study on its server) or a local folder
of .dcm files or one of them (``--send`` then needs ``--server``).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from napari_pathalign.cli.common import add_slide_arguments, prepare_analysis
from napari_pathalign.io.dicom_bundle import FILES, DicomResult, iter_results, result_kinds


def _export_dicom(args) -> int:
    from tqdm import tqdm

    from napari_pathalign.io.dicom_results import write_dicom

    _check_choices(args)
    key = _deidentify_key(args.deidentify_key_env)
    connection, source = _source(args)
    try:
        out = Path(args.out) if args.out else None
        if out is not None:  # checked before any analysis: a refused overwrite costs nothing
            clash = [out / FILES[k] for k in _kinds(args) if (out / FILES[k]).exists()]
            if clash and not args.overwrite:
                raise FileExistsError(f"{', '.join(map(str, clash))} exist(s); pass --overwrite to replace them")
        report = _read_report(Path(args.report)) if args.report else None
        regions = _read_regions(Path(args.regions)) if args.regions else []
        heatmap = _heatmap(args, source) if args.heatmap else None
        if args.evidence:
            from napari_pathalign.io.dicom_annotations import evidence_annotations

            regions = regions + evidence_annotations(heatmap, top_k=args.evidence)
        results = _build(source, report, heatmap, regions, key)
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
            for r in tqdm(results, desc="writing", unit="file", file=sys.stderr):
                try:
                    path = write_dicom(r.dataset, out / FILES[r.kind], overwrite=args.overwrite)
                except FileExistsError:
                    raise
                except OSError as exc:  # a read-only or full folder: said in one line, the file left as it was
                    raise ValueError(f"could not write {out / FILES[r.kind]}: {exc}") from exc
                print(f"wrote {r.what} to {path}")
        if args.send:
            _send(args, connection, source, results, key is not None)
    finally:
        if connection is not None:
            connection.close()
    return 0


def _check_choices(args) -> None:
    if not (args.report or args.heatmap or args.regions):
        raise ValueError("nothing to export: pass --report REPORT.json, --heatmap and/or --regions FILE.geojson")
    if not (args.out or args.send):
        raise ValueError("say where the results go: --out FOLDER (files), --send (the archive), or both")
    if args.evidence is not None and args.evidence < 1:
        raise ValueError(f"--evidence is how many top patches to add as regions, >= 1; got {args.evidence}")
    if args.evidence and not args.heatmap:
        raise ValueError("--evidence K takes the heatmap's top K patches; pass --heatmap too")
    if args.server and not args.send:
        raise ValueError("--server is where --send stores the results; pass --send too (or leave --server out)")


def _kinds(args) -> list[str]:
    return [
        k
        for k, given in (("report", args.report), ("heatmap", args.heatmap), ("regions", args.regions or args.evidence))
        if given
    ]


def _deidentify_key(variable: str | None) -> str | None:
    """The site's de-identification key from the environment variable named (never from the command line,
    where it would sit in the shell's history and the process list); never printed."""
    if not variable:
        return None
    from napari_pathalign.io.deidentify import pseudonym

    key = os.environ.get(variable, "")
    if not key:
        raise ValueError(
            f"--deidentify-key-env {variable}: that environment variable is not set or empty; put the site's "
            "de-identification key (a secret of at least 16 characters) in it, or leave --deidentify-key-env out"
        )
    pseudonym("check", key)  # a short key is refused here, before any analysis
    return key


def _source(args):
    """(a connection to the archive that ``--send`` stores into, or None; the slide's level-0 instance
    metadata, which every result references)."""
    from napari_pathalign.io.dicomweb import Credentials, DicomWebAddress, DicomWebConnection

    if str(args.slide).startswith("dicomweb+"):
        address = DicomWebAddress.parse(args.slide)
        if address.study_uid is None or address.series_uid is None:
            raise ValueError(f"{address.url}: a slide is one series; expected .../studies/<uid>/series/<uid>")
        with DicomWebConnection(address.root, Credentials.for_server(address.root)) as pacs:
            source = pacs.slide_source(address.study_uid, address.series_uid)
        target = args.server or address.root
    else:
        source = local_source(Path(args.slide))
        if args.send and not args.server:
            raise ValueError(
                f"{args.slide} is a local slide: --send needs --server URL, the archive's DICOMweb root "
                "(e.g. https://pacs.example.org/dicom-web)"
            )
        target = args.server
    return (DicomWebConnection(target, Credentials.for_server(target)) if args.send else None), source


def local_source(path: Path):
    """The level-0 (largest VOLUME) instance's metadata of a local DICOM slide: a folder of .dcm files, or one
    of them (its series' other files in the folder are read too). Pixels are not read."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    if not path.exists():
        raise FileNotFoundError(f"slide {path} does not exist; pass a DICOM folder, a .dcm file or a dicomweb+ address")
    files = sorted(path.glob("*.dcm")) if path.is_dir() else [path, *sorted(path.parent.glob("*.dcm"))]
    headers = []
    for f in dict.fromkeys(files):  # the given file first, once
        try:
            headers.append(pydicom.dcmread(f, stop_before_pixels=True))
        except (InvalidDicomError, OSError, ValueError):
            if f == path:
                raise _not_dicom(path) from None
    if path.is_file():  # one file means its own series
        headers = [h for h in headers if h.get("SeriesInstanceUID") == headers[0].get("SeriesInstanceUID")]
    volumes = [h for h in headers if h.get("Modality") == "SM" and "VOLUME" in (h.get("ImageType") or [])]
    if not volumes:
        if not headers:
            raise _not_dicom(path)
        raise ValueError(
            f"{path}: no slide (SM VOLUME) image among its {len(headers)} DICOM file(s); DICOM results go on "
            "the level-0 image of a VL Whole Slide Microscopy series"
        )
    return max(volumes, key=lambda h: int(h.get("TotalPixelMatrixColumns", 0)))


def _not_dicom(path: Path) -> ValueError:
    return ValueError(
        f"{path} is not DICOM: the DICOM results reference the slide's own DICOM study, series and frame of "
        "reference, so export-dicom needs a DICOM slide (a folder of .dcm files, one of them, or a dicomweb+ "
        "address). For other slides write files: pathalign draft --out REPORT.json, pathalign heatmap --out MAP.geojson"
    )


def _read_report(path: Path) -> dict:
    """A report written by ``pathalign draft --out REPORT.json`` (text, sentences, provenance)."""
    if path.suffix.lower() != ".json":
        raise ValueError(f"--report {path}: expected the .json a `pathalign draft --out REPORT.json` writes")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"--report {path} is not JSON ({exc})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("text"), str):
        raise ValueError(f"--report {path}: expected a JSON object with 'text' (from `pathalign draft --out`)")
    return {"text": doc["text"], "sentences": doc.get("sentences") or [], "provenance": doc.get("provenance") or {}}


def _read_regions(path: Path) -> list:
    from napari_pathalign.io import read_annotations

    if not path.is_file():
        raise FileNotFoundError(f"--regions {path} does not exist; pass a QuPath GeoJSON or ASAP XML file")
    return read_annotations(path)


def _heatmap(args, source):
    """``text:PHRASE`` or ``attention`` (the slide is analysed, with progress bars), or a heatmap file."""
    spec = str(args.heatmap)
    if spec.startswith("text:") or spec == "attention":
        if spec.startswith("text:") and not spec[5:].strip():
            raise ValueError("--heatmap text: needs a phrase, e.g. --heatmap 'text:metastatic carcinoma'")
        analysis = prepare_analysis(args)
        try:
            return analysis.text_heatmap(spec[5:].strip()) if spec != "attention" else analysis.attention_heatmap()
        finally:
            analysis.slide.close()
    path = Path(spec)
    if path.suffix.lower() not in (".h5", ".geojson", ".json"):
        raise ValueError(
            f"--heatmap {spec!r}: expected text:PHRASE, attention, or a heatmap file (.h5 or .geojson from "
            "`pathalign heatmap --out`)"
        )
    if not path.is_file():
        raise FileNotFoundError(f"--heatmap {path} does not exist")
    from napari_pathalign.io.heatmap_files import read_heatmap

    heatmap = read_heatmap(path)
    width, height = int(source.TotalPixelMatrixColumns), int(source.TotalPixelMatrixRows)
    far = heatmap.xy_level0.max(axis=0) if len(heatmap) else (0, 0)
    if far[0] >= width or far[1] >= height:  # a map of another slide would be written onto this one
        raise ValueError(
            f"--heatmap {path}: a patch lies at level-0 x,y = {tuple(int(v) for v in far)}, outside this slide "
            f"({width} x {height} px); is it the map of another slide?"
        )
    return heatmap


def _build(source, report: dict | None, heatmap, regions: list, key: str | None) -> list[DicomResult]:
    from tqdm import tqdm

    total = len(result_kinds(report, heatmap, regions))
    built = iter_results(source, report, heatmap, regions, key)
    return list(tqdm(built, total=total, desc="building DICOM", unit="instance", file=sys.stderr))


def _send(args, connection, source, results: list[DicomResult], deidentified: bool) -> None:
    # a de-identified result is its own pseudonymous study: the slide's study UID does not hold it
    study = None if deidentified else str(source.StudyInstanceUID)
    print(f"sending {len(results)} instance(s) to {connection.root} (STOW-RS) ...", file=sys.stderr)
    connection.store([r.dataset for r in results], study)
    where = f"its own de-identified study {results[0].dataset.StudyInstanceUID}" if deidentified else f"study {study}"
    for r in results:
        print(f"stored {r.what}: instance {r.dataset.SOPInstanceUID}, series {r.dataset.SeriesInstanceUID}")
    print(f"stored {len(results)} instance(s) into {where} on {connection.root}")


def add_dicom_export_commands(sub) -> None:
    e = sub.add_parser(
        "export-dicom",
        help="a DICOM slide's report (SR), heatmap (Parametric Map) and regions (bulk annotations) to a folder "
        "and/or the archive (STOW-RS)",
        description="SLIDE is a DICOM slide: a dicomweb+https://.../studies/<uid>/series/<uid> address, a folder "
        "of .dcm files or one of them. The results reference its study and series; other formats are refused.",
    )
    add_slide_arguments(e)  # SLIDE: a DICOM folder or .dcm file, or a dicomweb+https://... address
    e.add_argument("--out", help="folder for report-sr.dcm, heatmap-pm.dcm, regions-ann.dcm")
    e.add_argument("--report", help="the report JSON written by `pathalign draft --out REPORT.json`")
    e.add_argument(
        "--heatmap",
        help="text:PHRASE or attention (the slide is analysed), or a heatmap file (.h5, .geojson) of this slide",
    )
    e.add_argument("--regions", help="regions to export: QuPath GeoJSON or ASAP XML (level-0 pixels)")
    e.add_argument("--evidence", type=int, help="add the heatmap's top K patches as regions (class 'Evidence')")
    e.add_argument(
        "--send",
        action="store_true",
        help="store the results with STOW-RS: into the slide's study on its server (dicomweb+ slides) or --server",
    )
    e.add_argument(
        "--server", help="DICOMweb root to send to (needed for a local slide; credentials from the environment)"
    )
    e.add_argument(
        "--deidentify-key-env",
        metavar="VAR",
        help="de-identify the results with the site key held in this environment variable (PS3.15 basic profile)",
    )
    e.add_argument("--overwrite", action="store_true", help="replace existing files in --out")
    e.set_defaults(run=_export_dicom)
