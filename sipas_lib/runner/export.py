"""HTML export for reviewers: no code, no prompts, no scripts, nothing fetched from a CDN."""

from __future__ import annotations

import os
import re
import threading
import time
from pathlib import Path

from sipas_lib import config

TEMPLATES_DIR = config.PACKAGE_DIR / "templates"
REMOVED_CELL_TAGS = frozenset({"remove-cell", "parameters", "injected-parameters"})

_SCRIPT_BLOCK = re.compile(r"<script\b[^>]*>.*?</script\s*>", re.IGNORECASE | re.DOTALL)
_SCRIPT_OPEN = re.compile(r"<script\b[^>]*/?>", re.IGNORECASE)
_REMOTE_LINK = re.compile(r"<link\b[^>]*\bhref\s*=\s*[\"']?\s*(?:https?:)?//[^>]*>", re.IGNORECASE)
_REMOTE_IMPORT = re.compile(r"@import\s+(?:url\()?\s*[\"']?\s*(?:https?:)?//[^;]*;?", re.IGNORECASE)
_REMOTE_SRC = re.compile(
    r"<(?:script|iframe|img|embed|object|source|audio|video)\b[^>]*\b(?:src|data)\s*=\s*[\"']?\s*(?:https?:)?//",
    re.IGNORECASE,
)


def make_offline(html: str) -> str:
    """Remove everything that would run or fetch code from the network.

    Every ``<script>`` element (external loaders such as require.js, MathJax or mermaid from a
    CDN, and inline JavaScript outputs) and every ``<link>``/``@import`` of a remote stylesheet
    is removed. Reports are static documents: tables are HTML, charts are embedded PNG.
    """
    html = _SCRIPT_BLOCK.sub("", html)
    html = _SCRIPT_OPEN.sub("", html)
    html = _REMOTE_LINK.sub("", html)
    html = _REMOTE_IMPORT.sub("", html)
    return html


def find_online_references(html: str) -> list[str]:
    """What in an HTML page would run a script or need the network (empty list = offline).

    Checks for any ``<script`` tag, remote ``<link href>``, CSS ``@import`` of a remote URL and
    remote ``src`` attributes (scripts, frames, images, media). Plain hyperlinks
    (``<a href="https://...">``) and XML namespaces are allowed: they load nothing.
    """
    problems: list[str] = []
    for pattern in (_SCRIPT_OPEN, _REMOTE_LINK, _REMOTE_IMPORT, _REMOTE_SRC):
        problems.extend(m.group(0)[:120] for m in pattern.finditer(html))
    return problems


def _markdown_text(node) -> str:
    """Plain first sentence-ish text of a Markdown cell or a ``text/markdown`` output."""
    if getattr(node, "cell_type", None) == "markdown":
        text = node.source
    elif getattr(node, "cell_type", None) is None and "data" in node:
        text = node["data"].get("text/markdown", "")
    else:
        return ""
    text = "".join(text) if isinstance(text, list) else str(text)
    text = re.sub(r"<[^>]+>|[#*_`>|]|\$", " ", text)
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    return " ".join(text.split())


#: Chart outputs that get an alt text (their notebook's own, else the sentence that follows them).
_IMAGE_TYPES = ("image/png", "image/svg+xml")
_IMG_WITHOUT_ALT = re.compile(r"<img\b(?![^>]*\balt=)", re.IGNORECASE)
_OUTPUT_DIV = re.compile(r'(<div class="[^"]*\bjp-OutputArea-output\b[^"]*")(?![^>]*\btabindex=)')
_NON_ASCII_REF = re.compile(r"&#(\d{3,7});")


def _readable_refs(html: str) -> str:
    """``&#225;`` -> ``á``: character references of non-ASCII letters (headings) as the characters
    themselves, so the page's text is searchable as it reads; ASCII references (``&#60;``) stay."""
    return _NON_ASCII_REF.sub(lambda m: chr(int(m.group(1))) if 127 < int(m.group(1)) < 0x110000 else m.group(0), html)


_EXPORTERS = threading.local()


def _exporter(lang: str):
    """The runner's HTML exporter for ``lang`` (one per thread: an exporter keeps per-page state)."""
    cached = getattr(_EXPORTERS, "by_lang", None)
    if cached is None:
        cached = _EXPORTERS.by_lang = {}
    if lang not in cached:
        cached[lang] = _build_exporter(lang)
    return cached[lang]


def _build_exporter(lang: str):
    from nbconvert import HTMLExporter
    from nbconvert.exporters.templateexporter import TemplateExporter
    from nbconvert.filters.highlight import Highlight2HTML
    from nbconvert.filters.widgetsdatatypefilter import WidgetsDataTypeFilter
    from nbconvert.preprocessors import Preprocessor, TagRemovePreprocessor

    class ReviewerPreprocessor(Preprocessor):
        """Prepare an executed notebook for reviewers.

        * Drop warnings printed to stderr: they are for the analyst (kept in the executed
          notebook). Tracebacks of failed cells are ``error`` outputs and stay.
        * Give every chart (PNG or SVG) an alt text: the notebook's own (``metadata[<type>]["alt"]``),
          else the sentence that follows the chart (the conventions ask for one), else "chart".
        """

        def preprocess(self, nb, resources):
            fallback = "Biểu đồ" if lang == "vi" else "Chart"
            cells = nb.cells
            for i, cell in enumerate(cells):
                if cell.cell_type != "code" or not cell.get("outputs"):
                    continue
                outputs = [o for o in cell.outputs if not (o.output_type == "stream" and o.get("name") == "stderr")]
                following = _markdown_text(cells[i + 1]) if i + 1 < len(cells) else ""
                for k, out in enumerate(outputs):
                    for image in (t for t in _IMAGE_TYPES if t in out.get("data", {})):
                        meta = out.setdefault("metadata", {}).setdefault(image, {})
                        if not meta.get("alt"):
                            printed = next(
                                (_markdown_text(o) for o in outputs[k + 1:] if "text/markdown" in o.get("data", {})), ""
                            )
                            meta["alt"] = (printed or following or fallback)[:300]
                cell.outputs = outputs
            return nb, resources

    class ReviewerExporter(HTMLExporter):
        """nbconvert's HTML exporter without its last step, a BeautifulSoup pass over the whole page that
        adds alt texts and ``tabindex`` (~90 % of the export time of a page with large tables): the
        template gives every chart its alt text, and two regular expressions do the rest."""

        def from_notebook_node(self, nb, resources=None, **kw):
            langinfo = nb.metadata.get("language_info", {})
            lexer = langinfo.get("pygments_lexer", langinfo.get("name", None))
            self.register_filter("highlight_code", self.filters.get(
                "highlight_code", Highlight2HTML(pygments_lexer=lexer, parent=self)))
            resources = self._init_resources(resources)
            self.register_filter("filter_data_type", WidgetsDataTypeFilter(
                notebook_metadata=self._nb_metadata, parent=self, resources=resources))
            html, resources = TemplateExporter.from_notebook_node(self, nb, resources, **kw)
            html = _IMG_WITHOUT_ALT.sub('<img alt=""', html)  # an image the notebook did not describe
            html = _OUTPUT_DIV.sub(r'\1 tabindex="0"', html)  # outputs reachable from the keyboard
            return _readable_refs(html), resources

    exporter = ReviewerExporter(
        template_name="lab",
        extra_template_paths=[str(TEMPLATES_DIR)],
        template_file="sipas_report.html.j2",
        exclude_input=True,
        exclude_input_prompt=True,
        exclude_output_prompt=True,
        exclude_output_stdin=True,
        language_code=lang,
        # belt and braces: the template does not emit them, but never point at a CDN
        require_js_url="",
        mathjax_url="",
        mermaid_js_url="",
        mermaid_layout_elk_js_url="",
        jquery_url="",
        widget_renderer_url="",
        jupyter_widgets_base_url="",
    )
    exporter.register_preprocessor(
        TagRemovePreprocessor(
            remove_cell_tags=set(REMOVED_CELL_TAGS),
            remove_all_outputs_tags={"remove-output"},
            enabled=True,
        ),
        enabled=True,
    )
    exporter.register_preprocessor(ReviewerPreprocessor(), enabled=True)
    return exporter


def export_html(
    executed: str | os.PathLike,
    html_path: str | os.PathLike,
    *,
    title: str | None = None,
    lang: str = config.DEFAULT_LANG,
) -> float:
    """Export an executed notebook to an offline HTML page without code; returns seconds taken."""
    import nbformat

    started = time.perf_counter()
    executed, html_path = Path(executed), Path(html_path)
    nb = nbformat.read(executed, as_version=4)
    if title:
        nb.metadata["title"] = title
    body, _ = _exporter(lang).from_notebook_node(nb, resources={"metadata": {"name": title or executed.stem}})
    html_path.parent.mkdir(parents=True, exist_ok=True)
    html_path.write_text(make_offline(body), encoding="utf-8")
    return time.perf_counter() - started




# --------------------------------------------------------------------------------------------
# PDF: the same HTML printed by WeasyPrint
# --------------------------------------------------------------------------------------------

#: What to install when WeasyPrint or the Pango library it draws text with is missing.
PDF_INSTALL_HINT = (
    "PDF export needs WeasyPrint and the Pango library: `pip install weasyprint` (in .venv: "
    "`.venv/bin/pip install weasyprint`), and on Debian/Ubuntu `apt-get install libpango-1.0-0 "
    "libpangoft2-1.0-0 fonts-dejavu-core`, on macOS `brew install pango`, on Windows see "
    "https://doc.courtbouillon.org/weasyprint/stable/first_steps.html. The HTML reports were written."
)

#: Print stylesheet added to every page: A4, page numbers "n / N" in the footer, a font with
#: every Vietnamese glyph (DejaVu Sans ships with Debian/Ubuntu and most Linux systems; Noto
#: Sans and Arial are fallbacks), tables that do not split a row across pages, charts fitted to
#: the page width.
PDF_CSS = """
@page { size: A4; margin: 16mm 14mm 18mm 14mm;
        @bottom-center { content: counter(page) " / " counter(pages);
                         font-family: "DejaVu Sans", "Noto Sans", Arial, sans-serif; font-size: 8pt; color: #444; } }
html, body, .jp-Notebook, .jp-RenderedHTMLCommon, .jp-RenderedMarkdown, table, th, td {
    font-family: "DejaVu Sans", "Noto Sans", Arial, sans-serif !important; }
body { font-size: 9.5pt; margin: 0; padding: 0; }
.jp-Notebook { padding: 0 !important; }
img, svg { max-width: 100% !important; height: auto !important; page-break-inside: avoid; }
tr, img, svg { page-break-inside: avoid; break-inside: avoid; }
h1, h2, h3 { page-break-after: avoid; break-after: avoid; }
table { font-size: 8pt; }
details > summary { font-weight: bold; }
"""


class PdfUnavailable(RuntimeError):
    """WeasyPrint (or the Pango library it needs) is not installed; the message says what to install."""


def pdf_renderer():
    """WeasyPrint's ``HTML`` class, or :class:`PdfUnavailable` with :data:`PDF_INSTALL_HINT`.

    WeasyPrint is a pip package, but it loads Pango (a system library) when imported: an
    ``OSError`` at import means Pango is missing.
    """
    try:
        from weasyprint import HTML
    except (ImportError, OSError) as exc:
        raise PdfUnavailable(f"{PDF_INSTALL_HINT} ({type(exc).__name__}: {exc})") from None
    return HTML


def export_pdf(html_path: str | os.PathLike, pdf_path: str | os.PathLike) -> float:
    """Print an exported HTML report to PDF (WeasyPrint); returns seconds taken.

    The PDF is the same page as the HTML with :data:`PDF_CSS` added: A4, page numbers, fonts
    embedded (WeasyPrint embeds the subset of every font it uses, so Vietnamese renders on any
    reader). Charts are embedded as they are in the HTML: raster (PNG) today; a chart that a
    notebook outputs as SVG (``image/svg+xml``) is drawn as vector graphics.

    Raises
    ------
    PdfUnavailable
        When WeasyPrint or Pango is missing (the message says what to install).
    """
    HTML = pdf_renderer()
    import logging

    from weasyprint import CSS

    # WeasyPrint warns about every CSS property of the page's stylesheet it does not print
    # (hover effects, sticky headers): noise for a reader of ``sipas report``
    logging.getLogger("weasyprint").setLevel(logging.ERROR)
    started = time.perf_counter()
    html_path, pdf_path = Path(html_path), Path(pdf_path)
    pdf_path.parent.mkdir(parents=True, exist_ok=True)
    # our pages are UTF-8 (a page without <meta charset> would otherwise be read as Windows-1252)
    HTML(filename=str(html_path), base_url=str(html_path.parent), encoding="utf-8").write_pdf(
        str(pdf_path), stylesheets=[CSS(string=PDF_CSS)])
    return time.perf_counter() - started
