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
LABELS: dict[str, dict[str, str]] = {
    # generic
    "not_available": {
        "vi": "*{what}: không có trong lần chạy này* (kết quả của bước trước chưa được tạo).",
        "en": "*{what}: not available in this run* (the earlier stage's result was not produced).",
    },
    "flag_too_few": {
        "vi": "dưới {min_n} phiếu – không xếp hạng",
        "en": "fewer than {min_n} responses – not ranked",
    },
    "toc": {"vi": "Mục lục", "en": "Contents"},
    "department": {"vi": "Sở, ban, ngành", "en": "Departments"},
    "district": {"vi": "Quận, huyện, thị xã", "en": "Districts"},
    "commune": {"vi": "Xã, phường, thị trấn", "en": "Communes"},
    "all_units": {"vi": "Toàn Thành phố", "en": "Whole city"},
    "unit": {"vi": "Đơn vị", "en": "Unit"},
    "rank": {"vi": "Hạng", "en": "Rank"},
    "rank_set": {"vi": "Hạng (khoảng tin cậy 95 %)", "en": "Rank (95 % confidence set)"},
    "index": {"vi": "Chỉ số hài lòng", "en": "Satisfaction index"},
    "ci95": {"vi": "KTC 95 %", "en": "95 % CI"},
    "n_resp": {"vi": "Số phiếu", "en": "Responses"},
    "element": {"vi": "Yếu tố", "en": "Element"},
    "criterion": {"vi": "Tiêu chí", "en": "Criterion"},
    "city": {"vi": "Thành phố", "en": "City"},
    "change": {"vi": "Thay đổi so với năm trước", "en": "Change from last year"},
    "status": {"vi": "Ghi chú", "en": "Note"},
    "target": {"vi": "Mục tiêu", "en": "Target"},
    "yes": {"vi": "Có", "en": "Yes"},
    "no": {"vi": "Không", "en": "No"},
    "significant": {"vi": "có ý nghĩa thống kê", "en": "statistically significant"},
    "not_significant": {"vi": "không có ý nghĩa thống kê", "en": "not statistically significant"},
    "percent_axis": {"vi": "Tỷ lệ hài lòng (%)", "en": "Share satisfied (%)"},
    "stt": {"vi": "STT", "en": "No."},
    "content": {"vi": "Nội dung", "en": "Item"},
    "month_result": {"vi": "Kết quả trong tháng báo cáo", "en": "Result in the reporting month"},
    "ytd_result": {"vi": "Kết quả từ đầu năm đến tháng báo cáo",
                   "en": "Result from the start of the year to the reporting month"},
    "implementation_result": {"vi": "Kết quả thực hiện", "en": "Result"},
    # elements
    "E1": {"vi": "Tiếp cận dịch vụ", "en": "Access to services"},
    "E2": {"vi": "Thủ tục hành chính", "en": "Administrative procedures"},
    "E3": {"vi": "Công chức", "en": "Civil servants"},
    "E4": {"vi": "Kết quả giải quyết", "en": "Results"},
    "E5": {"vi": "Tiếp nhận, xử lý góp ý, phản ánh, kiến nghị", "en": "Feedback handling"},
    "overall": {"vi": "Chỉ số chung (SIPAS)", "en": "Overall index (SIPAS)"},
    # fields of procedure
    "field_justice": {"vi": "Tư pháp", "en": "Justice"},
    "field_labour_social": {"vi": "Lao động, thương binh và xã hội", "en": "Labour and social affairs"},
    "field_land_environment": {"vi": "Tài nguyên và môi trường", "en": "Land and environment"},
    "field_construction_urban": {"vi": "Xây dựng, quản lý đô thị", "en": "Construction and urban management"},
    "field_other": {"vi": "Lĩnh vực khác", "en": "Other fields"},
    # survey modes and dossier channels
    "mode_postal": {"vi": "qua Bưu điện", "en": "by post"},
    "mode_one_stop": {"vi": "trực tiếp tại Bộ phận Một cửa", "en": "in person at the one-stop shop"},
    "mode_online": {"vi": "trực tuyến", "en": "online"},
    "channel_direct": {"vi": "trực tiếp", "en": "in person"},
    "channel_online_l3": {"vi": "DVC TT mức độ 3", "en": "online, level 3"},
    "channel_online_l4": {"vi": "DVC TT mức độ 4", "en": "online, level 4"},
    "channel_postal": {"vi": "DV BCCI", "en": "public postal service"},
}


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


register_labels({
    # annual report
    "annual_title": {"vi": "Báo cáo Chỉ số hài lòng về sự phục vụ hành chính (SIPAS) năm {year}",
                     "en": "Satisfaction Index of Public Administrative Services (SIPAS) {year}: annual report"},
    "annual_intro": {
        "vi": "Báo cáo trình bày kết quả khảo sát sự hài lòng của người dân, tổ chức đối với sự phục vụ "
              "của các sở, ban, ngành và UBND các quận, huyện, thị xã năm {year}. Mọi con số là tỷ lệ "
              "người trả lời *hài lòng* hoặc *rất hài lòng* (mức 4–5), kèm khoảng tin cậy 95 %.",
        "en": "This report presents the {year} survey of citizens' and organisations' satisfaction with the "
              "service of the city's departments and district People's Committees. Every figure is the share "
              "of respondents *satisfied* or *very satisfied* (4–5 on the scale), with its 95 % confidence interval."},
    "sec_summary": {"vi": "Tóm tắt", "en": "Executive summary"},
    "sec_sample": {"vi": "Mẫu khảo sát và tỷ lệ phản hồi", "en": "Sample and responses"},
    "sec_league": {"vi": "Bảng xếp hạng", "en": "League tables"},
    "sec_elements": {"vi": "Chỉ số theo yếu tố", "en": "Element profiles"},
    "sec_weakest": {"vi": "Các tiêu chí thấp nhất", "en": "Weakest criteria"},
    "sec_reliability": {"vi": "Độ tin cậy của bảng hỏi", "en": "Reliability of the questionnaire"},
    "sec_national": {"vi": "Bối cảnh quốc gia", "en": "National context"},
    "sec_method": {"vi": "Phụ lục: Phương pháp", "en": "Appendix: Methodology"},
    "summary_city": {
        "vi": "- **{group}**: chỉ số hài lòng chung **{est}** (KTC 95 %: {ci}; {n} phiếu).",
        "en": "- **{group}**: overall satisfaction **{est}** (95 % CI: {ci}; {n} responses)."},
    "summary_city_all": {
        "vi": "- **Toàn Thành phố**: **{est}** (KTC 95 %: {ci}; {n} phiếu).",
        "en": "- **Whole city**: **{est}** (95 % CI: {ci}; {n} responses)."},
    "summary_change": {
        "vi": "- So với năm trước, chỉ số chung của {group} thay đổi {chg} ({sig}).",
        "en": "- Compared with last year the overall index of {group} changed by {chg} ({sig})."},
    "summary_no_change": {
        "vi": "- Chưa có kết quả năm trước để so sánh.",
        "en": "- No earlier year's result is available for comparison."},
    "summary_target": {
        "vi": "- Mục tiêu của Kế hoạch 143/KH-UBND cho năm {year}: {target}. Chỉ số toàn Thành phố {est} "
              "**{status}**.",
        "en": "- The target of plan 143/KH-UBND for {year}: {target}. The city's index of {est} "
              "**{status}**."},
    "target_met": {"vi": "đạt mục tiêu", "en": "meets the target"},
    "target_not_met": {"vi": "chưa đạt mục tiêu", "en": "does not meet the target yet"},
    "target_uncertain": {"vi": "có khoảng tin cậy chứa ngưỡng mục tiêu, chưa thể kết luận",
                         "en": "has a confidence interval that straddles the target, so the status is not certain"},
    "target_2025": {"vi": "từ 90 % đến 95 %", "en": "90 % to 95 %"},
    "target_2023": {"vi": "trên 85 %", "en": "above 85 %"},
    "summary_best_worst": {
        "vi": "- Trong {group_lc}, cao nhất là {best} ({best_est}), thấp nhất là {worst} ({worst_est}).",
        "en": "- Among {group_lc}, the highest is {best} ({best_est}) and the lowest {worst} ({worst_est})."},
    "summary_flagged": {
        "vi": "- {k} đơn vị có dưới {min_n} phiếu hợp lệ: chỉ số được công bố kèm cảnh báo và không xếp hạng.",
        "en": "- {k} unit(s) have fewer than {min_n} accepted responses: their index is shown with a warning "
              "and not ranked."},
    "sample_text": {
        "vi": "Trong năm, {received} phiếu được thu về: {accepted} phiếu hợp lệ được đưa vào tính toán và "
              "{quarantined} phiếu bị loại (lý do ghi trong tệp cách ly; thu về = hợp lệ + bị loại).",
        "en": "{received} questionnaires were returned in the year: {accepted} were accepted into the "
              "analysis and {quarantined} were set aside (reasons in the quarantine file; returned = "
              "accepted + set aside)."},
    "returned": {"vi": "Thu về", "en": "Returned"},
    "accepted": {"vi": "Hợp lệ", "en": "Accepted"},
    "quarantined": {"vi": "Bị loại", "en": "Set aside"},
    "sampled": {"vi": "Phiếu phát ra", "en": "Issued"},
    "response_rate": {"vi": "Tỷ lệ thu hồi", "en": "Response rate"},
    "unit_type": {"vi": "Loại đơn vị", "en": "Unit type"},
    "total": {"vi": "Tổng", "en": "Total"},
    "league_text": {
        "vi": "Hạng được tính theo chỉ số chung. Khoảng hạng 95 % (phương pháp Mogstad, Romano, Shaikh & "
              "Wilhelm) cho biết các hạng mà dữ liệu không thể phân biệt. Khoảng *đồng thời* đúng cho mọi đơn "
              "vị cùng lúc (dùng khi so sánh cả bảng); khoảng *riêng đơn vị* hẹp hơn, đúng cho từng đơn vị xét "
              "riêng. Hai đơn vị có khoảng hạng chồng lên nhau không khác nhau một cách chắc chắn. Đơn vị có "
              "dưới {min_n} phiếu được in nghiêng, không xếp hạng.",
        "en": "Units are ranked by their overall index. The 95 % rank confidence set (method of Mogstad, "
              "Romano, Shaikh & Wilhelm) shows which ranks the data cannot tell apart. The *simultaneous* set "
              "holds for all units at once (use it to compare the whole table); the narrower *this unit* set "
              "holds for each unit taken alone. Two units whose sets overlap are not reliably different. "
              "Units with fewer than {min_n} responses are shown in italics and not ranked."},
    "caterpillar_title": {"vi": "Chỉ số hài lòng chung và khoảng tin cậy 95 %: {group}",
                          "en": "Overall satisfaction with 95 % confidence intervals: {group}"},
    "caterpillar_text": {
        "vi": "Biểu đồ cho thấy chỉ số của từng đơn vị (điểm) và khoảng tin cậy 95 % (vạch ngang); đường "
              "đứt là chỉ số chung của nhóm. Đơn vị có vạch cắt đường đứt không khác trung bình nhóm một "
              "cách có ý nghĩa.",
        "en": "The chart shows each unit's index (dot) with its 95 % confidence interval (bar); the dashed "
              "line is the group's overall index. Units whose bar crosses the dashed line are not "
              "significantly different from the group."},
    "elements_text": {
        "vi": "Biểu đồ cho biết chỉ số của từng yếu tố (tỷ lệ hài lòng, %) theo đơn vị; ô càng sẫm, chỉ số "
              "càng thấp; ô có dấu – là không có người trả lời. Yếu tố 5 chỉ tính trên người đã từng góp ý, "
              "phản ánh.",
        "en": "The chart gives each element's index (share satisfied, %) by unit; the darker the cell, the "
              "lower the index; a cell marked – had no respondents. Element 5 counts only respondents who "
              "gave feedback."},
    "heatmap_title": {"vi": "Chỉ số theo yếu tố: {group}", "en": "Element indices: {group}"},
    "weakest_text": {
        "vi": "Năm tiêu chí có tỷ lệ hài lòng thấp nhất của toàn Thành phố, nơi cần ưu tiên cải thiện:",
        "en": "The five criteria with the lowest satisfaction city-wide, where improvement should start:"},
    "weakest_units_text": {
        "vi": "Ba tiêu chí thấp nhất của từng đơn vị:",
        "en": "Each unit's three weakest criteria:"},
    "weakest_chart_title": {"vi": "Tỷ lệ hài lòng theo tiêu chí, toàn Thành phố",
                            "en": "Satisfaction by criterion, whole city"},
    "weakest_chart_text": {
        "vi": "Biểu đồ xếp 18 tiêu chí từ thấp đến cao; vạch ngang là khoảng tin cậy 95 %.",
        "en": "The chart orders the 18 criteria from lowest to highest; bars are 95 % confidence intervals."},
    "reliability_verdict_good": {
        "vi": "Hệ số Cronbach's alpha của các yếu tố từ {lo} đến {hi}: mọi yếu tố đạt ngưỡng 0,70, bảng hỏi đo "
              "nhất quán.",
        "en": "Cronbach's alpha of the elements ranges from {lo} to {hi}: every element reaches 0.70, the "
              "questionnaire measures consistently."},
    "reliability_verdict_weak": {
        "vi": "Hệ số Cronbach's alpha của các yếu tố từ {lo} đến {hi}; yếu tố dưới ngưỡng 0,70: {weak}. Nên "
              "xem xét lại các câu hỏi của yếu tố này.",
        "en": "Cronbach's alpha of the elements ranges from {lo} to {hi}; below the 0.70 threshold: {weak}. "
              "The questions of these elements deserve a review."},
    "alpha": {"vi": "Cronbach's alpha", "en": "Cronbach's alpha"},
    "national_text": {
        "vi": "Chỉ số SIPAS trung bình cả nước do Bộ Nội vụ công bố (đường liền) và các năm có số liệu công bố "
              "của Hà Nội (điểm vuông). Năm 2022 Bộ Nội vụ thay đổi phương pháp (thêm chỉ số chính sách), nên "
              "2021→2022 không so sánh trực tiếp được.",
        "en": "The national SIPAS average published by the Ministry of Home Affairs (solid line) and the years "
              "with a published figure for Hà Nội (squares). In 2022 the ministry changed the method (policy "
              "index added), so 2021→2022 is not a like-for-like change."},
    "national_title": {"vi": "SIPAS cả nước và Hà Nội (số liệu công bố)",
                       "en": "SIPAS, national average and Hà Nội (published figures)"},
    "national_avg": {"vi": "Trung bình cả nước", "en": "National average"},
    "hanoi": {"vi": "Hà Nội", "en": "Hà Nội"},
    "year": {"vi": "Năm", "en": "Year"},
    "source": {"vi": "Nguồn", "en": "Source"},
    "yoy_title": {"vi": "Thay đổi so với năm trước", "en": "Change from last year"},
    # scorecard
    "scorecard_title": {"vi": "Phiếu điểm SIPAS {year}: {name}", "en": "SIPAS {year} scorecard: {name}"},
    "sc_headline": {
        "vi": "Chỉ số hài lòng chung: **{est}** (khoảng tin cậy 95 %: {ci}), dựa trên {n} phiếu hợp lệ. "
              "Chỉ số chung của {group_lc}: {city}.",
        "en": "Overall satisfaction: **{est}** (95 % confidence interval: {ci}), from {n} accepted "
              "responses. Overall index of all {group_lc}: {city}."},
    "sc_rank": {
        "vi": "Xếp hạng **{rank}/{total}** trong {group_lc}; với độ tin cậy 95 %, hạng thực nằm trong khoảng "
              "**{lo}–{hi}**.",
        "en": "Ranked **{rank} of {total}** among {group_lc}; with 95 % confidence its true rank lies between "
              "**{lo} and {hi}**."},
    "sc_flag": {
        "vi": "⚠ **Chỉ có {n} phiếu hợp lệ, dưới ngưỡng {min_n} phiếu để công bố.** Chỉ số chỉ mang tính tham "
              "khảo và đơn vị không được xếp hạng.",
        "en": "⚠ **Only {n} accepted responses, below the publication threshold of {min_n}.** The index is "
              "indicative only and the unit is not ranked."},
    "sc_no_unit": {
        "vi": "Đơn vị {unit} không có trong kết quả của lần chạy này.",
        "en": "Unit {unit} is not in this run's results."},
    "sc_yoy": {"vi": "So với năm trước: {chg} ({sig}).", "en": "Compared with last year: {chg} ({sig})."},
    "sc_elements_title": {"vi": "Các yếu tố: đơn vị so với {group_lc}", "en": "Elements: unit versus all {group_lc}"},
    "sc_elements_text": {
        "vi": "Biểu đồ so sánh tỷ lệ hài lòng của đơn vị (cột sẫm, có khoảng tin cậy 95 %) với chung các đơn vị "
              "cùng loại (cột nhạt kẻ sọc) ở từng yếu tố.",
        "en": "The chart compares the unit's share satisfied (dark bars, with 95 % confidence intervals) with "
              "all units of its type (light hatched bars) for each element."},
    "sc_criteria": {"vi": "Từng tiêu chí", "en": "Each criterion"},
    "sc_criteria_text": {
        "vi": "Tiêu chí có dưới {min_n} người trả lời được in nghiêng (ước lượng kém chính xác).",
        "en": "Criteria answered by fewer than {min_n} respondents are in italics (imprecise estimates)."},
    "sc_weakest": {"vi": "Ba tiêu chí có tỷ lệ hài lòng thấp nhất, cần ưu tiên cải thiện: {list}",
                   "en": "The three criteria with the lowest satisfaction, to improve first: {list}"},
    "sc_sample": {"vi": "Mẫu khảo sát của đơn vị", "en": "The unit's sample"},
    "sc_sample_text": {
        "vi": "{issued} phiếu được phát, {received} phiếu thu về (tỷ lệ thu hồi {rate}), trong đó {accepted} hợp "
              "lệ và {quarantined} bị loại.",
        "en": "{issued} questionnaires issued, {received} returned (response rate {rate}): {accepted} accepted "
              "and {quarantined} set aside."},
    "difference": {"vi": "Chênh lệch", "en": "Difference"},
    "unit_value": {"vi": "Đơn vị", "en": "Unit"},
    "group_value": {"vi": "Cùng loại", "en": "Same type"},
    "department_lc": {"vi": "các sở, ban, ngành", "en": "departments"},
    "district_lc": {"vi": "các quận, huyện, thị xã", "en": "districts"},
    # monthly report
    "monthly_title": {"vi": "Báo cáo SIPAS tháng {month} năm {year}", "en": "SIPAS monthly report, {month}/{year}"},
    "monthly_intro": {
        "vi": "Báo cáo theo mẫu tại Phụ lục 3, Kế hoạch số 143/KH-UBND, lập từ dữ liệu hồ sơ thủ tục hành chính "
              "của các đơn vị. Hồ sơ cần giải quyết = hồ sơ tồn kỳ trước chưa giải quyết + hồ sơ tiếp nhận mới "
              "trong kỳ; tỷ lệ đúng hạn/quá hạn tính trên hồ sơ đã giải quyết trong kỳ.",
        "en": "Report in the format of Annex 3 of plan 143/KH-UBND, built from the units' administrative "
              "dossier records. Dossiers to resolve = dossiers carried over unresolved + dossiers newly "
              "received in the period; on-time and late rates are over dossiers resolved in the period."},
    "form1": {"vi": "Mẫu số 1 – Các Sở, ngành", "en": "Form 1 – Departments"},
    "form2": {"vi": "Mẫu số 2 – Các Quận, huyện, thị xã", "en": "Form 2 – Districts"},
    "monthly_all_depts": {"vi": "Tổng hợp các sở, ban, ngành ({k} đơn vị)",
                          "en": "All departments combined ({k} units)"},
    "monthly_all_districts": {"vi": "Tổng hợp các quận, huyện, thị xã ({k} đơn vị)",
                              "en": "All districts combined ({k} units)"},
    "monthly_overview": {"vi": "Tổng quan theo đơn vị, tháng {month}/{year}",
                         "en": "Overview by unit, {month}/{year}"},
    "monthly_chart_title": {"vi": "Tỷ lệ hồ sơ giải quyết đúng hạn trong tháng {month}/{year}, theo đơn vị",
                            "en": "Dossiers resolved on time in {month}/{year}, by unit"},
    "monthly_chart_text": {
        "vi": "Biểu đồ cho thấy tỷ lệ hồ sơ giải quyết đúng hạn trong tháng của từng đơn vị (tại Bộ phận Một "
              "cửa của đơn vị, không gồm cấp xã), từ thấp đến cao; đường đứt là tỷ lệ chung.",
        "en": "The chart shows each unit's share of dossiers resolved on time in the month (at the unit's own "
              "one-stop shop, communes excluded), lowest first; the dashed line is the overall rate."},
    "on_time_axis": {"vi": "Tỷ lệ đúng hạn (%)", "en": "Resolved on time (%)"},
    "dossiers_resolved": {"vi": "hồ sơ đã giải quyết", "en": "dossiers resolved"},
    "to_resolve": {"vi": "Cần giải quyết", "en": "To resolve"},
    "new": {"vi": "Tiếp nhận mới", "en": "New"},
    "resolved": {"vi": "Đã giải quyết", "en": "Resolved"},
    "on_time": {"vi": "Đúng hạn", "en": "On time"},
    "late": {"vi": "Quá hạn", "en": "Late"},
    "feedback": {"vi": "Phản ánh, kiến nghị", "en": "Feedback"},
    "apologies": {"vi": "Văn bản xin lỗi", "en": "Apologies"},
    "opinions": {"vi": "Ý kiến đánh giá", "en": "Opinions"},
    "no_admin_data": {"vi": "Dữ liệu hồ sơ hành chính", "en": "Administrative dossier records"},
    "unit_not_found": {"vi": "Không tìm thấy đơn vị {unit} trong danh mục đơn vị.",
                       "en": "Unit {unit} is not in the units registry."},
    "abbrev": {"vi": "*Ghi chú viết tắt:* DVC TT: Dịch vụ công trực tuyến; DV BCCI: Dịch vụ bưu chính công ích.",
               "en": "*Abbreviations:* DVC TT: online public services; DV BCCI: public postal service."},
    # annual survey-implementation report
    "pl4_title": {"vi": "Báo cáo kết quả khảo sát, lấy ý kiến người dân, tổ chức đã giao dịch, nhận kết quả "
                        "giải quyết TTHC năm {year}",
                  "en": "Report on the {year} survey of citizens and organisations who received results of "
                        "administrative procedures"},
    "pl4_intro": {"vi": "Theo mẫu tại Phụ lục 4, Kế hoạch số 143/KH-UBND. Số liệu lấy từ lần chạy này.",
                  "en": "In the format of Annex 4 of plan 143/KH-UBND. Figures are taken from this run."},
    "pl4_part1": {"vi": "1. Kết quả triển khai", "en": "1. Implementation"},
    "pl4_part2": {"vi": "2. Khó khăn, vướng mắc (nếu có)", "en": "2. Difficulties (if any)"},
    "pl4_part3": {"vi": "3. Kiến nghị, đề xuất (nếu có)", "en": "3. Recommendations (if any)"},
    "pl4_difficulties": {
        "vi": "{q} phiếu ({share}) bị loại khi nhập liệu; quy tắc kiểm tra bị vi phạm nhiều nhất: {top}.",
        "en": "{q} questionnaires ({share}) were set aside at intake; the check failed most often: {top}."},
    "pl4_none": {"vi": "Không có.", "en": "None."},
    "pl4_recommend": {
        "vi": "Các đơn vị có chỉ số thấp nhất tập trung cải thiện các tiêu chí yếu nhất nêu trong phiếu điểm "
              "của đơn vị.",
        "en": "Units with the lowest indices should focus on the weakest criteria named in their scorecards."},
    "pl4_chart_title": {"vi": "Số phiếu hợp lệ theo lĩnh vực và hình thức khảo sát",
                        "en": "Accepted questionnaires by field and survey mode"},
    "pl4_chart_text": {
        "vi": "Biểu đồ cho thấy số phiếu hợp lệ của từng lĩnh vực thủ tục, chia theo hình thức khảo sát.",
        "en": "The chart shows the accepted questionnaires of each field of procedure, split by survey mode."},
    "forms_axis": {"vi": "Số phiếu", "en": "Questionnaires"},
    "field": {"vi": "Lĩnh vực", "en": "Field"},
})


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


register_labels({"all_criteria": {"vi": "Cả 18 tiêu chí", "en": "All 18 criteria"}})


def criteria_codes(unit_type: str = "district") -> list[str]:
    """The satisfaction criteria (items that belong to an element) of the unit type's form,
    e.g. ``c01``..``c18`` (the district form's local-governance items ``lg1``.. are not criteria)."""
    try:
        from sipas_lib.instrument import instrument_for_unit_type

        return list(instrument_for_unit_type(unit_type).criteria_codes)
    except Exception:  # no instrument available: the Phụ lục 5 codes
        return [f"c{i:02d}" for i in range(1, 19)]


register_labels({
    "rank_set_sim": {"vi": "Khoảng hạng 95 % (đồng thời)", "en": "95 % rank set (simultaneous)"},
    "rank_set_marg": {"vi": "Khoảng hạng 95 % (riêng đơn vị)", "en": "95 % rank set (this unit)"},
})
register_labels({
    "pl4_rule": {"vi": "Quy tắc kiểm tra", "en": "Check"},
    "pl4_example": {"vi": "Ví dụ", "en": "Example"},
})
register_labels({
    "summary_sig": {
        "vi": "- Trong {group_lc}, {above} đơn vị cao hơn và {below} đơn vị thấp hơn chỉ số chung của nhóm một cách có "
              "ý nghĩa thống kê (cả khoảng tin cậy 95 % nằm trên hoặc dưới); {rest} đơn vị còn lại không khác biệt rõ.",
        "en": "- Among {group_lc}, {above} unit(s) are significantly above and {below} significantly below the "
              "group's index (the whole 95 % confidence interval lies above or below it); the other {rest} cannot "
              "be told apart from it."},
})
