"""The DICOM results of one slide, built together: what the PACS dock and ``pathalign export-dicom`` write or send.

Each is built on the slide's level-0 instance (``source``) by the builders of ``io/dicom_results.py`` and
``io/dicom_annotations.py``, optionally de-identified with the site's key (``io/deidentify.py``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

FILES = {"report": "report-sr.dcm", "heatmap": "heatmap-pm.dcm", "regions": "regions-ann.dcm"}  # in an export folder


@dataclass
class DicomResult:
    """One DICOM result built for the slide."""

    kind: str  # 'report', 'heatmap' or 'regions' (a key of FILES)
    dataset: object  # the pydicom Dataset (highdicom SR, Parametric Map or Bulk Annotations)
    what: str  # for the user: 'report SR (12 sentences)'


def result_kinds(report, heatmap, regions) -> list[str]:
    """The kinds asked for, in FILES order: a report and a heatmap when not None, regions when there are some."""
    return [k for k, given in zip(FILES, (report is not None, heatmap is not None, bool(regions))) if given]


def iter_results(
    source, report: dict | None, heatmap, regions: list, deidentify_key: str | bytes | None = None
) -> Iterator[DicomResult]:
    """Each result asked for, built in FILES order: the report (``{'text', 'sentences', 'provenance'}``) as a
    Comprehensive SR, the heatmap as a Parametric Map, the regions as Bulk Simple Annotations (with the heatmap's
    value per region when there is one)."""
    from napari_pathalign.io.dicom_annotations import regions_bulk_annotations
    from napari_pathalign.io.dicom_results import heatmap_parametric_map, report_sr

    key = deidentify_key
    for kind in result_kinds(report, heatmap, regions):
        if kind == "report":
            ds = report_sr(source, report["text"], report["sentences"], report["provenance"], deidentify_key=key)
            yield DicomResult(kind, ds, f"report SR ({len(report['sentences'])} sentences)")
        elif kind == "heatmap":
            ds = heatmap_parametric_map(source, heatmap, deidentify_key=key)
            yield DicomResult(kind, ds, f"heatmap Parametric Map ({heatmap.title}, {len(heatmap)} patches)")
        else:
            ds = regions_bulk_annotations(source, regions, heatmap=heatmap, deidentify_key=key)
            yield DicomResult(kind, ds, f"bulk annotations ({len(regions)} regions)")
