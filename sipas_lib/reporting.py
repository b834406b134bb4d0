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
from typing import TYPE_CHECKING, Any, Iterable, Mapping

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
    safe = esc(text).replace("\r", " ").replace("\n", " ")
    return _MD_SPECIAL.sub(r"\\\1", safe)


def html_table(df: "pd.DataFrame", caption: str | None = None, *, numeric_right: bool = True,
               flag_column: str | None = None) -> str:
    """Render a (pre-formatted) DataFrame as an escaped HTML table for ``display(HTML(...))``.

    Every cell, header and the caption are HTML-escaped. Format numbers first (``fmt_pct``...)
    so they appear in the reader's language. Rows whose ``flag_column`` is truthy get the CSS
    class ``flagged`` (shown in grey italics) and the column itself is dropped.
    """
    import pandas as pd

    frame = df.copy()
    flags = None
    if flag_column is not None:
        if flag_column not in frame.columns:
            raise ValueError(f"html_table: flag column {flag_column!r} is not in the table "
                             f"(columns: {', '.join(map(str, frame.columns))})")
        flags = frame.pop(flag_column).fillna(False).astype(bool).to_numpy()
    head = "".join(f"<th>{esc(c)}</th>" for c in frame.columns)
    numeric = [numeric_right and _looks_numeric(frame[c]) for c in frame.columns]
    rows = []
    values = frame.astype(object).where(pd.notna(frame), "–").to_numpy()
    for i, row in enumerate(values):
        cls = ' class="flagged"' if flags is not None and flags[i] else ""
        cells = "".join(
            f'<td style="text-align:right">{esc(v)}</td>' if numeric[j] else f"<td>{esc(v)}</td>"
            for j, v in enumerate(row)
        )
        rows.append(f"<tr{cls}>{cells}</tr>")
    cap = f"<caption>{esc(caption)}</caption>" if caption else ""
    return (f'<table class="sipas-table">{cap}<thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table>")


_NUMERIC_TEXT = re.compile(r"^[\s+\-−±–]*[\d.,]+\s*(%|pp|điểm %)?(\s*\(.*\))?[\s/\d]*$")


def _looks_numeric(column: "pd.Series") -> bool:
    sample = [str(v) for v in column.head(20) if not _is_missing(v) and str(v) != "–"]
    return bool(sample) and all(_NUMERIC_TEXT.match(v) for v in sample)


#: CSS added once per report (tables, flagged rows, callouts); no external resources.
REPORT_CSS = """
<style>
.sipas-table {border-collapse: collapse; margin: 0.5em 0 1em 0; font-size: 0.92em;}
.sipas-table caption {caption-side: top; text-align: left; font-weight: bold; padding: 0.3em 0;}
.sipas-table th {border-bottom: 2px solid #333; padding: 0.25em 0.6em; text-align: left;
                 background: #f0f0f0;}
.sipas-table td {border-bottom: 1px solid #ddd; padding: 0.2em 0.6em; vertical-align: top;}
.sipas-table tr.flagged td {color: #666; font-style: italic;}
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
    Missing counts are treated as 0.

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
    out["publishable"] = (n >= min_n).to_numpy()
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
