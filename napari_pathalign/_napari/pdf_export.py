"""Report as PDF through Qt's own PDF writer (QTextDocument + QPdfWriter), written atomically."""

from __future__ import annotations

import html
from pathlib import Path

from napari_pathalign.core.atomic import atomic_write


def report_html(text: str, provenance: dict, sentences: list[dict]) -> str:
    rows = "".join(
        f"<tr><td>{s.get('support', 0):.0%}{' (check)' if s.get('flagged') else ''}</td>"
        f"<td>{html.escape(s['text'])}</td></tr>"
        for s in sentences
    )
    prov = "".join(f"<li><b>{html.escape(str(k))}</b>: {html.escape(str(v))}</li>" for k, v in provenance.items())
    body = "<br>".join(html.escape(line) for line in text.splitlines())
    scope = provenance.get("in_scope") if isinstance(provenance, dict) else None
    banner = (
        "<p style='background:#8b1a1a;color:white;padding:6px'><b>Out of scope</b> (in-scope probability "
        f"{float(scope.get('score', 0)):.2f}): the slide's tissue is outside what the model was trained on; "
        "its claims are not reliable.</p>"
        if isinstance(scope, dict) and scope.get("flagged")
        else ""
    )
    return (
        f"<h2>Pathology report (draft assisted by PathAlign)</h2>{banner}<p>{body}</p>"
        + (
            "<h3>Sentences and support</h3><table border='1' cellpadding='3'>"
            f"<tr><th>support</th><th>sentence</th></tr>{rows}</table>"
            if rows
            else ""
        )
        + (f"<h3>Provenance</h3><ul>{prov}</ul>" if prov else "")
        + (
            "<p><small>A demo model's draft, not a diagnosis. Every statement must be checked against "
            "the slide.</small></p>"
        )
    )


def write_pdf(text: str, provenance: dict, sentences: list[dict], path: str | Path, overwrite: bool = False) -> Path:
    from qtpy.QtGui import QPageSize, QPdfWriter, QTextDocument

    path = Path(path)
    if path.suffix.lower() != ".pdf":
        raise ValueError(f"{path}: expected a .pdf file")
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True to replace it")
    with atomic_write(path, overwrite=overwrite) as tmp:
        writer = QPdfWriter(str(tmp))
        writer.setPageSize(QPageSize(QPageSize.PageSizeId.A4))
        doc = QTextDocument()
        doc.setHtml(report_html(text, provenance, sentences))
        doc.print_(writer)
        del writer  # flushes the file
        if tmp.stat().st_size == 0:
            raise OSError("Qt wrote an empty PDF")
    return path
