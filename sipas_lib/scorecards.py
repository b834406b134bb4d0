"""Unit scorecards: what one unit's page shows, built once, shown in a notebook or written in bulk.

Report layer. A scorecard is a list of :class:`Block` (Markdown, HTML or SVG), section by section
(:func:`title`, :func:`overall`, :func:`elements`, :func:`criteria`, :func:`sample`,
:func:`model_based`), from the unit's :class:`~sipas_lib.stages.unit_scorecard.Scorecard` and the
notebook context (texts, number formats, settings). Two consumers, one code path:

* ``notebooks/fanout/unit_scorecard.ipynb`` (the one-unit analysis a researcher opens in JupyterLab)
  shows each section with :func:`show`;
* the runner writes every unit's page with :func:`render_scorecards`: the tables are read and split by
  unit once (:func:`sipas_lib.stages.unit_scorecard.load_inputs`), each page is the same blocks
  rendered into ``templates/unit_scorecard.html.j2`` — about 10 ms a unit instead of a notebook
  execution and export (~1 s), so a national run's 3,900 scorecards take a minute, not an hour.

The elements chart is drawn directly as SVG (:func:`element_chart_svg`): a handful of bars, an axis and
a legend, in the report style of :mod:`sipas_lib.charts` (greys, hatching for the peer group, title with
*n*, both axis labels). Its text is SVG text (selectable, read by screen readers, printed by WeasyPrint
with DejaVu Sans), and it costs about a millisecond where a matplotlib figure costs a quarter second.
"""

from __future__ import annotations

import html
import re
import textwrap
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import pandas as pd

from sipas_lib import charts, integrity_report
from sipas_lib import reporting as R
from sipas_lib.notebook import NotebookContext, open_stage
from sipas_lib.stages import unit_scorecard
from sipas_lib.stages.unit_scorecard import Scorecard

TEMPLATE = "unit_scorecard.html.j2"


@dataclass(frozen=True)
class Block:
    """One piece of a scorecard: ``kind`` is ``"markdown"`` (escaped Markdown from the texts),
    ``"html"`` (escaped HTML, e.g. :func:`sipas_lib.reporting.html_table`) or ``"svg"`` (a chart)."""

    kind: str
    body: str


def _markdown(text: str) -> Block:
    return Block("markdown", text)


# --------------------------------------------------------------------------------------------
# the sections of a scorecard
# --------------------------------------------------------------------------------------------


def _unit_name(card: Scorecard, ctx: NotebookContext) -> str:
    return str(card.unit[f"name_{ctx.lang}"])


def _group(card: Scorecard, ctx: NotebookContext) -> str:
    """The unit's peer group in lower case (``các phường``), as the texts put it."""
    return ctx.label(f"{card.unit['unit_type']}_lc")


def title(card: Scorecard, ctx: NotebookContext) -> list[Block]:
    """The page heading: year and unit name."""
    return [_markdown("# " + ctx.text("scorecard_title", year=ctx.settings.year, name=_unit_name(card, ctx)))]


def overall(card: Scorecard, ctx: NotebookContext) -> list[Block]:
    """The overall index with its interval against all units of the type; the rank with its marginal
    rank set (or why the unit is not ranked); last year's change, or for a unit created by the 2025
    reorganisation the indicative comparison with its predecessors (or why it is withheld)."""
    group_lc, lv = _group(card, ctx), ctx.level_label
    out: list[Block] = []
    o = card.overall
    if o is None:
        out.append(_markdown(ctx.text("sc_no_unit", unit=card.unit["unit_id"])))
    else:
        out.append(_markdown(ctx.text("sc_headline", est=ctx.pct(o["estimate"], 2), ci=ctx.ci(o["ci_low"], o["ci_high"]),
                                      n=ctx.num(o["n"]), group_lc=group_lc, city=ctx.pct(card.peer_overall, 2), level=lv)))
        if not o["publishable"]:
            out.append(_markdown(ctx.text("sc_flag", n=ctx.num(o["n"]), min_n=ctx.settings.min_publish_n)))
        elif o["rank"] is not None and o["rank"] == o["rank"]:
            out.append(_markdown(ctx.text("sc_rank", rank=int(o["rank"]), total=int(o["n_units"]), group_lc=group_lc,
                                          level=lv, lo=int(o["rank_ci_low_marginal"]),
                                          hi=int(o["rank_ci_high_marginal"]))))
    c, r = card.change, card.reform
    if c is None and r is not None:  # a unit reshaped by the 2025 reform: against its predecessors
        if r["withheld"]:
            reason = ctx.label(f"reform_withheld_{r['reason']}", min_n=ctx.settings.min_publish_n,
                               coverage=ctx.pct(r["coverage"], 0), min_coverage=ctx.pct(r["min_coverage"], 0))
            out.append(_markdown(ctx.text("sc_yoy_reform_withheld", reason=reason)))
        else:
            label = ctx.label(f"reform_{r['comparison']}", basis=ctx.label(f"reform_basis_{r['basis']}"))
            out.append(_markdown(ctx.text(
                "sc_yoy_reform", label=label, chg=ctx.pp(r["change"], 2), ci=ctx.ci(r["change_ci_low"], r["change_ci_high"]),
                level=lv, pred=ctx.pct(r["estimate_pred"], 2), coverage=ctx.pct(r["coverage"], 0),
                predecessors=", ".join(ctx.unit_name(d, 40) for d in str(r["predecessors"]).split(",")))))
    elif c is None:
        out.append(_markdown(ctx.text("sc_no_change")))
    elif c["significant"] is None:
        out.append(_markdown(ctx.text("sc_yoy_undecided", chg=ctx.pp(c["change"], 2))))
    else:
        out.append(_markdown(ctx.text("sc_yoy", chg=ctx.pp(c["change"], 2),
                                      sig=ctx.label("significant" if c["significant"] else "not_significant"))))
    return out


def elements(card: Scorecard, ctx: NotebookContext) -> list[Block]:
    """The unit's element indices (with intervals) beside the city-wide index of its type: a chart."""
    if not len(card.elements):
        return []
    group_lc = _group(card, ctx)
    texts = R.item_texts(ctx.lang, card.unit["unit_type"])
    chart = element_chart_svg(
        card.elements, lang=ctx.lang, level_text=ctx.level_label, unit_name=_unit_name(card, ctx),
        peer_name=ctx.label("group_value") + ": " + group_lc,
        element_names={c: texts.get(c, ctx.label(c)) for c in card.elements["code"]},
        n=card.overall["n"] if card.overall else None, title=ctx.label("sc_elements_title", group_lc=group_lc),
        description=ctx.label("sc_elements_text", level=ctx.level_label))
    return [_markdown("## " + ctx.text("sc_elements_title", group_lc=group_lc)), Block("svg", chart),
            _markdown(ctx.text("sc_elements_text", level=ctx.level_label))]


def criteria(card: Scorecard, ctx: NotebookContext) -> list[Block]:
    """Every criterion's index with its interval, the type's city-wide index and the gap to it (criteria
    with few answers in italics); then the unit's weakest criteria as the index stage flagged them."""
    out: list[Block] = []
    items = card.criteria
    texts = R.item_texts(ctx.lang, card.unit["unit_type"])
    min_item = ctx.settings.common["min_publish_n_item"]
    if len(items):
        out.append(_markdown("## " + ctx.text("sc_criteria")))
        table = pd.DataFrame({
            ctx.label("criterion"): [charts.criterion_label(c, texts, 75) for c in items["code"]],
            ctx.label("unit_value"): [ctx.pct(v) for v in items["estimate"]],
            ctx.label("ci_level", level=ctx.level_label): [ctx.ci(a, b) for a, b in zip(items["ci_low"], items["ci_high"])],
            ctx.label("n_resp"): [ctx.num(v) for v in items["n"]],
            ctx.label("group_value"): [ctx.pct(v) for v in items["peer_estimate"]],
            ctx.label("difference"): [ctx.pp(v) for v in items["gap_to_city"]],
            "_flag": (items["n"] < min_item).to_numpy(),
        })
        out.append(Block("html", R.html_table(table, flag_column="_flag")))
        out.append(_markdown(ctx.text("sc_criteria_text", min_n=min_item)))
    if len(card.weakest):
        out.append(_markdown(ctx.text("sc_weakest")))
        # "15\\. …": the criterion's number stays text, not the start of a numbered list inside the bullet
        out.append(_markdown("\n".join(
            "- " + re.sub(r"^(\d+)\.", r"\1\\.", R.md_escape(charts.criterion_label(c, texts, 200))) + f" ({ctx.pct(v)})"
            for c, v in zip(card.weakest["code"], card.weakest["estimate"]))))
    return out


def sample(card: Scorecard, ctx: NotebookContext) -> list[Block]:
    """Questionnaires issued, returned, accepted and set aside, and the response rate (AAPOR RR1)."""
    s = card.sample
    return [_markdown("## " + ctx.text("sc_sample")),
            _markdown(ctx.text("sc_sample_text", issued=ctx.num(s["issued"]), received=ctx.num(s["received"]),
                               rate=ctx.pct(s["response_rate"]), accepted=ctx.num(s["accepted"]),
                               quarantined=ctx.num(s["quarantined"])))]


def model_based(card: Scorecard, ctx: NotebookContext) -> list[Block]:
    """The direct (survey) index beside the model-based (Fay–Herriot) one from stage 50's ``small_area``
    table, each with its interval and rank set, and what "model-based" means; nothing without the table."""
    r = card.model
    if r is None:
        return []
    direct = pd.notna(r["direct"])
    table = pd.DataFrame({
        "": [ctx.label("sc_row_direct"), ctx.label("sc_row_model")],
        ctx.label("sc_col_estimate"): [ctx.pct(r["direct"], 1) if direct else "–", ctx.pct(r["model_estimate"], 1)],
        ctx.label("sc_col_interval", level=ctx.level_label): [
            ctx.ci(r["direct_ci_low"], r["direct_ci_high"]) if direct else "–", ctx.ci(r["model_ci_low"], r["model_ci_high"])],
        ctx.label("sc_col_rank_set"): [
            R.fmt_rank_set(r["direct_rank"], r["direct_rank_ci_low"], r["direct_rank_ci_high"], lang=ctx.lang),
            R.fmt_rank_set(r["model_rank"], r["model_rank_ci_low"], r["model_rank_ci_high"], lang=ctx.lang)],
    })
    out = [_markdown("## " + ctx.text("sc_model_title")), Block("html", R.html_table(table)),
           _markdown(ctx.text("sc_model_meaning", official=ctx.label(f"sc_official_{r['official']}")))]
    if r["estimate_type"] == "synthetic_no_sample":
        out.append(_markdown(ctx.text("sc_model_synthetic")))
    return out


def integrity(card: Scorecard, ctx: NotebookContext) -> list[Block]:
    """For a unit the integrity stage flagged: its signals and reasons, and its index and rank set with
    and without its suspect forms (:func:`sipas_lib.integrity_report.integrity_table`); nothing otherwise."""
    r = card.integrity
    if r is None:
        return []
    row = pd.DataFrame([r])
    return [_markdown("## " + integrity_report.label("sec_integrity", ctx.lang)),
            _markdown(integrity_report.label("scorecard_text", ctx.lang).format(
                signals=integrity_report.signal_names(r["signals"], ctx.lang),
                reason=R.md_escape(r["reason_vi" if ctx.lang == "vi" else "reason"]))),
            Block("html", R.html_table(integrity_report.integrity_table(row, {r["unit_id"]: _unit_name(card, ctx)},
                                                                        ctx.lang, reasons=False)))]


#: The sections of a scorecard, in page order.
SECTIONS = (title, overall, elements, criteria, sample, model_based, integrity)


def blocks(card: Scorecard, ctx: NotebookContext) -> list[Block]:
    """Every section of the unit's scorecard (:data:`SECTIONS`), in order."""
    return [block for section in SECTIONS for block in section(card, ctx)]


def show(shown: Iterable[Block]) -> None:
    """Display blocks in a notebook (Markdown, HTML, SVG)."""
    from IPython.display import SVG, display

    for block in shown:
        if block.kind == "markdown":
            R.show(block.body)
        elif block.kind == "html":
            R.show_html(block.body)
        else:
            display(SVG(data=block.body))


# --------------------------------------------------------------------------------------------
# the elements chart, as SVG
# --------------------------------------------------------------------------------------------

_FONT = '"DejaVu Sans", Verdana, "Noto Sans", Arial, sans-serif'
_WIDTH = 576.0  # points: 8 inches, the width of the report's charts
_ROW = 0.55 * 72  # points per element, as the report's bar charts


@lru_cache(maxsize=None)
def _advance(char: str, bold: bool) -> float:
    """Advance width of one character of DejaVu Sans at 1 pt (the report charts' font; 0.6 em if it
    cannot be read)."""
    try:
        from matplotlib.font_manager import FontProperties, findfont, get_font
        from matplotlib.ft2font import LoadFlags

        font = get_font(findfont(FontProperties(family="DejaVu Sans", weight="bold" if bold else "normal")))
        font.set_size(100, 72)
        return font.load_char(ord(char), flags=LoadFlags.NO_HINTING).linearHoriAdvance / 65536 / 100
    except Exception:  # pragma: no cover - no matplotlib font: a generous estimate
        return 0.6


def text_width(text: str, size: float, bold: bool = False) -> float:
    """Width in points of ``text`` set in DejaVu Sans at ``size`` (kerning ignored: a little generous)."""
    return size * sum(_advance(ch, bold) for ch in text)


def _text(x: float, y: float, body: str, size: float, *, anchor: str = "start", bold: bool = False,
          rotate: bool = False, fill: str = "#000000") -> str:
    transform = f' transform="rotate(-90 {x:.1f} {y:.1f})"' if rotate else ""
    weight = ' font-weight="bold"' if bold else ""
    return (f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size:g}" text-anchor="{anchor}"{weight} fill="{fill}"'
            f"{transform}>{html.escape(body)}</text>")


def element_chart_svg(elements: pd.DataFrame, *, lang: str, level_text: str, unit_name: str, peer_name: str,
                      element_names: Mapping[str, str] | None = None, n: int | None = None,
                      title: str = "", description: str = "") -> str:
    """One unit's element indices (dark bars with their interval at the run's level) beside its peers'
    (light hatched bars), element by element, as a standalone SVG document.

    The picture of :func:`sipas_lib.charts.element_comparison` (same data, greys, hatching, titles and
    labels), drawn without matplotlib: shares 0–1 on a 0–100 % axis, the title with *n*
    (:func:`sipas_lib.reporting.finish_chart`'s form), both axis labels, the legend under the plot. An
    interval a rounding error beyond its estimate is drawn from the estimate (as the report charts do).

    Parameters
    ----------
    elements
        ``code, estimate, ci_low, ci_high, peer_estimate`` (the scorecard's elements table); a missing
        estimate draws no bar.
    lang, level_text
        The reader's language and the interval level as printed (``"95 %"``).
    unit_name, peer_name
        Legend labels of the unit's bars and the peer group's bars.
    element_names
        ``code -> name`` for the axis (the code itself when absent).
    n, title, description
        Sample size and chart title (``"<title> (n = <n>)"``); the description is the chart's
        ``<desc>`` for screen readers, followed by every value.
    """
    missing = [c for c in ("code", "estimate", "ci_low", "ci_high", "peer_estimate") if c not in elements.columns]
    if missing:
        raise ValueError(f"element_chart_svg: column(s) {missing} missing (columns: {', '.join(map(str, elements.columns))})")
    title = title or R.label("element", lang)
    if not str(title).strip():
        raise ValueError("element_chart_svg: the chart's title is empty")
    rows = elements.sort_values("code").reset_index(drop=True)
    names = element_names or {}
    labels = [R.shorten(names.get(c, c), 38) for c in rows["code"]]
    full_title = title if n is None else f"{title} (n = {R.fmt_num(n, lang=lang)})"
    title_lines = textwrap.wrap(full_title, max(40, int(8.0 * 9.5))) or [full_title]
    xlabel, ylabel = R.label("percent_axis", lang), R.label("element", lang)
    unit_label = R.shorten(unit_name, 40) + " (" + R.label("ci_level", lang, level=level_text) + ")"

    pad, tick, gap = 6.0, 3.5, 3.5
    top = pad + 13.2 * len(title_lines) + 8.0
    plot_h = _ROW * max(len(rows), 1)
    label_w = max([text_width(lb, 10) for lb in labels] + [0.0])
    left = pad + 12.0 + 8.0 + label_w + tick + gap
    right = _WIDTH - pad - 12.0
    bottom = top + plot_h
    width = right - left

    def x_of(share: float) -> float:
        return left + width * min(max(share * 100.0, 0.0), 100.0) / 100.0

    parts: list[str] = []
    add = parts.append
    for tick_value in range(0, 101, 20):  # grid, ticks and tick labels of the 0–100 % axis
        x = left + width * tick_value / 100.0
        add(f'<line x1="{x:.1f}" y1="{top:.1f}" x2="{x:.1f}" y2="{bottom:.1f}" stroke="#dddddd" stroke-width="0.6"/>')
        add(f'<line x1="{x:.1f}" y1="{bottom:.1f}" x2="{x:.1f}" y2="{bottom + tick:.1f}" stroke="#000000" stroke-width="0.8"/>')
        add(_text(x, bottom + tick + gap + 9.0, R.fmt_num(tick_value, 0, lang), 10, anchor="middle"))
    bar = 0.38 * _ROW
    described: list[str] = []
    for i, row in enumerate(rows.itertuples(index=False)):
        centre = top + _ROW * (i + 0.5)
        add(f'<line x1="{left:.1f}" y1="{centre:.1f}" x2="{right:.1f}" y2="{centre:.1f}" stroke="#dddddd" stroke-width="0.6"/>')
        add(f'<line x1="{left - tick:.1f}" y1="{centre:.1f}" x2="{left:.1f}" y2="{centre:.1f}" stroke="#000000" stroke-width="0.8"/>')
        add(_text(left - tick - gap, centre + 3.5, labels[i], 10, anchor="end"))
        mine_y, peer_y = centre - 0.2 * _ROW, centre + 0.2 * _ROW
        if pd.notna(row.estimate):
            est = float(row.estimate)
            add(f'<rect x="{left:.1f}" y="{mine_y - bar / 2:.1f}" width="{x_of(est) - left:.1f}" height="{bar:.1f}" fill="{R.GREYS[0]}"/>')
            if pd.notna(row.ci_low) and pd.notna(row.ci_high):
                lo, hi = x_of(min(float(row.ci_low), est)), x_of(max(float(row.ci_high), est))
                add(f'<path d="M{lo:.1f} {mine_y:.1f}H{hi:.1f}M{lo:.1f} {mine_y - 3:.1f}V{mine_y + 3:.1f}'
                    f'M{hi:.1f} {mine_y - 3:.1f}V{mine_y + 3:.1f}" stroke="#555555" stroke-width="1.5" fill="none"/>')
        if pd.notna(row.peer_estimate):
            add(f'<rect x="{left:.1f}" y="{peer_y - bar / 2:.1f}" width="{x_of(float(row.peer_estimate)) - left:.1f}" '
                f'height="{bar:.1f}" fill="url(#sipas-hatch)" stroke="{R.GREYS[1]}" stroke-width="0.8"/>')
        described.append(f"{labels[i]}: {R.fmt_pct(row.estimate, 1, lang)} ({R.fmt_ci(row.ci_low, row.ci_high, 1, lang)}); "
                         f"{peer_name}: {R.fmt_pct(row.peer_estimate, 1, lang)}")
    add(f'<path d="M{left:.1f} {top:.1f}V{bottom:.1f}H{right:.1f}" stroke="#000000" stroke-width="0.8" fill="none"/>')
    add(_text(left + width / 2, bottom + tick + gap + 9.0 + 16.0, xlabel, 10, anchor="middle"))
    add(_text(pad + 10.0, top + plot_h / 2, ylabel, 10, anchor="middle", rotate=True))
    for k, line in enumerate(title_lines):
        add(_text(left, pad + 11.0 + 13.2 * k, line, 11, bold=True))
    # legend: one row under the plot, centred
    legend_y = bottom + tick + gap + 9.0 + 16.0 + 18.0
    entries = [(unit_label, f'fill="{R.GREYS[0]}"'), (peer_name, f'fill="url(#sipas-hatch)" stroke="{R.GREYS[1]}" stroke-width="0.8"')]
    widths = [16.0 + 4.0 + text_width(label, 8) for label, _ in entries]
    x = max(pad, (_WIDTH - sum(widths) - 16.0 * (len(entries) - 1)) / 2)
    for (label, style), w in zip(entries, widths):
        add(f'<rect x="{x:.1f}" y="{legend_y - 6.5:.1f}" width="16" height="8" {style}/>')
        add(_text(x + 20.0, legend_y, label, 8))
        x += w + 16.0
    height = legend_y + 4.0 + pad
    desc = " ".join([description, *described]) if description else "; ".join(described)
    return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {_WIDTH:g} {height:.1f}" width="{_WIDTH:g}pt" '
            f'height="{height:.1f}pt" role="img" font-family=\'{_FONT}\'>'
            f"<title>{html.escape(full_title)}</title><desc>{html.escape(desc)}</desc>"
            '<defs><pattern id="sipas-hatch" width="6" height="6" patternUnits="userSpaceOnUse">'
            f'<rect width="6" height="6" fill="{R.GREYS[3]}"/>'
            f'<path d="M-1 1L1 -1M0 6L6 0M5 7L7 5" stroke="{R.GREYS[1]}" stroke-width="0.8"/></pattern></defs>'
            f'<rect width="{_WIDTH:g}" height="{height:.1f}" fill="#ffffff"/>' + "".join(parts) + "</svg>")


# --------------------------------------------------------------------------------------------
# pages, in bulk
# --------------------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _markdown_renderer():
    import mistune

    # escape=False: the texts' values are escaped where they are inserted (reporting.md_escape)
    return mistune.create_markdown(escape=False, plugins=["strikethrough", "table"])


def blocks_html(shown: Sequence[Block]) -> str:
    """The blocks as one HTML fragment (Markdown rendered, HTML and SVG as they are)."""
    render = _markdown_renderer()
    out = []
    for block in shown:
        if block.kind == "markdown":
            out.append(f'<div class="sipas-md">{render(block.body)}</div>')
        elif block.kind == "html":
            out.append(f'<div class="sipas-html">{block.body}</div>')
        else:
            out.append(f'<figure class="sipas-chart">{block.body}</figure>')
    return "\n".join(out)


@lru_cache(maxsize=1)
def _template():
    import jinja2

    from sipas_lib.config import PACKAGE_DIR

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(PACKAGE_DIR / "templates")), autoescape=True)
    return env.get_template(TEMPLATE)


def page(card: Scorecard, ctx: NotebookContext, page_title: str) -> str:
    """The unit's scorecard as a standalone, offline HTML page (no script, nothing fetched)."""
    from markupsafe import Markup

    return _template().render(lang=ctx.lang, title=page_title, report_css=Markup(R.REPORT_CSS),
                              body=Markup(blocks_html(blocks(card, ctx))))


def render_scorecards(run_dir: str, data_dir: str, common: Mapping[str, Any], stage_settings: Mapping[str, Any],
                      pages: Sequence[Mapping[str, str]]) -> list[dict[str, Any]]:
    """Write the scorecard pages of a run, one per ``{"unit_id", "html", "title"}`` in ``pages``.

    What the runner calls for the fan-out template ``unit_scorecard`` (its notebook names this function in
    ``metadata.sipas.renderer``), with the parameters the notebook would receive. Returns one record per
    page: ``unit_id, status ("ok"/"failed"), seconds`` and, for a failure, ``ename, evalue``. A table that
    is missing or breaks its contract fails every page with the same cause; a unit that fails does not
    stop the others.
    """
    started = time.perf_counter()
    ctx = open_stage("unit_scorecard", run_dir, data_dir, dict(common), dict(stage_settings))
    try:
        inputs = unit_scorecard.load_inputs(ctx.paths, ctx.settings)
    except Exception as exc:  # every page fails with the same cause
        return [{"unit_id": p["unit_id"], "status": "failed", "seconds": 0.0, "ename": type(exc).__name__,
                 "evalue": str(exc)} for p in pages]
    setup = (time.perf_counter() - started) / max(len(pages), 1)  # reading the tables, shared by the pages
    records = []
    for spec in pages:
        began = time.perf_counter()
        record: dict[str, Any] = {"unit_id": spec["unit_id"], "status": "ok"}
        try:
            card = unit_scorecard.select(inputs, spec["unit_id"])
            target = Path(spec["html"])
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(page(card, ctx, spec["title"]), encoding="utf-8")
        except Exception as exc:  # one unit's problem must not cost the others their pages
            record.update(status="failed", ename=type(exc).__name__, evalue=str(exc))
        record["seconds"] = time.perf_counter() - began + setup
        records.append(record)
    return records

