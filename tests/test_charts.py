"""The shared charts (sipas_lib.charts): titles, labels, n, the run's level, scaling to many units."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from sipas_lib import charts, published, ranking
from sipas_lib.index import DEFAULT_TARGETS


def _overall(k: int, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    est = rng.uniform(0.7, 0.97, k)
    se = rng.uniform(0.01, 0.04, k)
    n = rng.integers(20, 200, k)
    return pd.DataFrame({"unit_id": [f"X{i:03d}" for i in range(k)], "estimate": est, "ci_low": est - 1.645 * se,
                         "ci_high": np.minimum(est + 1.645 * se, 1.0), "n": n, "publishable": n >= 30})


def _ranks(k: int) -> pd.DataFrame:
    df = _overall(k).sort_values("estimate", ascending=False).reset_index(drop=True)
    rank = np.arange(1, k + 1)
    df["rank"] = pd.array(np.where(df["publishable"], rank, -1), dtype="Int64").astype("Int64")
    df.loc[~df["publishable"], "rank"] = pd.NA
    df["rank_ci_low"] = np.maximum(rank - 5, 1)
    df["rank_ci_high"] = np.minimum(rank + 5, k)
    df["rank_ci_low_marginal"] = np.maximum(rank - 2, 1)
    df["rank_ci_high_marginal"] = np.minimum(rank + 2, k)
    return df


def _texts(fig) -> str:
    ax = fig.axes[0]
    legend = " ".join(t.get_text() for lg in fig.legends + ([ax.get_legend()] if ax.get_legend() else [])
                      for t in lg.get_texts())
    return " | ".join([ax.get_title(loc="left"), ax.get_xlabel(), ax.get_ylabel(), legend])


def test_caterpillar_index_labels_use_the_runs_level_and_n():
    df = _overall(12)
    fig = charts.caterpillar(df, lang="vi", level=0.90, group="Sở", reference=0.85)
    text = _texts(fig)
    assert "90 %" in text and "95 %" not in text
    assert f"n = {int(df['n'].sum()):,}".replace(",", ".") in text
    assert "Tỷ lệ hài lòng (%)" in text and "Đơn vị" in text
    fig_en = charts.caterpillar(df, lang="en", level=0.99, group="Departments")
    assert "99 % CI" in _texts(fig_en)
    # one tick label per unit, ordered by the estimate (lowest at the bottom)
    ticks = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert ticks == df.sort_values("estimate")["unit_id"].tolist()


def test_caterpillar_marks_unpublishable_units_hollow():
    df = _overall(10)
    df["publishable"] = [True] * 8 + [False] * 2
    lines = charts.caterpillar(df, lang="en", level=0.95).axes[0].get_lines()
    hollow = [ln for ln in lines if ln.get_markerfacecolor() in ("white", (1.0, 1.0, 1.0, 1.0))]
    assert len(hollow) == 1 and len(hollow[0].get_xdata()) == 2


def test_caterpillar_scales_to_126_units_and_shortens_labels():
    df = _overall(126)
    names = {u: "Phường " + "rất " * 10 + u for u in df["unit_id"]}
    small = charts.caterpillar(_overall(10), lang="vi", level=0.95)
    big = charts.caterpillar(df, lang="vi", level=0.95, names=names)
    assert big.get_figheight() > 4 * small.get_figheight()
    labels = [t.get_text() for t in big.axes[0].get_yticklabels()]
    assert len(labels) == 126 and max(map(len, labels)) <= 24
    assert all(t.get_fontsize() <= 6 for t in big.axes[0].get_yticklabels())


def test_caterpillar_rank_draws_both_rank_sets_and_skips_unranked():
    df = _ranks(20)
    fig = charts.caterpillar(df, lang="en", level=0.90, kind="rank", group="Districts")
    text = _texts(fig)
    assert "90 % rank set (simultaneous)" in text and "90 % rank set (this unit)" in text
    assert len(fig.axes[0].get_yticklabels()) == int(df["rank"].notna().sum())
    # rank 1 is the top row
    assert fig.axes[0].get_yticklabels()[-1].get_text() == df.loc[df["rank"] == 1, "unit_id"].iloc[0]


def test_caterpillar_rejects_missing_columns_and_unknown_kind():
    with pytest.raises(ValueError, match="ci_low"):
        charts.caterpillar(_overall(5).drop(columns="ci_low"), lang="vi", level=0.95)
    with pytest.raises(ValueError, match="rank_ci_low_marginal"):
        charts.caterpillar(_ranks(5).drop(columns="rank_ci_low_marginal"), lang="vi", level=0.95, kind="rank")
    with pytest.raises(ValueError, match="kind"):
        charts.caterpillar(_overall(5), lang="vi", level=0.95, kind="box")


def test_funnel_draws_the_stages_limits_and_names_outliers():
    df = _overall(30)
    df.loc[0, ["estimate", "n"]] = [0.40, 150]
    limits = ranking.funnel_limits(0.85, 250, n_min=10, levels=(0.95, 0.998))
    points = ranking.funnel_points(df, centre=0.85).rename(columns={"unit": "unit_id"})
    fig = charts.funnel(points, limits, lang="en", level=0.95, names={"X000": "Outlier ward"}, group="all")
    ax = fig.axes[0]
    text = _texts(fig)
    assert "95 % control limits" in text and "99.8 % control limits" in text
    assert ax.get_xscale() == "log"
    assert "Outlier ward" in [t.get_text() for t in ax.texts]
    assert f"n = {int(df['n'].sum()):,}" in ax.get_title(loc="left")
    # the limit lines are the table's values, in percent
    upper = limits.loc[limits["level"] == 0.95, "upper"].to_numpy() * 100
    assert any(np.allclose(ln.get_ydata(), upper) for ln in ax.get_lines())
    with pytest.raises(ValueError, match="unit_id"):
        charts.funnel(points.drop(columns="unit_id"), limits, lang="en", level=0.95)


def test_national_context_draws_published_figures_and_targets():
    trend = published.national_trend()
    path = published.province_path("Ha Noi")
    own = pd.DataFrame({"year": [2025], "estimate": [0.88], "ci_low": [0.87], "ci_high": [0.89]})
    fig = charts.national_context(trend, path, DEFAULT_TARGETS, lang="vi", level=0.90, province="Hà Nội", own=own)
    ax = fig.axes[0]
    text = _texts(fig)
    assert "Hà Nội" in text and "KTC 90 %" in text and "Mục tiêu" in text
    nat = next(ln for ln in ax.get_lines() if ln.get_label() == "Trung bình cả nước")
    assert np.allclose(nat.get_ydata(), trend["national_avg_pct"].to_numpy())
    ticks = [int(t.get_text()) for t in ax.get_xticklabels()]
    assert min(ticks) == int(trend["year"].min()) and 2025 in ticks
    assert ax.get_xlabel() == "Năm" and ax.get_ylabel()


def test_other_charts_have_titles_labels_and_level():
    ind = _overall(6)
    elements = pd.concat([ind.assign(code=f"E{i}") for i in range(1, 6)], ignore_index=True)
    fig = charts.element_heatmap(elements, lang="en", level=0.95, group="Districts")
    assert "Element" in _texts(fig) and "n =" in fig.axes[0].get_title(loc="left")
    items = ind.rename(columns={"unit_id": "code"}).assign(code=[f"c{i:02d}" for i in range(1, 7)])
    fig = charts.criteria_dots(items, lang="vi", level=0.90, texts={"c01": "Nơi ngồi chờ"}, n=500)
    assert "KTC 90 %" in _texts(fig) and "1. Nơi ngồi chờ" in [t.get_text() for t in fig.axes[0].get_yticklabels()]
    unit = elements.loc[elements["unit_id"] == "X000"]
    unit = unit.assign(peer_estimate=unit["estimate"] - 0.05)
    fig = charts.element_comparison(unit, lang="en", level=0.80, unit_name="Ward", peer_name="All wards", n=50)
    assert "80 % CI" in _texts(fig)


def test_log_axis_ticks_read_as_plain_numbers():
    from matplotlib.figure import Figure

    ax = Figure().add_subplot()
    ax.plot([10, 100, 1000, 5000], [1, 2, 3, 4])
    charts.log_axis(ax, "x", "vi")
    assert ax.get_xscale() == "log"
    assert ax.xaxis.get_major_formatter()(1000, 0) == "1.000"


def test_unit_labels_and_figure_height():
    assert charts.unit_labels(["A", "B"], {"A": "Alpha"}) == ["Alpha", "B"]
    assert charts.figure_height(126) > charts.figure_height(30) > charts.figure_height(5)
    with pytest.raises(ValueError):
        charts.figure_height(-1)


def test_an_estimate_a_rounding_error_outside_its_interval_still_draws():
    # a unit with every answer satisfied: estimate 1.0, Wilson upper bound 1 - 2e-16 (seen on the demo)
    from sipas_lib import charts

    elements = pd.DataFrame({"code": ["E1", "E2"], "estimate": [1.0, 0.8], "ci_low": [0.7, 0.7],
                             "ci_high": [1.0 - 2.2e-16, 0.9], "peer_estimate": [0.85, 0.8]})
    fig = charts.element_comparison(elements, lang="vi", level=0.95, unit_name="Xã A", peer_name="Các xã", n=12)
    assert fig.axes
