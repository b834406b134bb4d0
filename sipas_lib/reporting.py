"""Formatting and presentation helpers shared by every report notebook.

Numbers are shown in the reader's language: Vietnamese uses a decimal comma and a dot for
thousands (``85,15 %``, ``1.250``), English the reverse (``85.15 %``, ``1,250``).

The module also holds what every published page needs:

* **labels** — the report texts in Vietnamese and English (:data:`LABELS`, :func:`label`,
  :func:`narrate`), so notebooks contain no hard-coded prose in one language;
* **escaping** — every string that comes from data (unit names, free-text answers, overdue
  reasons) is escaped before it reaches Markdown or HTML (:func:`esc`, :func:`md_escape`,
  :func:`html_table`), so a unit called ``<script>alert(1)</script>`` is shown, never run;
* **publishability** — cells with too few respondents are flagged (:func:`publishable_flags`);
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

#: Fewest respondents for a unit's index to be published and ranked (plan 143/KH-UBND does not
#: fix one; 30 is the usual floor for a proportion's normal-approximation CI).
MIN_PUBLISH_N = 30
#: Fewest respondents for a single criterion's index to be shown without a warning.
MIN_PUBLISH_N_ITEM = 10


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


def share_scale(values: Iterable[float]) -> float:
    """Return the factor that turns index values into percent: 100 for shares (0-1), 1 otherwise.

    Result tables store criterion indices as shares (p = Σw·1[y≥4] / Σw); a table already in
    percent (any value above 1.5) is detected and left as it is.
    """
    finite = [float(v) for v in values if not _is_missing(v)]
    return 1.0 if finite and max(finite) > 1.5 else 100.0


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
# publishability
# --------------------------------------------------------------------------------------------


def publishable_flags(df: "pd.DataFrame", n_col: str = "n", min_n: int = MIN_PUBLISH_N,
                      lang: str = "vi") -> "pd.DataFrame":
    """Add ``publishable`` (bool) and ``flag`` (reader's text) columns from a respondent count.

    A cell is publishable when ``n >= min_n``; otherwise its estimate is too imprecise to be
    ranked or compared and reports show it greyed out with the flag text instead of a rank.
    Missing counts are treated as 0. A ``publishable`` column already in ``df`` (stage 50 sets
    one) is respected: a row it marks unpublishable stays flagged.

    Parameters
    ----------
    df
        Table with a respondent count column.
    n_col
        Name of that column.
    min_n
        Fewest respondents needed (default :data:`MIN_PUBLISH_N`).
    """
    _check_lang(lang)
    if n_col not in df.columns:
        raise ValueError(f"publishable_flags: column {n_col!r} not found "
                         f"(columns: {', '.join(map(str, df.columns))})")
    if min_n < 1:
        raise ValueError(f"publishable_flags: min_n must be at least 1, got {min_n}")
    out = df.copy()
    n = out[n_col].fillna(0).astype(float)
    mine = (n >= min_n).to_numpy()
    if "publishable" in out.columns:  # stage 50's flag is kept; a stricter min_n can only add flags
        mine = mine & out["publishable"].fillna(False).astype(bool).to_numpy()
    out["publishable"] = mine
    text = label("flag_too_few", lang, min_n=fmt_num(min_n, lang=lang))
    out["flag"] = [("" if ok else text) for ok in out["publishable"]]
    return out


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
    }
    mpl.rcParams.update(style)
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
    full = title if n is None else f"{title} (n = {fmt_num(n, lang=lang)})"
    ax.set_title(full, loc="left")
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
# report support: reading results, showing text and tables
# --------------------------------------------------------------------------------------------


def read_result(paths: Any, name: str, columns: Sequence[str] | None = None) -> "pd.DataFrame | None":
    """Read ``results/<name>.parquet`` (or ``.csv``) of a run, or ``None`` when it is missing.

    A report shows "not available in this run" for a ``None`` instead of failing, so it degrades
    gracefully when an earlier stage did not produce the table. ``columns`` lists columns the
    report needs: a table without them is treated as missing too.
    """
    import pandas as pd
    from pathlib import Path

    folder = Path(getattr(paths, "results", paths))
    for suffix in (".parquet", ".csv"):
        path = folder / f"{name}{suffix}"
        if path.exists():
            try:
                table = pd.read_parquet(path) if suffix == ".parquet" else pd.read_csv(path)
            except Exception:  # unreadable file: the report says it is not available
                return None
            if columns and any(c not in table.columns for c in columns):
                return None
            return table
    return None


def first_column(df: "pd.DataFrame | None", *candidates: str) -> str | None:
    """The first of ``candidates`` that is a column of ``df`` (``None`` if none is)."""
    if df is None:
        return None
    return next((c for c in candidates if c in df.columns), None)


def show(markdown: str) -> None:
    """Display Markdown in a notebook (the text must already be escaped: see :func:`narrate`)."""
    from IPython.display import Markdown, display

    display(Markdown(markdown))


def show_html(html_text: str) -> None:
    """Display trusted HTML built by this module (e.g. :func:`html_table`)."""
    from IPython.display import HTML, display

    display(HTML(html_text))


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


def overall_indices(indices: "pd.DataFrame") -> "pd.DataFrame":
    """The unit-level overall index rows of an ``indices`` table (``level == "overall"``)."""
    if "level" not in indices.columns:
        raise ValueError("indices table has no 'level' column (expected item|element|overall)")
    return indices.loc[indices["level"] == "overall"].drop_duplicates("unit_id").reset_index(drop=True)


def weakest_criteria(priorities: "pd.DataFrame | None", indices: "pd.DataFrame | None" = None,
                     unit_id: str | None = None, k: int = 3,
                     min_n: int = MIN_PUBLISH_N_ITEM) -> "pd.DataFrame":
    """The ``k`` weakest criteria of one unit (or of every unit when ``unit_id`` is None).

    Reads the stage-50 ``priorities`` table (``rank_in_unit``, 1 = weakest); when the run has none,
    it is computed from ``indices`` with :func:`sipas_lib.index.improvement_priorities` (the
    module that owns the rule). Returns ``unit_id, code, estimate, ...`` ordered by unit and rank;
    empty when neither table is available.
    """
    import pandas as pd

    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    table = priorities
    if table is None or not {"unit_id", "code", "rank_in_unit"} <= set(table.columns):
        if indices is None:
            return pd.DataFrame(columns=["unit_id", "code", "estimate", "rank_in_unit"])
        from sipas_lib.index import improvement_priorities

        try:
            table = improvement_priorities(indices, n_weakest=k, min_n=min_n)
        except ValueError:
            return pd.DataFrame(columns=["unit_id", "code", "estimate", "rank_in_unit"])
    out = table.loc[table["rank_in_unit"] <= k]
    if unit_id is not None:
        out = out.loc[out["unit_id"].astype(str) == str(unit_id)]
    return out.sort_values(["unit_id", "rank_in_unit"], kind="stable").reset_index(drop=True)

def city_rows(city: "pd.DataFrame | None", group: str) -> "pd.DataFrame | None":
    """Rows of ``city_indices`` for ``group`` (``department``, ``district`` or ``all``).

    The group is read from the first of the columns ``scope`` (stage 50's name), ``group``,
    ``unit_type``, ``unit_id`` present; ``None`` when the table or the group is missing.
    """
    col = first_column(city, "scope", "group", "unit_type", "unit_id")
    if col is None:
        return None
    keys = {"all": ("all", "city", "total", "both")}.get(group, (group,))
    sub = city.loc[city[col].astype(str).str.lower().isin(keys)]
    return None if sub.empty else sub.reset_index(drop=True)


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




_METHOD = {
    "vi": """
**Đối tượng và mẫu.** Tổng thể là các cá nhân, tổ chức đã giao dịch và nhận kết quả giải quyết thủ tục hành chính
(TTHC) tại Bộ phận Một cửa của các sở, ban, ngành và UBND các quận, huyện, thị xã trong năm. Mẫu được chọn ngẫu
nhiên phân tầng (tầng h = đơn vị × lĩnh vực × kênh giao dịch) từ danh sách giao dịch; phiếu được phát qua Bưu điện
hoặc trực tiếp tại Bộ phận Một cửa. Phiếu thu về = phiếu hợp lệ + phiếu bị loại (mỗi phiếu bị loại có một lý do).

**Hài lòng.** Mỗi tiêu chí được chấm 1–5; người trả lời *hài lòng* khi chọn 4 (Hài lòng) hoặc 5 (Rất hài lòng).

**Chỉ số tiêu chí** (tiêu chí i, trọng số w<sub>j</sub> của phiếu j):
p<sub>i</sub> = Σ<sub>j</sub> w<sub>j</sub>·1[y<sub>ij</sub> ≥ 4] / Σ<sub>j</sub> w<sub>j</sub>·1[y<sub>ij</sub> có trả lời].

**Chỉ số yếu tố** (yếu tố e gồm các tiêu chí C<sub>e</sub>): P<sub>e</sub> = (1/|C<sub>e</sub>|)·Σ<sub>i∈C<sub>e</sub></sub> p<sub>i</sub>.
Năm yếu tố: tiếp cận dịch vụ (tiêu chí 1–5), thủ tục hành chính (6–9), công chức (10–12), kết quả giải quyết
(13–14), tiếp nhận và xử lý góp ý, phản ánh, kiến nghị (15–18; chỉ người đã góp ý, phản ánh mới trả lời, không
điền giá trị thay thế).

**Chỉ số chung của đơn vị (SIPAS)** = trung bình các chỉ số yếu tố: SIPAS = (1/5)·Σ<sub>e</sub> P<sub>e</sub>.
Chỉ số điểm trung bình (thang 1–5) m<sub>i</sub> = Σ w·y / Σ w được tính song song. Chỉ số chung của nhóm đơn
vị (các sở; các quận, huyện, thị xã; toàn Thành phố) được tính cùng công thức trên toàn bộ phiếu của nhóm.

**Trọng số.** w = w<sub>cơ sở</sub> × a<sub>không trả lời</sub> × g<sub>hiệu chỉnh</sub>: trọng số thiết kế
w<sub>cơ sở</sub> = N<sub>h</sub>/n<sub>h</sub> (số giao dịch của tầng chia số phiếu chọn); hệ số điều chỉnh không
trả lời a = Σ<sub>được chọn</sub> w<sub>cơ sở</sub> / Σ<sub>trả lời</sub> w<sub>cơ sở</sub> trong từng ô điều chỉnh;
hệ số hiệu chỉnh g đưa tổng trọng số khớp với số giao dịch của danh sách theo đơn vị, lĩnh vực và kênh (raking),
sau đó cắt tỉa trọng số quá lớn. Hệ số ảnh hưởng của trọng số (Kish): deff<sub>w</sub> = n·Σw² / (Σw)².

**Sai số chuẩn và khoảng tin cậy.** Sai số chuẩn tính theo thiết kế mẫu bằng phương pháp tuyến tính hoá Taylor:
với p = Σw·y / Σw·x, biến tuyến tính z<sub>j</sub> = w<sub>j</sub>(y<sub>j</sub> − p·x<sub>j</sub>) / Σw·x và
Var(p) = Σ<sub>h</sub> (1 − f<sub>h</sub>)·n<sub>h</sub>/(n<sub>h</sub> − 1)·Σ<sub>j∈h</sub> (z<sub>hj</sub> − z̄<sub>h</sub>)²,
f<sub>h</sub> = n<sub>h</sub>/N<sub>h</sub> (hiệu chỉnh tổng thể hữu hạn). Khoảng tin cậy 95 %: ước lượng ± 1,96·SE.
Kết quả được đối chiếu với gói `survey` của R.

**Xếp hạng và khoảng hạng.** Hạng theo chỉ số chung, riêng cho sở và cho quận, huyện, thị xã. Khoảng hạng 95 %
(Mogstad, Romano, Shaikh & Wilhelm, *Inference for Ranks*): hạng thấp nhất có thể = 1 + số đơn vị chắc chắn cao
hơn, hạng cao nhất có thể = số đơn vị − số đơn vị chắc chắn thấp hơn, dựa trên các kiểm định đồng thời cho mọi
cặp chênh lệch (bootstrap max-t). Hai đơn vị có khoảng hạng chồng nhau không khác nhau một cách chắc chắn.

**Thay đổi so với năm trước.** Δ = p<sub>năm nay</sub> − p<sub>năm trước</sub>, SE(Δ) = √(SE²<sub>năm nay</sub> +
SE²<sub>năm trước</sub>) (hai mẫu độc lập); thay đổi có ý nghĩa khi |Δ| > 1,96·SE(Δ).

**Mục tiêu.** Kế hoạch 143/KH-UBND: SIPAS của Thành phố trên 85 % năm 2023, từ 90 % đến 95 % năm 2025. Mục tiêu
*đạt* khi cả khoảng tin cậy 95 % nằm trên ngưỡng, *chưa đạt* khi cả khoảng nằm dưới ngưỡng, còn lại *chưa thể kết luận*.

**Ngưỡng công bố.** Đơn vị có dưới {min_n} phiếu hợp lệ được công bố kèm cảnh báo, không xếp hạng; tiêu chí có dưới
{min_item} người trả lời được in nghiêng.

**Độ tin cậy.** Cronbach's alpha của yếu tố có k tiêu chí: α = k/(k − 1)·(1 − Σσ²<sub>i</sub> / σ²<sub>tổng</sub>);
ngưỡng chấp nhận 0,70.
""",
    "en": """
**Population and sample.** The population is every person or organisation that received the result of an
administrative procedure at the one-stop shop of a department or district People's Committee during the year.
The sample is a stratified random sample (stratum h = unit × field × channel) drawn from the list of
transactions; questionnaires went out by post or were handed out at the one-stop shop. Returned questionnaires
= accepted + set aside (each set-aside record has one reason).

**Satisfied.** Each criterion is rated 1–5; a respondent is *satisfied* with a rating of 4 (satisfied) or 5 (very
satisfied).

**Criterion index** (criterion i, weight w<sub>j</sub> of questionnaire j):
p<sub>i</sub> = Σ<sub>j</sub> w<sub>j</sub>·1[y<sub>ij</sub> ≥ 4] / Σ<sub>j</sub> w<sub>j</sub>·1[y<sub>ij</sub> answered].

**Element index** (element e with criteria C<sub>e</sub>): P<sub>e</sub> = (1/|C<sub>e</sub>|)·Σ<sub>i∈C<sub>e</sub></sub> p<sub>i</sub>.
Five elements: access to services (criteria 1–5), administrative procedures (6–9), civil servants (10–12),
results (13–14), feedback handling (15–18; answered only by respondents who gave feedback, never imputed).

**Unit index (SIPAS)** = mean of the element indices: SIPAS = (1/5)·Σ<sub>e</sub> P<sub>e</sub>. A mean-score index
(1–5 scale) m<sub>i</sub> = Σ w·y / Σ w is computed alongside. Group indices (departments; districts; whole city)
use the same formulas over all questionnaires of the group.

**Weights.** w = w<sub>base</sub> × a<sub>nr</sub> × g<sub>cal</sub>: design weight w<sub>base</sub> = N<sub>h</sub>/n<sub>h</sub>
(transactions in the stratum over questionnaires drawn); non-response adjustment a = Σ<sub>drawn</sub> w<sub>base</sub>
/ Σ<sub>responding</sub> w<sub>base</sub> within each adjustment cell; calibration factor g makes the weights add
up to the frame's transaction counts by unit, field and channel (raking), after which extreme weights are
trimmed. Kish's design effect of weighting: deff<sub>w</sub> = n·Σw² / (Σw)².

**Standard errors and confidence intervals.** Design-based standard errors by Taylor linearisation: for
p = Σw·y / Σw·x, the linearised variable is z<sub>j</sub> = w<sub>j</sub>(y<sub>j</sub> − p·x<sub>j</sub>) / Σw·x and
Var(p) = Σ<sub>h</sub> (1 − f<sub>h</sub>)·n<sub>h</sub>/(n<sub>h</sub> − 1)·Σ<sub>j∈h</sub> (z<sub>hj</sub> − z̄<sub>h</sub>)²,
with the finite-population correction f<sub>h</sub> = n<sub>h</sub>/N<sub>h</sub>. 95 % confidence interval:
estimate ± 1.96·SE. Results are checked against R's `survey` package.

**Ranks and rank confidence sets.** Units are ranked by their overall index, departments and districts
separately. The 95 % rank confidence set (Mogstad, Romano, Shaikh & Wilhelm, *Inference for Ranks*) runs from
1 + the number of units significantly above to the number of units − the number significantly below, from
simultaneous tests of all pairwise differences (bootstrap max-t). Two units whose sets overlap are not reliably
different.

**Change from last year.** Δ = p<sub>this year</sub> − p<sub>last year</sub>, SE(Δ) = √(SE²<sub>this year</sub> +
SE²<sub>last year</sub>) (independent samples); a change is significant when |Δ| > 1.96·SE(Δ).

**Targets.** Plan 143/KH-UBND: the city's SIPAS above 85 % in 2023 and 90–95 % in 2025. A target is *met* when
the whole 95 % confidence interval is at or above it, *not met* when the whole interval is below it, and
*uncertain* otherwise.

**Publication threshold.** Units with fewer than {min_n} accepted questionnaires are shown with a warning and not
ranked; criteria answered by fewer than {min_item} respondents are shown in italics.

**Reliability.** Cronbach's alpha of an element with k criteria: α = k/(k − 1)·(1 − Σσ²<sub>i</sub> / σ²<sub>total</sub>);
acceptable from 0.70.
""",
}


def method_text(lang: str = "vi", min_n: int = MIN_PUBLISH_N, weights: "pd.DataFrame | None" = None) -> str:
    """The methodology appendix (Markdown): every formula of the report, the weighting and the
    publication rules. When the run's ``weight_diagnostics`` table has a Kish design-effect column,
    its range is appended."""
    _check_lang(lang)
    text = _METHOD[lang].strip().replace("{min_n}", fmt_num(min_n, lang=lang)).replace(
        "{min_item}", fmt_num(MIN_PUBLISH_N_ITEM, lang=lang))
    col = first_column(weights, "deff_kish", "kish_deff", "deff_w", "deff")
    if col is not None and len(weights):
        vals = weights[col].astype(float)
        if lang == "vi":
            text += (f"\n\nTrong lần chạy này, deff<sub>w</sub> của các đơn vị từ {fmt_num(vals.min(), 2, lang)} "
                     f"đến {fmt_num(vals.max(), 2, lang)}.")
        else:
            text += (f"\n\nIn this run the units' deff<sub>w</sub> ranges from {fmt_num(vals.min(), 2, lang)} "
                     f"to {fmt_num(vals.max(), 2, lang)}.")
    return text




def criteria_codes(unit_type: str = "district") -> list[str]:
    """The satisfaction criteria (items that belong to an element) of the unit type's form,
    e.g. ``c01``..``c18`` (the district form's local-governance items ``lg1``.. are not criteria)."""
    try:
        from sipas_lib.instrument import instrument_for_unit_type

        return list(instrument_for_unit_type(unit_type).criteria_codes)
    except Exception:  # no instrument available: the Phụ lục 5 codes
        return [f"c{i:02d}" for i in range(1, 19)]


