"""Report as PDF through Qt's own PDF writer (QTextDocument + QPdfWriter), written atomically."""

from __future__ import annotations

import html
import os
import tempfile
from pathlib import Path


def report_html(text: str, provenance: dict, sentences: list[dict]) -> str:
    rows = "".join(f"<tr><td>{s.get('support', 0):.0%}{' (check)' if s.get('flagged') else ''}</td><td>{html.escape(s['text'])}</td></tr>" for s in sentences)
    prov = "".join(f"<li><b>{html.escape(str(k))}</b>: {html.escape(str(v))}</li>" for k, v in provenance.items())
    body = "<br>".join(html.escape(line) for line in text.splitlines())
    return (
        f"<h2>Pathology report (draft assisted by PathAlign)</h2><p>{body}</p>"
        + (f"<h3>Sentences and support</h3><table border='1' cellpadding='3'><tr><th>support</th><th>sentence</th></tr>{rows}</table>" if rows else "")
        + (f"<h3>Provenance</h3><ul>{prov}</ul>" if prov else "")
        + "<p><small>A demo model's draft, not a diagnosis. Every statement must be checked against the slide.</small></p>"
    )


def write_pdf(text: str, provenance: dict, sentences: list[dict], path: str | Path, overwrite: bool = False) -> Path:
    from qtpy.QtGui import QPageSize, QPdfWriter, QTextDocument

    path = Path(path)
    if path.suffix.lower() != ".pdf":
        raise ValueError(f"{path}: expected a .pdf file")
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True to replace it")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    os.close(fd)
    try:
        writer = QPdfWriter(tmp)
        writer.setPageSize(QPageSize(QPageSize.PageSizeId.A4))
        doc = QTextDocument()
        doc.setHtml(report_html(text, provenance, sentences))
        doc.print_(writer)
        del writer  # flushes the file
        if Path(tmp).stat().st_size == 0:
            raise OSError("Qt wrote an empty PDF")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
