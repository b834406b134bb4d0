"""Charts used by more than one report: caterpillar, funnel, national context, and their helpers.

Report layer. Every chart takes tidy DataFrames with the contract's column names
(:mod:`sipas_lib.schemas`), the reader's ``lang`` and the run's confidence ``level``, draws only
(no statistics are computed here: intervals, rank sets and control limits come from the stages),
puts a title, both axis labels and *n* on the chart (:func:`sipas_lib.reporting.finish_chart`)
and returns a :class:`matplotlib.figure.Figure`. Show it in a notebook with
:func:`sipas_lib.reporting.show_figure`.

Figures are built with :class:`~matplotlib.figure.Figure` directly, not through ``pyplot``: no
global figure state, nothing shown twice, and nothing to close in a loop over 126 communes.

Shares are on the 0–1 scale (the contract); the charts draw them in percent.
"""

from __future__ import annotations

import math
import textwrap
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np
import pandas as pd

from sipas_lib import reporting as R

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["caterpillar", "caterpillar_pages", "page_slices", "funnel", "national_context", "log_axis", "element_heatmap",
           "criteria_dots", "element_comparison", "criterion_label", "figure_height", "unit_labels"]

#: Height (inches) of one row of a chart with one row per unit or criterion, by number of rows:
#: generous for a handful of units, tighter (with a smaller font) for 126 communes.
_ROW_HEIGHT = ((30, 0.28), (80, 0.2), (math.inf, 0.16))


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def _require(df: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{what}: column(s) {missing} missing (columns: {', '.join(map(str, df.columns))})")


def _new_figure(width: float, height: float) -> tuple["Figure", "Axes"]:
    from matplotlib.figure import Figure

    R.chart_style()
    fig = Figure(figsize=(width, height))
    return fig, fig.add_subplot()


def figure_height(n_rows: int, *, extra: float = 1.6, minimum: float = 2.6) -> float:
    """Figure height (inches) for a chart with one row per unit: grows with the rows, so that
    126 communes stay readable (row height shrinks from 0.28 to 0.16 inch as rows grow).

    >>> figure_height(10), round(figure_height(126), 2)
    (4.4, 21.76)
    """
    if n_rows < 0:
        raise ValueError(f"n_rows must be non-negative, got {n_rows}")
    per_row = next(h for limit, h in _ROW_HEIGHT if n_rows <= limit)
    return max(minimum, extra + per_row * n_rows)


def _label_font(n_rows: int) -> float:
    return 8.0 if n_rows <= 30 else (7.0 if n_rows <= 80 else 6.0)


def unit_labels(unit_ids: Sequence[Any], names: Mapping[str, str] | None = None, *,
                n_rows: int | None = None) -> list[str]:
    """Axis labels of units: the name from ``names`` (else the id), shortened the more units
    there are (40 characters up to 30 units, 30 up to 80, 24 beyond).

    >>> unit_labels(["S01", "S02"], {"S01": "Sở Nội vụ"})
    ['Sở Nội vụ', 'S02']
    """
    rows = len(unit_ids) if n_rows is None else n_rows
    width = 40 if rows <= 30 else (30 if rows <= 80 else 24)
    names = names or {}
    return [R.shorten(names.get(str(u), str(u)), width) for u in unit_ids]


def log_axis(ax: "Axes", axis: str = "x", lang: str = "vi") -> "Axes":
    """A logarithmic axis whose ticks read as plain numbers in the reader's language
    (``1.000`` in Vietnamese, ``1,000`` in English), not as powers of ten."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    target = ax.xaxis if axis == "x" else ax.yaxis
    (ax.set_xscale if axis == "x" else ax.set_yscale)("log")
    target.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    target.set_major_formatter(FuncFormatter(lambda v, _pos: R.fmt_num(v, 0, lang)))
    target.set_minor_formatter(NullFormatter())
    return ax


def _level_text(level: float, lang: str) -> str:
    return R.fmt_pct(level, 0 if round(level * 100, 6).is_integer() else 1, lang)


def _percent(values: Any) -> np.ndarray:
    return np.asarray(values, dtype=float) * 100.0


def _error_bars(estimate: np.ndarray, low: Any, high: Any) -> np.ndarray:
    """Matplotlib's ``xerr``/``yerr`` (distances below and above) of an interval in percent.

    Clipped at 0: an estimate of 1.0 can sit a rounding error (2e-16) outside its own Wilson
    bound, and matplotlib refuses negative error bars.
    """
    return np.clip(np.vstack([estimate - _percent(low), _percent(high) - estimate]), 0.0, None)


# --------------------------------------------------------------------------------------------
# caterpillar: units' index with its CI, or units' rank with its confidence sets
# --------------------------------------------------------------------------------------------


def caterpillar(df: pd.DataFrame, *, lang: str, level: float, kind: str = "index",
                names: Mapping[str, str] | None = None, reference: float | None = None,
                group: str = "", title: str | None = None) -> "Figure":
    """Units ordered by their index (``kind="index"``) or rank (``kind="rank"``), one row each.

    ``kind="index"`` draws each unit's ``estimate`` (dot) and its confidence interval
    ``ci_low``–``ci_high`` at the run's ``level`` (bar); units that are not ``publishable`` get
    a hollow dot; ``reference`` (a share, e.g. the group's index) is a dashed line. Needs
    ``unit_id, estimate, ci_low, ci_high, n``.

    ``kind="rank"`` draws each ranked unit's ``rank`` (dot), its marginal rank confidence set
    ``rank_ci_low_marginal``–``rank_ci_high_marginal`` (thick bar: holds for that unit alone) and
    its simultaneous set ``rank_ci_low``–``rank_ci_high`` (thin bar: holds for all units at once),
    rank 1 at the top. Units without a rank (not publishable) are left out. Needs
    ``unit_id, rank, rank_ci_low, rank_ci_high, rank_ci_low_marginal, rank_ci_high_marginal, n``
    (the ``ranks`` table).

    The figure grows with the number of units (:func:`figure_height`) and the labels are
    shortened (:func:`unit_labels`), so a chart of 126 communes stays readable.
    """
    if kind not in ("index", "rank"):
        raise ValueError(f"caterpillar: kind must be 'index' or 'rank', got {kind!r}")
    if kind == "index":
        _require(df, ["unit_id", "estimate", "ci_low", "ci_high", "n"], "caterpillar (index)")
        plot = df.sort_values("estimate", kind="stable").reset_index(drop=True)
    else:
        _require(df, ["unit_id", "rank", "rank_ci_low", "rank_ci_high", "rank_ci_low_marginal",
                      "rank_ci_high_marginal", "n"], "caterpillar (rank)")
        plot = df.loc[df["rank"].notna()].sort_values("rank", ascending=False, kind="stable").reset_index(drop=True)
    rows = len(plot)
    fig, ax = _new_figure(8.0, figure_height(rows))
    y = np.arange(rows)
    level_text = _level_text(level, lang)
    if kind == "index":
        est, lo, hi = _percent(plot["estimate"]), _percent(plot["ci_low"]), _percent(plot["ci_high"])
        pub = (plot["publishable"].fillna(False).astype(bool).to_numpy() if "publishable" in plot.columns
               else np.ones(rows, bool))
        ax.hlines(y, lo, hi, color=R.GREYS[1], linewidth=1.6, label=R.label("ci_level", lang, level=level_text))
        ax.plot(est[pub], y[pub], "o", color=R.GREYS[0], markersize=4.5, linestyle="none",
                label=R.label("index", lang))
        if (~pub).any():
            ax.plot(est[~pub], y[~pub], "o", markerfacecolor="white", markeredgecolor=R.GREYS[0], markersize=4.5,
                    linestyle="none", label=R.label("not_published", lang))
        if reference is not None and np.isfinite(reference):
            ax.axvline(reference * 100.0, color=R.GREYS[0], linestyle="--", linewidth=1,
                       label=R.label("group_index", lang))
        xlabel = R.label("percent_axis", lang)
        title = title or R.label("caterpillar_title", lang, group=group, level=level_text)
    else:
        ax.hlines(y, plot["rank_ci_low"].to_numpy(float), plot["rank_ci_high"].to_numpy(float), color=R.GREYS[2],
                  linewidth=1.2, label=R.label("rank_set_sim", lang, level=level_text))
        ax.hlines(y, plot["rank_ci_low_marginal"].to_numpy(float), plot["rank_ci_high_marginal"].to_numpy(float),
                  color=R.GREYS[1], linewidth=3.2, label=R.label("rank_set_marg", lang, level=level_text))
        ax.plot(plot["rank"].to_numpy(float), y, "o", color=R.GREYS[0], markersize=4.5, linestyle="none",
                label=R.label("rank", lang))
        ax.xaxis.get_major_locator().set_params(integer=True)
        xlabel = R.label("rank_axis", lang)
        title = title or R.label("rank_caterpillar_title", lang, group=group, level=level_text)
    ax.set_yticks(y, unit_labels(plot["unit_id"].tolist(), names, n_rows=rows), fontsize=_label_font(rows))
    ax.set_ylim(-0.8, rows - 0.2)
    R.finish_chart(ax, title=title, xlabel=xlabel, ylabel=R.label("unit", lang),
                   n=int(plot["n"].sum()) if rows else None, lang=lang)
    if kind == "index":
        R.pct_axis(ax, "x", lang)
    _legend_below(fig, ax)
    return fig


#: Most units on one caterpillar chart; a longer list is split into consecutive charts
#: (:func:`caterpillar_pages`), so 126 communes read as four pages of ~32 rows with a common axis.
MAX_ROWS_PER_CHART = 40


def page_slices(n_rows: int, max_rows: int = MAX_ROWS_PER_CHART) -> list[slice]:
    """Consecutive, nearly equal slices of ``n_rows`` rows, none longer than ``max_rows``.

    >>> page_slices(126)
    [slice(0, 32, None), slice(32, 63, None), slice(63, 94, None), slice(94, 126, None)]
    >>> page_slices(20)
    [slice(0, 20, None)]
    """
    if max_rows < 1:
        raise ValueError(f"max_rows must be at least 1, got {max_rows}")
    pages = max(1, math.ceil(n_rows / max_rows))
    bounds = np.linspace(0, n_rows, pages + 1).round().astype(int)
    return [slice(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:])]


def caterpillar_pages(df: pd.DataFrame, *, lang: str, level: float, kind: str = "index",
                      names: Mapping[str, str] | None = None, reference: float | None = None,
                      group: str = "", title: str | None = None,
                      max_rows: int = MAX_ROWS_PER_CHART) -> list["Figure"]:
    """:func:`caterpillar` split into charts of at most ``max_rows`` units, best units first.

    The units are ordered once over the whole group (by index, or by rank), cut into
    consecutive pages (:func:`page_slices`), and every page shares one axis range, so a dot on
    page 3 reads against the same scale as one on page 1. Titles say which ranks / places a
    page holds (``1–32 / 126``). One page (no split) for up to ``max_rows`` units.
    """
    if kind == "index":
        _require(df, ["unit_id", "estimate", "ci_low", "ci_high", "n"], "caterpillar (index)")
        ordered = df.sort_values("estimate", ascending=False, kind="stable").reset_index(drop=True)
        lo, hi = np.nanmin(ordered["ci_low"].to_numpy(float)), np.nanmax(ordered["ci_high"].to_numpy(float))
        pad = max(0.01, 0.03 * (hi - lo))
        limits = ((lo - pad) * 100.0, min(hi + pad, 1.0) * 100.0 + 0.5)
    else:
        ordered = df.loc[df["rank"].notna()].sort_values("rank", kind="stable").reset_index(drop=True)
        top = float(ordered["rank_ci_high"].max()) if len(ordered) else 1.0
        limits = (0.5, top + 0.5)
    slices = page_slices(len(ordered), max_rows)
    figures = []
    for part in slices:
        chunk = ordered.iloc[part]
        page_title = title
        if len(slices) > 1:
            span = f"{part.start + 1}–{part.stop} / {len(ordered)}"
            base = title or R.label("caterpillar_title" if kind == "index" else "rank_caterpillar_title", lang,
                                    group=group, level=_level_text(level, lang))
            page_title = f"{base} ({span})"
        fig = caterpillar(chunk, lang=lang, level=level, kind=kind, names=names, reference=reference, group=group,
                          title=page_title)
        fig.axes[0].set_xlim(*limits)
        figures.append(fig)
    return figures


def _legend_below(fig: "Figure", ax: "Axes", height: float = 0.35) -> None:
    """The legend in one row under the plot, whatever the figure's height."""
    handles, labels = ax.get_legend_handles_labels()
    share = height / fig.get_figheight()
    if handles:
        fig.legend(handles, labels, loc="lower center", ncol=len(handles), fontsize=8, bbox_to_anchor=(0.5, 0.0))
    fig.tight_layout(rect=(0, share if handles else 0, 1, 1))


# --------------------------------------------------------------------------------------------
# funnel: index against sample size, with control limits computed by the stage
# --------------------------------------------------------------------------------------------


def funnel(points: pd.DataFrame, limits: pd.DataFrame, *, lang: str, level: float,
           names: Mapping[str, str] | None = None, group: str = "", title: str | None = None,
           label_outside: bool = True) -> "Figure":
    """Funnel plot (Spiegelhalter 2005): each unit's index against its number of respondents,
    with control limits around the centre line.

    ``points`` needs ``unit_id, estimate, n`` and may carry ``position``
    (``above | within | below``, as :func:`sipas_lib.ranking.funnel_points` gives it): units
    outside are drawn as filled squares and, with ``label_outside``, named. ``limits`` is
    :func:`sipas_lib.ranking.funnel_limits`'s table (``n, level, centre, lower, upper``), one line
    pair per ``level`` in it. The chart only draws: the stage computes both tables.
    ``level`` is the run's confidence level, used in the title.
    """
    _require(points, ["unit_id", "estimate", "n"], "funnel (points)")
    _require(limits, ["n", "level", "centre", "lower", "upper"], "funnel (limits)")
    if limits.empty:
        raise ValueError("funnel: the limits table is empty")
    fig, ax = _new_figure(8.0, 4.8)
    styles = ("--", ":", "-.")
    for i, (lv, lim) in enumerate(limits.sort_values(["level", "n"]).groupby("level", sort=True)):
        text = R.label("funnel_limit", lang, level=_level_text(float(lv), lang))
        ax.plot(lim["n"], _percent(lim["lower"]), styles[i % 3], color=R.GREYS[1], linewidth=1, label=text, marker="")
        ax.plot(lim["n"], _percent(lim["upper"]), styles[i % 3], color=R.GREYS[1], linewidth=1, marker="")
    centre = float(limits["centre"].iloc[0])
    ax.axhline(centre * 100.0, color=R.GREYS[0], linewidth=1, label=R.label("funnel_centre", lang))
    outside = (points["position"].astype(str) != "within").to_numpy() if "position" in points.columns \
        else np.zeros(len(points), bool)
    n = points["n"].to_numpy(float)
    est = _percent(points["estimate"])
    ax.plot(n[~outside], est[~outside], "o", markerfacecolor="white", markeredgecolor=R.GREYS[0], markersize=5,
            linestyle="none", label=R.label("funnel_within", lang))
    if outside.any():
        ax.plot(n[outside], est[outside], "s", color=R.GREYS[0], markersize=5, linestyle="none",
                label=R.label("funnel_outside", lang))
        if label_outside:
            for uid, x, yv in zip(points.loc[outside, "unit_id"], n[outside], est[outside]):
                ax.annotate(unit_labels([uid], names, n_rows=100)[0], (x, yv), textcoords="offset points",
                            xytext=(4, 3), fontsize=7)
    log_axis(ax, "x", lang)
    ax.legend(loc="lower right", fontsize=8)
    R.finish_chart(ax, title=title or R.label("funnel_title", lang, group=group, level=_level_text(level, lang)),
                   xlabel=R.label("sample_size_axis", lang), ylabel=R.label("percent_axis", lang),
                   n=int(n.sum()), lang=lang)
    R.pct_axis(ax, "y", lang)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------------------------
# national context: published national trend, province range, one province's path, targets
# --------------------------------------------------------------------------------------------


def national_context(trend: pd.DataFrame, path: pd.DataFrame | None = None,
                     targets: pd.DataFrame | None = None, *, lang: str, level: float,
                     province: str = "Hà Nội", own: pd.DataFrame | None = None,
                     title: str | None = None) -> "Figure":
    """The national SIPAS trend published by the Ministry of Home Affairs, with context.

    ``trend`` is :func:`sipas_lib.published.national_trend` (percent: ``year, national_avg_pct``
    and, where published, ``min_province_pct, max_province_pct, method_break``); the province
    range is a grey bar, and the method break (2022) a dotted vertical line. ``path`` is
    :func:`sipas_lib.published.province_path` (``year, sipas_pct``): the province's published
    values (squares, labelled). ``targets`` (``year, target_low, target_high``, shares 0–1 as
    :data:`sipas_lib.index.DEFAULT_TARGETS`) are drawn as target bands. ``own`` (``year, estimate,
    ci_low, ci_high``, shares) adds this survey's own figure with its interval at ``level`` — a
    different survey from MoHA's, so it has its own marker and legend entry.
    """
    _require(trend, ["year", "national_avg_pct"], "national_context (trend)")
    fig, ax = _new_figure(8.0, 4.4)
    years = trend["year"].astype(int).to_numpy()
    ax.plot(years, trend["national_avg_pct"].to_numpy(float), "-o", color=R.GREYS[0], markersize=4,
            label=R.label("national_avg", lang))
    if {"min_province_pct", "max_province_pct"} <= set(trend.columns):
        rng = trend.dropna(subset=["min_province_pct", "max_province_pct"])
        if len(rng):
            ax.vlines(rng["year"].astype(int), rng["min_province_pct"], rng["max_province_pct"], color=R.GREYS[2],
                      linewidth=4, label=R.label("province_range", lang))
    if "method_break" in trend.columns and trend["method_break"].fillna(False).astype(bool).any():
        year_break = int(trend.loc[trend["method_break"].fillna(False).astype(bool), "year"].iloc[0])
        ax.axvline(year_break - 0.5, color=R.GREYS[1], linestyle=":", linewidth=1, label=R.label("method_break", lang))
    if path is not None and len(path):
        _require(path, ["year", "sipas_pct"], "national_context (path)")
        pts = path.dropna(subset=["sipas_pct"])
        ax.plot(pts["year"].astype(int), pts["sipas_pct"].to_numpy(float), "s", color=R.GREYS[1], markersize=6,
                linestyle="none", label=province)
        for yr, v in zip(pts["year"].astype(int), pts["sipas_pct"].to_numpy(float)):
            ax.annotate(R.fmt_num(v, 2, lang), (yr, v), textcoords="offset points", xytext=(4, -11), fontsize=7.5)
    if targets is not None and len(targets):
        _require(targets, ["year", "target_low"], "national_context (targets)")
        for i, (_, t) in enumerate(targets.iterrows()):
            low = float(t["target_low"]) * 100.0
            high = float(t["target_high"]) * 100.0 if "target_high" in t and pd.notna(t["target_high"]) else low
            text = R.label("target", lang) if i == 0 else None
            ax.plot([int(t["year"]) - 0.3, int(t["year"]) + 0.3], [low, low], "-", color=R.GREYS[0], linewidth=2,
                    marker="", label=text)
            if high > low:
                ax.fill_between([int(t["year"]) - 0.3, int(t["year"]) + 0.3], low, high, color=R.GREYS[3], alpha=0.8)
    if own is not None and len(own):
        _require(own, ["year", "estimate", "ci_low", "ci_high"], "national_context (own)")
        est = _percent(own["estimate"])
        err = _error_bars(est, own["ci_low"], own["ci_high"])
        ax.errorbar(own["year"].astype(int), est, yerr=err, fmt="D", color=R.GREYS[0], markersize=6, capsize=3,
                    label=R.label("this_survey", lang, level=_level_text(level, lang)))
    all_years = sorted(set(years) | (set(path["year"].astype(int)) if path is not None and len(path) else set())
                       | (set(targets["year"].astype(int)) if targets is not None and len(targets) else set())
                       | (set(own["year"].astype(int)) if own is not None and len(own) else set()))
    ax.set_xticks(all_years, [str(y) for y in all_years])
    ax.legend(loc="lower right", fontsize=8)
    source = R.label("source", lang) + ": " + R.label("national_source", lang)
    R.finish_chart(ax, title=title or R.label("national_title", lang), xlabel=R.label("year", lang),
                   ylabel=R.label("sipas_axis", lang), lang=lang, source=source)
    R.pct_axis(ax, "y", lang)
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    return fig


# --------------------------------------------------------------------------------------------
# the annual report's and the scorecard's other charts
# --------------------------------------------------------------------------------------------


def element_heatmap(elements: pd.DataFrame, *, lang: str, level: float, names: Mapping[str, str] | None = None,
                    element_names: Mapping[str, str] | None = None, group: str = "",
                    title: str | None = None) -> "Figure":
    """Element indices by unit as a grey heat map (darker = lower), the value printed in each cell.

    ``elements``: the ``indices`` rows with ``level == "element"`` (``unit_id, code, estimate, n``);
    units are ordered by their mean element index, best first. A cell without respondents shows
    ``–``. ``level`` is accepted for a uniform signature (the map shows no intervals).
    """
    _require(elements, ["unit_id", "code", "estimate", "n"], "element_heatmap")
    grid = elements.pivot_table(index="unit_id", columns="code", values="estimate", aggfunc="first")
    codes = sorted(grid.columns)
    grid = grid.reindex(columns=codes)
    grid = grid.loc[grid.mean(axis=1).sort_values(ascending=False).index] * 100.0
    rows = len(grid)
    fig, ax = _new_figure(8.0, figure_height(rows, extra=2.2))
    values = grid.to_numpy(float)
    finite = values[np.isfinite(values)]
    vmin = max(0.0, float(finite.min()) - 5.0) if finite.size else 0.0
    im = ax.imshow(values, cmap="Greys_r", vmin=vmin, vmax=100.0, aspect="auto")
    font = 7 if rows <= 30 else 5.5
    # the cell values sit inside the axes: left out of the layout, tight_layout and the tight crop
    # need not measure 630 texts (126 communes × 5 elements) to find the same box
    for (i, j), v in np.ndenumerate(values):
        if np.isfinite(v):
            shade = (v - vmin) / (100.0 - vmin) if 100.0 > vmin else 1.0
            ax.text(j, i, R.fmt_num(v, 0, lang), ha="center", va="center", fontsize=font,
                    color="black" if shade > 0.5 else "white", in_layout=False)
        else:
            ax.text(j, i, "–", ha="center", va="center", fontsize=font + 1, color="black", in_layout=False)
    element_names = element_names or {}
    ax.set_xticks(range(len(codes)), [textwrap.fill(R.shorten(element_names.get(c, c), 34), 16) for c in codes],
                  fontsize=7.5)
    ax.set_yticks(range(rows), unit_labels(list(grid.index), names, n_rows=rows), fontsize=_label_font(rows))
    ax.grid(False)
    cbar = fig.colorbar(im, ax=ax, fraction=0.03)
    cbar.set_label(R.label("percent_axis", lang))
    n_units = elements.groupby("unit_id")["n"].max()
    R.finish_chart(ax, title=title or R.label("heatmap_title", lang, group=group), xlabel=R.label("element", lang),
                   ylabel=R.label("unit", lang), n=int(n_units.sum()) if len(n_units) else None, lang=lang)
    fig.tight_layout()
    return fig


def criteria_dots(items: pd.DataFrame, *, lang: str, level: float, texts: Mapping[str, str] | None = None,
                  n: int | None = None, title: str | None = None) -> "Figure":
    """Criteria ordered from lowest to highest share satisfied, each with its interval at ``level``.

    ``items``: rows of an index table with ``code, estimate, ci_low, ci_high``; ``texts`` maps a
    criterion code to its wording (from the instrument), shown shortened.
    """
    _require(items, ["code", "estimate", "ci_low", "ci_high"], "criteria_dots")
    plot = items.sort_values("estimate", kind="stable").reset_index(drop=True)
    rows = len(plot)
    fig, ax = _new_figure(8.0, figure_height(rows, extra=1.6))
    y = np.arange(rows)
    ax.hlines(y, _percent(plot["ci_low"]), _percent(plot["ci_high"]), color=R.GREYS[1],
              label=R.label("ci_level", lang, level=_level_text(level, lang)))
    ax.plot(_percent(plot["estimate"]), y, "s", color=R.GREYS[0], linestyle="none", markersize=5,
            label=R.label("index", lang))
    texts = texts or {}
    ax.set_yticks(y, [criterion_label(c, texts, 45) for c in plot["code"]], fontsize=8)
    ax.legend(loc="lower right", fontsize=8)
    R.finish_chart(ax, title=title or R.label("weakest_chart_title", lang), xlabel=R.label("percent_axis", lang),
                   ylabel=R.label("criterion", lang), n=n, lang=lang)
    R.pct_axis(ax, "x", lang)
    fig.tight_layout()
    return fig


def criterion_label(code: str, texts: Mapping[str, str], width: int = 70) -> str:
    """``"c04"`` -> ``"4. <wording, shortened>"`` (the code itself when the form has no wording)."""
    number = str(code)[1:].lstrip("0") if str(code)[:1].isalpha() and str(code)[1:].isdigit() else str(code)
    return f"{number}. " + R.shorten(texts.get(code, code), width)


def element_comparison(elements: pd.DataFrame, *, lang: str, level: float, unit_name: str, peer_name: str,
                       element_names: Mapping[str, str] | None = None, n: int | None = None,
                       title: str | None = None) -> "Figure":
    """One unit's element indices (dark bars, interval at ``level``) beside its peers' (light,
    hatched), element by element. ``elements`` needs ``code, estimate, ci_low, ci_high,
    peer_estimate`` (the scorecard stage's table)."""
    _require(elements, ["code", "estimate", "ci_low", "ci_high", "peer_estimate"], "element_comparison")
    mine = elements.sort_values("code").reset_index(drop=True)
    y = np.arange(len(mine))
    fig, ax = _new_figure(8.0, 0.55 * len(mine) + 2.0)
    est = _percent(mine["estimate"])
    err = _error_bars(est, mine["ci_low"], mine["ci_high"])
    ax.barh(y - 0.2, est, height=0.38, color=R.GREYS[0], xerr=err, ecolor="#555555", capsize=3,
            label=R.shorten(unit_name, 40) + " (" + R.label("ci_level", lang, level=_level_text(level, lang)) + ")")
    ax.barh(y + 0.2, _percent(mine["peer_estimate"]), height=0.38, color=R.GREYS[3], hatch="//",
            edgecolor=R.GREYS[1], label=peer_name)
    element_names = element_names or {}
    ax.set_yticks(y, [R.shorten(element_names.get(c, c), 38) for c in mine["code"]])
    ax.invert_yaxis()
    ax.set_xlim(0, 100)
    R.finish_chart(ax, title=title or R.label("element", lang), xlabel=R.label("percent_axis", lang),
                   ylabel=R.label("element", lang), n=n, lang=lang)
    R.pct_axis(ax, "x", lang)
    _legend_below(fig, ax)
    return fig
