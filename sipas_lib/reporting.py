"""Formatting and presentation helpers shared by every report notebook.

Numbers are shown in the reader's language: Vietnamese uses a decimal comma and a dot for
thousands (``85,15 %``, ``1.250``), English the reverse (``85.15 %``, ``1,250``).

The module also holds what every published page needs:

* **labels** — the report texts in Vietnamese and English (:data:`LABELS`, :func:`label`,
  :func:`narrate`), so notebooks contain no hard-coded prose in one language;
* **escaping** — every string that comes from data (unit names, free-text answers, overdue
  reasons) is escaped before it reaches Markdown or HTML (:func:`esc`, :func:`md_escape`,
  :func:`html_table`), so a unit called ``<script>alert(1)</script>`` is shown, never run;
* **charts** — a greyscale-readable matplotlib style and a helper that puts title, axis labels,
  units and *n* on every chart (:func:`chart_style`, :func:`finish_chart`).

The module imports only the standard library at load time (matplotlib and pandas are imported
inside the functions that need them), so a scorecard notebook starts quickly.
"""

from __future__ import annotations

import html
import math
import re
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

from sipas_lib.config import LANGUAGES
from sipas_lib.texts import load_texts

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

def _check_lang(lang: str) -> str:
    if lang not in LANGUAGES:
        raise ValueError(f"unknown language {lang!r}; expected one of {', '.join(LANGUAGES)}")
    return lang


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    if type(value).__name__ in {"NAType", "NaTType"}:
        return True
    try:
        return bool(math.isnan(value))
    except (TypeError, ValueError):
        return False


# --------------------------------------------------------------------------------------------
# numbers
# --------------------------------------------------------------------------------------------


def fmt_num(value: float | int | None, decimals: int = 0, lang: str = "vi") -> str:
    """Format a number with the language's decimal and thousands separators.

    Examples
    --------
    >>> fmt_num(1250, lang="vi")
    '1.250'
    >>> fmt_num(85.149, 2, lang="en")
    '85.15'
    """
    _check_lang(lang)
    if _is_missing(value):
        return "–"
    text = f"{float(value):,.{decimals}f}"
    if lang == "vi":
        text = text.replace(",", "\u0000").replace(".", ",").replace("\u0000", ".")
    return text


def fmt_pct(share: float | None, decimals: int = 2, lang: str = "vi", scale: float = 100.0) -> str:
    """Format a share (0-1 by default) as a percentage: ``0.8515 -> '85,15 %'`` in Vietnamese.

    Pass ``scale=1`` when the value is already in percent.
    """
    if _is_missing(share):
        return "–"
    return f"{fmt_num(share * scale, decimals, lang)} %"


def fmt_pp(change: float | None, decimals: int = 2, lang: str = "vi", scale: float = 100.0) -> str:
    """Format a change of a share in percentage points, with its sign.

    ``0.0125 -> '+1,25 điểm %'`` (vi) or ``'+1.25 pp'`` (en). Pass ``scale=1`` for changes
    already in points.
    """
    _check_lang(lang)
    if _is_missing(change):
        return "–"
    value = float(change) * scale
    sign = "+" if value > 0 else ("−" if value < 0 else "±")
    unit = "điểm %" if lang == "vi" else "pp"
    return f"{sign}{fmt_num(abs(value), decimals, lang)} {unit}"


def fmt_ci(low: float | None, high: float | None, decimals: int = 1, lang: str = "vi",
           scale: float = 100.0) -> str:
    """Format a confidence interval of a share: ``(0.83, 0.87) -> '83,0–87,0 %'``."""
    if _is_missing(low) or _is_missing(high):
        return "–"
    return f"{fmt_num(low * scale, decimals, lang)}–{fmt_num(high * scale, decimals, lang)} %"


def fmt_rank_set(rank: Any, low: Any, high: Any, total: int | None = None, lang: str = "vi") -> str:
    """Rank with its confidence set: ``(3, 1, 6) -> '3 (1–6)'``, or ``'3 (1–6) / 20'``."""
    if _is_missing(rank):
        return "–"
    text = f"{int(rank)}"
    if not (_is_missing(low) or _is_missing(high)):
        text += f" ({int(low)}–{int(high)})"
    if total:
        text += f" / {int(total)}"
    return text


def fmt_range(low: Any, high: Any) -> str:
    """A range of whole numbers, e.g. a rank confidence set: ``(1, 6) -> '1–6'``; ``'–'`` when missing."""
    if _is_missing(low) or _is_missing(high):
        return "–"
    return f"{int(low)}–{int(high)}"


# --------------------------------------------------------------------------------------------
# escaping
# --------------------------------------------------------------------------------------------

_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+!|~>])")


def esc(text: Any) -> str:
    """HTML-escape any value coming from data (``<``, ``>``, ``&``, quotes).

    >>> esc('<script>alert(1)</script>')
    '&lt;script&gt;alert(1)&lt;/script&gt;'
    """
    return html.escape("" if _is_missing(text) else str(text), quote=True)


def md_escape(text: Any) -> str:
    """Escape a data string for use inside Markdown.

    Markdown passes raw HTML through to the page, so the text is HTML-escaped first and then the
    Markdown punctuation (``* _ [ ] ( ) # | ...``) is backslash-escaped, so a unit name can neither
    inject a tag nor turn into a link or heading. Line breaks become spaces.
    """
    safe = html.escape("" if _is_missing(text) else str(text), quote=False).replace("\r", " ").replace("\n", " ")
    return _MD_SPECIAL.sub(r"\\\1", safe)


def html_table(df: "pd.DataFrame", caption: str | None = None, *, numeric_right: bool = True,
               flag_column: str | None = None, row_classes: Sequence[str] | None = None) -> str:
    """Render a (pre-formatted) DataFrame as an escaped HTML table for ``display(HTML(...))``.

    Every cell, header and the caption are HTML-escaped. Format numbers first (``fmt_pct``...)
    so they appear in the reader's language. Rows whose ``flag_column`` is truthy get the CSS
    class ``flagged`` (shown in grey italics) and the column itself is dropped. ``row_classes``
    gives each row extra CSS classes (``section`` rows are bold). Columns whose values are
    mostly numbers are right-aligned.
    """
    import pandas as pd

    frame = df.copy()
    flags = None
    if flag_column is not None:
        if flag_column not in frame.columns:
            raise ValueError(f"html_table: flag column {flag_column!r} is not in the table "
                             f"(columns: {', '.join(map(str, frame.columns))})")
        flags = frame.pop(flag_column).fillna(False).astype(bool).to_numpy()
    numeric = [numeric_right and _looks_numeric(frame[c]) for c in frame.columns]
    head = "".join(f'<th style="text-align:{"right" if numeric[j] else "left"}">{esc(c)}</th>'
                   for j, c in enumerate(frame.columns))
    rows = []
    values = frame.astype(object).where(pd.notna(frame), "–").to_numpy()
    for i, row in enumerate(values):
        classes = []
        if flags is not None and flags[i]:
            classes.append("flagged")
        if row_classes is not None and row_classes[i]:
            classes.append(re.sub(r"[^a-z0-9 -]", "", str(row_classes[i]).lower()))
        cls = f' class="{" ".join(classes)}"' if classes else ""
        cells = "".join(
            (f'<td style="text-align:right;white-space:nowrap">{esc(v)}</td>' if len(str(v)) <= 28
             else f'<td style="text-align:right">{esc(v)}</td>') if numeric[j]
            else f'<td style="text-align:left">{esc(v)}</td>'
            for j, v in enumerate(row)
        )
        rows.append(f"<tr{cls}>{cells}</tr>")
    cap = f"<caption>{esc(caption)}</caption>" if caption else ""
    return (f'<table class="sipas-table">{cap}<thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table>")


_NUMERIC_TEXT = re.compile(r"^[+\-−±]?\d[\d.,\s–/%]*(pp|điểm %)?(\s*\([\d.,\s/–%]*\))?$")


def _looks_numeric(column: "pd.Series") -> bool:
    sample = [str(v) for v in column.head(60) if not _is_missing(v) and str(v).strip() not in ("–", "")]
    return bool(sample) and sum(bool(_NUMERIC_TEXT.match(v)) for v in sample) >= 0.8 * len(sample)


#: CSS added once per report (tables, flagged rows, callouts); no external resources.
REPORT_CSS = """
<style>
.sipas-table {border-collapse: collapse; margin: 0.5em 0 1em 0; font-size: 0.92em;}
.sipas-table caption {caption-side: top; text-align: left; font-weight: bold; padding: 0.3em 0;}
.sipas-table th {border-bottom: 2px solid #333; padding: 0.25em 0.6em; text-align: left;
                 background: #f0f0f0;}
.sipas-table td {border-bottom: 1px solid #ddd; padding: 0.2em 0.6em; vertical-align: top;
                 min-width: 2.5em;}
.sipas-table tr.flagged td {color: #666; font-style: italic;}
.sipas-table tr.section td {font-weight: bold; background: #fafafa;}
details {margin: 0.3em 0;} details summary {cursor: pointer; font-weight: bold;}
.sipas-note {border-left: 4px solid #888; background: #f6f6f6; padding: 0.4em 0.8em;
             margin: 0.6em 0;}
</style>
"""


# --------------------------------------------------------------------------------------------
# labels
# --------------------------------------------------------------------------------------------

#: Report texts by key, in Vietnamese and English. ``{name}`` placeholders are filled by
#: :func:`label` / :func:`narrate` (data values are escaped there).
LABELS: dict[str, dict[str, str]] = load_texts("reporting")


def label(key: str, lang: str = "vi", **values: Any) -> str:
    """Return the text for ``key`` in ``lang``, with ``{placeholders}`` filled in verbatim.

    Use :func:`narrate` when the values come from data and the text goes into Markdown.
    """
    _check_lang(lang)
    try:
        entry = LABELS[key]
    except KeyError:
        raise ValueError(f"no report label {key!r}; add it to sipas_lib.reporting.LABELS") from None
    text = entry[lang]
    return text.format(**values) if values else text


def narrate(key: str, lang: str = "vi", **values: Any) -> str:
    """Return Markdown for ``key`` with every string value Markdown/HTML-escaped.

    Numbers should be pre-formatted with :func:`fmt_pct`/:func:`fmt_num` (they are escaped too,
    which leaves ``85,15 %`` unchanged). Wrap a value in :class:`Raw` to insert trusted Markdown
    (e.g. a formula written by the library).
    """
    safe = {k: (v.text if isinstance(v, Raw) else md_escape(v)) for k, v in values.items()}
    return label(key, lang, **safe)


class Raw:
    """Mark a string as trusted Markdown produced by the library (not data) for :func:`narrate`."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:  # pragma: no cover
        return f"Raw({self.text!r})"


def register_labels(labels: Mapping[str, Mapping[str, str]]) -> None:
    """Add report texts (``{key: {"vi": ..., "en": ...}}``); both languages are required."""
    for key, entry in labels.items():
        missing = [lang for lang in LANGUAGES if lang not in entry]
        if missing:
            raise ValueError(f"label {key!r} has no text for {', '.join(missing)}")
        LABELS[key] = dict(entry)


def unit_name(units: "pd.DataFrame", unit_id: str, lang: str = "vi") -> str:
    """A unit's name in the reader's language from a units table (falls back to the id).

    The result is raw data: escape it (:func:`md_escape`/:func:`esc`) before display.
    """
    column = "name_vi" if lang == "vi" else "name_en"
    if units is None or column not in getattr(units, "columns", []):
        return str(unit_id)
    hit = units.loc[units["unit_id"].astype(str) == str(unit_id), column]
    if hit.empty or _is_missing(hit.iloc[0]) or str(hit.iloc[0]).strip() == "":
        return str(unit_id)
    return str(hit.iloc[0])


# --------------------------------------------------------------------------------------------
# charts
# --------------------------------------------------------------------------------------------

#: Grey levels distinguishable when printed in black and white (dark to light).
GREYS = ("#1a1a1a", "#6e6e6e", "#a8a8a8", "#d4d4d4")
#: Hatches and markers that carry the same distinction without colour.
HATCHES = ("", "//", "..", "xx", "\\\\", "++")
MARKERS = ("o", "s", "^", "D", "v", "P")
LINESTYLES = ("-", "--", ":", "-.")


def chart_style() -> dict[str, Any]:
    """Apply (and return) the report's matplotlib style: greys, markers, readable fonts.

    Colours cycle through :data:`GREYS` together with markers and line styles, so series stay
    distinguishable in greyscale print; mathtext is switched off so a ``$`` in a unit name is
    printed as it is.
    """
    import matplotlib as mpl
    from cycler import cycler

    style = {
        "figure.dpi": 96,
        "savefig.dpi": 96,
        "figure.figsize": (8.0, 4.5),
        "font.size": 10,
        "axes.titlesize": 11,
        "axes.titleweight": "bold",
        "axes.labelsize": 10,
        "axes.grid": True,
        "grid.color": "#dddddd",
        "grid.linewidth": 0.6,
        "axes.spines.top": False,
        "axes.spines.right": False,
        "axes.prop_cycle": cycler(color=list(GREYS)) + cycler(marker=list(MARKERS[:4]))
        + cycler(linestyle=list(LINESTYLES)),
        "image.cmap": "Greys",
        "legend.frameon": False,
        "text.parse_math": False,
        "svg.fonttype": "path",  # text drawn as outlines: the SVG needs no font where it is opened
        "svg.hashsalt": "sipas",  # stable element ids, so the same run writes the same page
    }
    mpl.rcParams.update(style)
    try:  # charts shown by plt.show() in a notebook are vector (SVG), like show_figure's
        from matplotlib_inline.backend_inline import set_matplotlib_formats

        set_matplotlib_formats("svg")
    except ImportError:  # pragma: no cover - outside Jupyter
        pass
    return style


def finish_chart(ax: Any, *, title: str, xlabel: str, ylabel: str, n: int | None = None,
                 lang: str = "vi", source: str | None = None) -> Any:
    """Put the title (with *n*), axis labels and an optional source line on a chart.

    ``title``/``xlabel``/``ylabel`` should name the unit of measure, e.g. ``"Tỷ lệ hài lòng (%)"``.
    Returns the axes. Raises ``ValueError`` when a title or axis label is empty, so no chart is
    published without them.
    """
    _check_lang(lang)
    for name, text in (("title", title), ("xlabel", xlabel), ("ylabel", ylabel)):
        if not str(text).strip():
            raise ValueError(f"finish_chart: the chart's {name} is empty; every chart needs a "
                             "title and both axis labels")
    import textwrap

    full = title if n is None else f"{title} (n = {fmt_num(n, lang=lang)})"
    # wrap a long title to the figure's width (about 9.5 characters per inch at 11 pt)
    width = max(40, int(ax.figure.get_figwidth() * 9.5))
    ax.set_title(textwrap.fill(full, width), loc="left")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if source:
        ax.figure.text(0.01, 0.005, source, fontsize=7.5, color="#555555", ha="left", va="bottom")
    return ax


def pct_axis(ax: Any, axis: str = "x", lang: str = "vi", decimals: int = 0) -> Any:
    """Format an axis already in percent with the language's decimal separator."""
    from matplotlib.ticker import FuncFormatter

    fmt = FuncFormatter(lambda v, _pos: fmt_num(v, decimals, lang))
    (ax.xaxis if axis == "x" else ax.yaxis).set_major_formatter(fmt)
    return ax


# --------------------------------------------------------------------------------------------
# showing text, tables and figures (results are read with sipas_lib.schemas.read_result)
# --------------------------------------------------------------------------------------------


def show(markdown: str) -> None:
    """Display Markdown in a notebook (the text must already be escaped: see :func:`narrate`)."""
    from IPython.display import Markdown, display

    display(Markdown(markdown))


def show_html(html_text: str) -> None:
    """Display trusted HTML built by this module (e.g. :func:`html_table`)."""
    from IPython.display import HTML, display

    display(HTML(html_text))


def show_figure(fig: Any) -> None:
    """Display a matplotlib figure (e.g. from :mod:`sipas_lib.charts`) as embedded SVG.

    The image is rendered here, not by the notebook's matplotlib backend, so a figure built
    without ``pyplot`` shows exactly once and the HTML page opens offline. SVG keeps charts
    vector in the HTML and in the PDF made from it. The SVG element goes to the notebook as
    matplotlib wrote it: ``IPython.display.SVG`` would parse and re-serialise it with
    ``xml.dom.minidom`` (~0.1 CPU-s for a chart of 126 communes, ~1 s in the annual report).
    """
    import io

    from IPython.display import display

    buffer = io.StringIO()
    # no creation date: with svg.hashsalt, the same run writes the same page
    fig.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None})
    svg = buffer.getvalue()
    display({"image/svg+xml": svg[svg.index("<svg"):]}, raw=True)  # the element, without the XML prolog


def show_table(df: "pd.DataFrame", caption: str | None = None, flag_column: str | None = None) -> None:
    """Display a pre-formatted table, escaped (see :func:`html_table`)."""
    show_html(html_table(df, caption, flag_column=flag_column))


def heading(level: int, anchor: str, title: str) -> str:
    """A Markdown heading with an explicit anchor for the table of contents (title escaped)."""
    if not re.fullmatch(r"[a-z0-9-]+", anchor):
        raise ValueError(f"anchor {anchor!r} must be lower-case letters, digits and hyphens")
    return f'<a id="{anchor}"></a>\n\n{"#" * level} {md_escape(title)}'


def toc(entries: Sequence[tuple[str, str]], lang: str = "vi") -> str:
    """A Markdown table of contents from ``(anchor, title)`` pairs."""
    lines = [f"**{label('toc', lang)}**", ""]
    lines += [f"{i}. [{md_escape(title)}](#{anchor})" for i, (anchor, title) in enumerate(entries, 1)]
    return "\n".join(lines)


def not_available(what: str, lang: str = "vi") -> str:
    """The sentence a report shows instead of a section whose input is missing."""
    return narrate("not_available", lang, what=what)


def item_texts(lang: str = "vi", unit_type: str = "district") -> dict[str, str]:
    """Criterion and element code -> short text from the instrument (code itself as fallback)."""
    _check_lang(lang)
    try:
        from sipas_lib.instrument import instrument_for_unit_type

        inst = instrument_for_unit_type(unit_type)
    except Exception:  # no instrument: codes are shown
        return {}
    col = "text_vi" if lang == "vi" else "text_en"
    out = dict(zip(inst.items["code"], inst.items[col].astype(str)))
    ecol = "name_vi" if lang == "vi" else "name_en"
    out.update(dict(zip(inst.elements["code"], inst.elements[ecol].astype(str))))
    return out


def shorten(text: str, width: int = 70) -> str:
    """Cut a long criterion text at a word boundary, with an ellipsis."""
    text = " ".join(str(text).split())
    if len(text) <= width:
        return text
    cut = text[: width - 1].rsplit(" ", 1)[0]
    return cut + "…"
