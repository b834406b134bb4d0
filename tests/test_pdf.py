"""PDF export (issue 15): the annual report and the scorecards printed from their HTML with WeasyPrint —
Vietnamese text in embedded fonts, page numbers, SVG charts as vector graphics; when the renderer is
missing the run says what to install and keeps its HTML."""

from __future__ import annotations

import base64
import io
import sys
from pathlib import Path

import nbformat
import pytest
from pypdf import PdfReader

from sipas_lib.runner import downloads as D
from sipas_lib.runner.export import PDF_INSTALL_HINT, PdfUnavailable, export_html, export_pdf, pdf_renderer
from sipas_lib.runner.records import FAILED, OK, NotebookRun

TITLE = "Phiếu điểm SIPAS — Sở Tư pháp"
SENTENCE = "Chỉ số hài lòng về sự phục vụ hành chính: 87,57 % (KTC 95 %: 86,6–88,5 %)."


def _chart(fmt: str) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4, 2.5))
    ax.bar(["Tiếp cận", "Thủ tục"], [0.8, 0.9])
    ax.set_title("Chỉ số theo yếu tố")
    buffer = io.BytesIO()
    fig.savefig(buffer, format=fmt)
    plt.close(fig)
    return buffer.getvalue()


def _report_html(tmp_path: Path, rows: int = 80) -> Path:
    """An executed-looking notebook (no kernel) exported by the runner's own HTML export: a heading,
    a sentence, a long table (several pages), one SVG chart and one PNG chart."""
    nb = nbformat.v4.new_notebook()
    table = "<table><tr><th>Đơn vị</th><th>Chỉ số</th></tr>" + "".join(
        f"<tr><td>Phường Hoàn Kiếm {k}</td><td>{80 + k % 20},{k % 10} %</td></tr>" for k in range(rows)) + "</table>"
    code = nbformat.v4.new_code_cell("")
    code.outputs = [
        nbformat.v4.new_output("display_data", {"text/markdown": f"# {TITLE}\n\n{SENTENCE}"}),
        nbformat.v4.new_output("display_data", {"image/svg+xml": _chart("svg").decode("utf-8")}),
        nbformat.v4.new_output("display_data", {"image/png": base64.b64encode(_chart("png")).decode()}),
        nbformat.v4.new_output("display_data", {"text/html": table}),
    ]
    nb.cells = [code]
    executed = tmp_path / "executed.ipynb"
    nbformat.write(nb, executed)
    html = tmp_path / "html" / "unit_scorecard" / "S01.html"
    export_html(executed, html, title=TITLE, lang="vi")
    return html


def _images(reader: PdfReader) -> int:
    """Distinct raster images (XObjects of subtype /Image) in the document, also inside form XObjects
    (pages may share one resource dictionary, so an image is counted once by its object number)."""
    seen: set[int] = set()

    def walk(resources):
        xobjects = (resources or {}).get("/XObject") or {}
        for ref in xobjects.values():
            obj = ref.get_object()
            if obj.get("/Subtype") == "/Image":
                seen.add(ref.idnum)
            elif obj.get("/Subtype") == "/Form":
                walk(obj.get("/Resources"))

    for page in reader.pages:
        walk(page.get("/Resources"))
    return len(seen)


def _fonts(reader: PdfReader) -> dict[str, bool]:
    """Font name -> embedded (has a font file), over all pages."""
    fonts = {}
    for page in reader.pages:
        for ref in ((page.get("/Resources") or {}).get("/Font") or {}).values():
            font = ref.get_object()
            descendants = font.get("/DescendantFonts")
            target = descendants[0].get_object() if descendants else font
            descriptor = target.get("/FontDescriptor")
            descriptor = descriptor.get_object() if descriptor is not None else {}
            fonts[str(font.get("/BaseFont"))] = any(k in descriptor for k in ("/FontFile", "/FontFile2", "/FontFile3"))
    return fonts


@pytest.mark.slow
def test_pdf_has_vietnamese_text_embedded_fonts_page_numbers_and_vector_charts(tmp_path):
    html = _report_html(tmp_path)
    pdf = tmp_path / "S01.pdf"
    seconds = export_pdf(html, pdf)
    assert seconds > 0 and pdf.read_bytes().startswith(b"%PDF")
    reader = PdfReader(str(pdf))
    pages = len(reader.pages)
    assert pages >= 2
    text = [page.extract_text() for page in reader.pages]
    # Vietnamese survives: extracted text is exactly what the page said
    assert TITLE in text[0] and SENTENCE in " ".join(text[0].split())
    assert "Phường Hoàn Kiếm 79" in "".join(text)
    # page numbers "n / N" in every footer
    for k, page_text in enumerate(text, 1):
        assert f"{k} / {pages}" in page_text
    # every font embedded (a subset of DejaVu Sans, which has all Vietnamese glyphs)
    fonts = _fonts(reader)
    assert fonts and all(fonts.values()), fonts
    assert any("DejaVu" in name for name in fonts)
    # the SVG chart is drawn as vector paths: the only raster image is the PNG chart
    assert _images(reader) == 1


def test_missing_renderer_says_what_to_install_and_keeps_the_html(tmp_path, monkeypatch):
    html = _report_html(tmp_path, rows=3)
    before = html.read_bytes()
    monkeypatch.setitem(sys.modules, "weasyprint", None)  # import weasyprint -> ImportError
    with pytest.raises(PdfUnavailable, match="pip install weasyprint"):
        pdf_renderer()
    written, problems = D.write_pdfs([(html, tmp_path / "out.pdf")])
    assert written == [] and len(problems) == 1
    assert "apt-get install libpango-1.0-0" in problems[0] and PDF_INSTALL_HINT in problems[0]
    assert html.read_bytes() == before and not (tmp_path / "out.pdf").exists()


def test_cli_progress_prints_the_install_hint(capsys):
    from rich.console import Console

    from sipas_lib.cli import _RichProgress

    console = Console(file=io.StringIO(), width=400, soft_wrap=True)
    _RichProgress(console)("downloads", D.Downloads([Path("a.sav")], [PDF_INSTALL_HINT]))
    out = console.file.getvalue()
    assert "downloads: 1 file(s)" in out and "pip install weasyprint" in out


def _run(kind, stage, html, status=OK):
    return NotebookRun(kind, stage, stage, Path("x.ipynb"), Path("x.ipynb"), html, status, stage=stage)


def test_pdf_targets_are_the_annual_report_and_the_scorecards(tmp_path):
    run_dir = tmp_path / "run"
    pages = {name: run_dir / "html" / name for name in
             ("60_annual_report.html", "50_index_ranking.html", "unit_scorecard/S01.html", "unit_scorecard/D01.html")}
    for page in pages.values():
        page.parent.mkdir(parents=True, exist_ok=True)
        page.write_text("<p>x</p>", encoding="utf-8")
    runs = [_run("stage", "annual_report", pages["60_annual_report.html"]),
            _run("stage", "index_ranking", pages["50_index_ranking.html"]),
            _run("fanout", "unit_scorecard", pages["unit_scorecard/S01.html"]),
            _run("fanout", "unit_scorecard", pages["unit_scorecard/D01.html"], FAILED)]
    targets = D.pdf_targets(runs, run_dir)
    assert [pdf.relative_to(run_dir).as_posix() for _, pdf in targets] == [
        "downloads/pdf/60_annual_report.pdf", "downloads/pdf/unit_scorecard/S01.pdf"]


def test_pdfs_are_written_in_parallel(tmp_path):
    pages = []
    for k in range(3):
        page = tmp_path / f"p{k}.html"
        page.write_text(f"<h1>Báo cáo {k}</h1>", encoding="utf-8")
        pages.append((page, tmp_path / "pdf" / f"p{k}.pdf"))
    pages.append((tmp_path / "missing.html", tmp_path / "pdf" / "missing.pdf"))
    written, problems = D.write_pdfs(pages, workers=2)
    assert written == [pdf for _, pdf in pages[:3]]
    assert len(problems) == 1 and "missing.html" in problems[0]
    assert "Báo cáo 2" in PdfReader(str(written[2])).pages[0].extract_text()
