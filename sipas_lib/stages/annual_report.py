"""Stage ``annual_report``: what the annual report shows, assembled from the run's result tables.

Stages layer. The report computes no statistic: every index, interval, rank, rank set, change and
target verdict was computed by the earlier stages and is read here through its contract
(:func:`sipas_lib.schemas.read_result`). This module only selects, merges and orders those rows
into the tables the notebook ``notebooks/60_annual_report.ipynb`` narrates and draws, and collects
what the methodology appendix is rendered from (the saved design and the run's configuration).
Unit types come from the units registry (``units``), never from an id.

Nothing is written: the annual report's output is its HTML page.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Protocol

import pandas as pd

from sipas_lib import config, published, schemas
from sipas_lib.index import DEFAULT_TARGETS, OVERALL_CODE
from sipas_lib.instrument import instrument_for_unit_type
from sipas_lib.settings import Settings, load_run_settings
from sipas_lib.stages import StageError
from sipas_lib.stages.index_ranking import MAX_CHART_UNITS, chart_units
from sipas_lib.units import province_of
from sipas_lib.weighting import DesignSpec

#: Unit types with a league table, in the report's order (those present in the run are shown).
GROUP_ORDER = ("department", "district", "province", "commune", "ward")
#: Province of the published national figures shown beside the city's results.
PROVINCE = "Ha Noi"
#: Columns of stage 50's ``small_area`` the league table shows beside the direct index (model-based, Fay–Herriot).
MODEL_COLUMNS = ("model_estimate", "model_ci_low", "model_ci_high", "model_rank", "model_rank_ci_low",
                 "model_rank_ci_high", "estimate_type", "official")


@dataclass(frozen=True)
class AnnualReport:
    """The tables of the annual report (every share 0–1, every interval at ``settings.level``).

    Attributes
    ----------
    units
        The units registry of the run (``units``).
    groups
        Unit types present in the ranks, in report order.
    league
        One row per unit: ``unit_id, unit_type, name_vi, name_en, estimate, ci_low, ci_high, n,
        publishable, rank, rank_ci_low, rank_ci_high, rank_ci_low_marginal, rank_ci_high_marginal,
        not_ranked_reason, change, change_significant, change_indicative``, the model-based
        columns :data:`MODEL_COLUMNS` (missing for a type stage 50 did not model; ``official`` is
        ``direct`` or ``model``, per row); by unit type, ranked units by their official rank, then
        the unranked by estimate. ``change_indicative`` marks a change against the unit's
        predecessors across the 2025 reform (``yoy_reform``; never significant or not).
    city
        One row per scope (unit types and ``all``) of the city-wide overall index, with ``change`` and
        ``change_significant`` from ``city_yoy`` (empty when there is no previous year).
    target
        The whole city's overall index against the year's target (``targets``; empty without one).
    group_facts
        One row per unit type: ``best``/``worst`` publishable unit and their estimates,
        ``n_above``/``n_below``/``n_between`` (units whose whole interval lies above / below the
        group's index, or covers it) and ``n_unpublishable``.
    sample
        One row per unit type and a ``total`` row: ``issued, returned, received, accepted,
        quarantined, response_rate`` (returned = issued forms that came back accepted, AAPOR RR1).
    elements
        Element rows of ``indices`` (``unit_id, unit_type, code, estimate, ci_low, ci_high, n``).
    criteria_city
        The whole city's criterion indices (criteria of the form only), lowest first.
    weakest_units
        ``priorities`` rows flagged ``weakest``, by unit type, unit and rank in the unit.
    reliability
        ``reliability_alpha`` rows of all respondents (``None`` when the stage wrote none).
    national_trend, province_path, targets_plan
        Published national figures (percent), the province's published path (percent) and the
        plan's targets (shares) for the national-context chart.
    reform
        ``yoy_reform``: the indicative comparison of each unit reshaped by the 2025 reform with its
        predecessors (``None`` when the units are the same both years or there is no previous year).
    model_covariates
        The administrative covariates of the small-area model (``index_ranking.small_area_covariates``)
        when stage 50 wrote ``small_area``, else empty: what the league table's model-based column
        borrows from.
    design
        The saved design specification (``results/design.json``), for the methodology appendix.
    run_settings
        The run's full configuration (all sections), its common section the stage's.
    deff_range
        ``(min, max)`` of the units' Kish design effect of weighting, or ``None``.
    """

    units: pd.DataFrame
    groups: tuple[str, ...]
    league: pd.DataFrame
    city: pd.DataFrame
    target: pd.DataFrame
    group_facts: pd.DataFrame
    sample: pd.DataFrame
    elements: pd.DataFrame
    criteria_city: pd.DataFrame
    weakest_units: pd.DataFrame
    reliability: pd.DataFrame | None
    national_trend: pd.DataFrame
    province_path: pd.DataFrame
    targets_plan: pd.DataFrame
    design: DesignSpec
    run_settings: Settings
    deff_range: tuple[float, float] | None
    reform: pd.DataFrame | None = None
    model_covariates: tuple[str, ...] = ()


# --------------------------------------------------------------------------------------------
# pure assembly functions (tested without files)
# --------------------------------------------------------------------------------------------


def league_table(ranks: pd.DataFrame, units: pd.DataFrame, yoy: pd.DataFrame | None = None,
                 reform: pd.DataFrame | None = None, small_area: pd.DataFrame | None = None) -> pd.DataFrame:
    """The league table rows: ``ranks`` with the units' names and last year's change of the overall
    index; by unit type (:data:`GROUP_ORDER`), ranked units by rank, then unranked by estimate.

    A unit reshaped by the 2025 reform has no change of its own; its indicative change against its
    predecessors (``reform``, not withheld) fills ``change`` with ``change_indicative`` True.

    ``small_area`` (stage 50's Fay–Herriot table) adds the model-based index, its interval and its
    rank set (:data:`MODEL_COLUMNS`) beside the direct ones. The official figure stays the direct
    one (``official = "direct"``) unless the run set ``index_ranking.use_model_for_ranks``
    (``official = "model"`` in ``small_area``): then that type's rows are ordered by the model-based
    rank. Nothing is recomputed; a type stage 50 did not model keeps missing model columns."""
    cols = ["unit_id", "unit_type", "estimate", "ci_low", "ci_high", "n", "publishable", "rank", "rank_ci_low",
            "rank_ci_high", "rank_ci_low_marginal", "rank_ci_high_marginal", "not_ranked_reason"]
    out = ranks[cols].merge(units[["unit_id", "name_vi", "name_en"]], on="unit_id", how="left", validate="one_to_one")
    if yoy is not None and len(yoy):
        change = yoy.loc[(yoy["level"] == "overall") & (yoy["code"] == OVERALL_CODE),
                         ["unit_id", "change", "significant"]].rename(columns={"significant": "change_significant"})
        out = out.merge(change, on="unit_id", how="left", validate="one_to_one")
    else:
        out["change"] = float("nan")
        out["change_significant"] = pd.array([pd.NA] * len(out), dtype="boolean")
    out["change_indicative"] = False
    if reform is not None and len(reform):
        shown = reform.loc[~reform["withheld"]].set_index("unit_id")["change"]
        fill = out["change"].isna() & out["unit_id"].isin(shown.index)
        out.loc[fill, "change"] = out.loc[fill, "unit_id"].map(shown)
        out.loc[fill, "change_indicative"] = True
    out = with_model_based(out, small_area)
    order = {t: i for i, t in enumerate(GROUP_ORDER)}
    out["_group"] = out["unit_type"].map(order).fillna(len(order))
    out["_rank"] = out["rank"].where(out["official"] == "direct", out["model_rank"]).astype("Float64")
    out["_ranked"] = out["_rank"].isna()
    out = out.sort_values(["_group", "_ranked", "_rank", "estimate"], ascending=[True, True, True, False],
                          kind="stable")
    return out.drop(columns=["_group", "_rank", "_ranked"]).reset_index(drop=True)


def league_sections(league: pd.DataFrame, units: pd.DataFrame, lang: str = "vi",
                    unit_types: tuple[str, ...] | None = None) -> list[tuple[str, str | None, pd.DataFrame]]:
    """The league table cut into the sections the report prints: ``(unit_type, province, rows)``.

    One section per unit type (``province`` None) while the run's units of that type belong to one
    province (a city's survey). When they span several provinces (the national-scale year: 578
    departments and 3,321 communes), one section per unit type and province, provinces in the
    registry's order, each with its units in the league's order (national rank kept), so a
    reader finds a commune under its province instead of on page 60 of one list. ``province`` is
    the province's name in ``lang``. Pure selection: no row is added, dropped or reordered within
    a section.
    """
    unit_types = tuple(dict.fromkeys(league["unit_type"])) if unit_types is None else unit_types
    names = units.set_index("unit_id")[f"name_{lang}"]
    province = league["unit_id"].map(province_of(units))
    order = {p: i for i, p in enumerate(units.loc[units["unit_type"] == "province", "unit_id"])}
    sections = []
    for unit_type in unit_types:
        rows = league.loc[league["unit_type"] == unit_type]
        where = province.loc[rows.index]
        if where.nunique() <= 1:
            sections.append((unit_type, None, rows))
            continue
        for pid in sorted(where.dropna().unique(), key=lambda p: order.get(p, len(order))):
            sections.append((unit_type, str(names.get(pid, pid)), rows.loc[where == pid]))
        if where.isna().any():
            sections.append((unit_type, None, rows.loc[where.isna()]))
    return sections


@dataclass(frozen=True)
class ChartSection:
    """One group of the report's one-row-per-unit charts (:func:`chart_sections`).

    Attributes
    ----------
    unit_type
        The section's unit type.
    province
        The province's name in the reader's language, or ``None`` (the whole run's units of the type).
    rows
        The league rows the charts draw, in the league's order (or best first when cut).
    n_units
        How many units of the section there are; more than ``len(rows)`` when the charts show only
        the best and the worst.
    ranks_comparable
        True when the drawn units' ranks come from one league (a rank chart is meaningful); False for
        units of several provinces, each ranked within its own province (``index_ranking.league_by``).
    """

    unit_type: str
    province: str | None
    rows: pd.DataFrame
    n_units: int
    ranks_comparable: bool


def chart_sections(league: pd.DataFrame, units: pd.DataFrame, lang: str = "vi",
                   unit_types: tuple[str, ...] | None = None, limit: int = MAX_CHART_UNITS) -> list[ChartSection]:
    """The groups the report draws its caterpillar charts and element heatmaps for.

    A unit type whose units lie in one province (a city's survey) keeps its one section of
    :func:`league_sections`, every unit drawn. A type spanning several provinces gets one nationwide
    section instead of one per province (34 provinces x charts would be hundreds of charts no one
    reads): all its units up to ``limit``, else the ``limit // 2`` best and ``limit // 2`` worst by
    index (:func:`sipas_lib.stages.index_ranking.chart_units`, the limit notebook 50 uses). The
    league tables stay per province, so every unit is still printed. Its ranks hold within each
    province, so ``ranks_comparable`` is False and no nationwide rank chart is drawn.
    """
    unit_types = tuple(dict.fromkeys(league["unit_type"])) if unit_types is None else unit_types
    sections = []
    for unit_type in unit_types:
        parts = [s for s in league_sections(league, units, lang, (unit_type,)) if len(s[2])]
        if len(parts) == 1 and parts[0][1] is None:
            sections.append(ChartSection(unit_type, None, parts[0][2], len(parts[0][2]), True))
            continue
        rows = league.loc[league["unit_type"] == unit_type]
        rows = rows.loc[rows["estimate"].notna()]
        sections.append(ChartSection(unit_type, None, chart_units(rows, limit), len(rows), False))
    return sections


class ReportFormats(Protocol):
    """The reader's texts and number formats :func:`league_rows` prints with (the notebook's
    :class:`sipas_lib.notebook.NotebookContext` is one): the stage formats no number itself."""

    @property
    def level_label(self) -> str: ...  # "95 %": the confidence level as interval labels print it

    def label(self, key: str, **values: Any) -> str: ...

    def pct(self, share: float | None, decimals: int = 1) -> str: ...

    def num(self, value: float | None, decimals: int = 0) -> str: ...

    def pp(self, change: float | None, decimals: int = 1) -> str: ...

    def ci(self, low: float | None, high: float | None, decimals: int = 1) -> str: ...


def _rank_set_text(fmt: ReportFormats, low: pd.Series, high: pd.Series) -> list[str]:
    """``"3–9"`` per unit (``"1.204–1.310"`` in Vietnamese at national size), ``"–"`` without a set."""
    return [f"{fmt.num(a)}–{fmt.num(b)}" if pd.notna(a) and pd.notna(b) else "–" for a, b in zip(low, high)]


def league_rows(section: pd.DataFrame, fmt: ReportFormats, names: Mapping[str, str], min_n: int) -> pd.DataFrame:
    """One section of the league table (:func:`league_sections`) as the report prints it.

    Columns, headed in the reader's language: rank, unit, the direct index with its interval,
    the model-based index with its interval (only when stage 50 modelled the section's type),
    the rank confidence sets (simultaneous and marginal; the model-based set instead when the
    run publishes model-based ranks, ``official == "model"``), respondents, last year's change
    (``†`` marks an indicative change across the 2025 reform) and the publication status, plus
    ``_flag`` (True for a unit below the publication minimum ``min_n``: shown in grey italics).
    The official index's header carries the official mark when both indices are shown. Pure
    formatting of the stages' values: one row per row of ``section``, in its order.
    """
    modelled = bool(section["model_estimate"].notna().any())
    by_model = bool((section["official"] == "model").any())
    level = fmt.level_label
    direct, model = fmt.label("index_direct" if modelled else "index"), fmt.label("index_model", level=level)
    if modelled:
        direct, model = ((direct, fmt.label("official_mark", column=model)) if by_model
                         else (fmt.label("official_mark", column=direct), model))
    sets = ([("rank_set_model", "model_rank_ci_low", "model_rank_ci_high")] if by_model else
            [("rank_set_sim", "rank_ci_low", "rank_ci_high"),
             ("rank_set_marg", "rank_ci_low_marginal", "rank_ci_high_marginal")])
    columns = {
        fmt.label("rank"): [fmt.num(r) if pd.notna(r) else "–" for r in section["model_rank" if by_model else "rank"]],
        fmt.label("unit"): [names.get(u, u) for u in section["unit_id"]],
        direct: [fmt.pct(v, 2) for v in section["estimate"]],
        fmt.label("ci_level", level=level): [fmt.ci(a, b) for a, b in zip(section["ci_low"], section["ci_high"])],
        **({model: [f"{fmt.pct(e, 2)} ({fmt.ci(a, b)})" if pd.notna(e) else "–" for e, a, b in
                    zip(section["model_estimate"], section["model_ci_low"], section["model_ci_high"])]}
           if modelled else {}),
        **{fmt.label(key, level=level): _rank_set_text(fmt, section[low], section[high]) for key, low, high in sets},
        fmt.label("n_resp"): [fmt.num(v) for v in section["n"]],
        fmt.label("change"): [fmt.pp(v) + (" †" if indicative and pd.notna(v) else "")
                              for v, indicative in zip(section["change"], section["change_indicative"])],
        fmt.label("status"): ["" if ok else fmt.label("flag_too_few", min_n=min_n) for ok in section["publishable"]],
    }
    return pd.DataFrame({**columns, "_flag": ~section["publishable"].to_numpy(dtype=bool)})


def with_model_based(league: pd.DataFrame, small_area: pd.DataFrame | None) -> pd.DataFrame:
    """``league`` with stage 50's model-based columns (:data:`MODEL_COLUMNS`) merged by unit.

    Units of a type that was not modelled (or every unit, without ``small_area``) get missing
    model columns and ``official = "direct"``."""
    columns = ["unit_id", *MODEL_COLUMNS]
    model = pd.DataFrame(columns=columns) if small_area is None else small_area[columns]
    out = league.merge(model, on="unit_id", how="left", validate="one_to_one")
    ranks = [c for c in MODEL_COLUMNS if c.startswith("model_rank")]
    out[ranks] = out[ranks].astype("Int64")
    out[["model_estimate", "model_ci_low", "model_ci_high"]] = out[["model_estimate", "model_ci_low",
                                                                    "model_ci_high"]].astype(float)
    out["official"] = out["official"].fillna("direct")
    return out


def city_overall(city: pd.DataFrame, city_yoy: pd.DataFrame | None = None) -> pd.DataFrame:
    """The city-wide overall index per scope, with last year's change where there is one."""
    rows = city.loc[(city["level"] == "overall") & (city["code"] == OVERALL_CODE),
                    ["scope", "estimate", "ci_low", "ci_high", "n"]]
    if city_yoy is not None and len(city_yoy):
        change = city_yoy.loc[(city_yoy["level"] == "overall") & (city_yoy["code"] == OVERALL_CODE),
                              ["scope", "change", "significant"]].rename(columns={"significant": "change_significant"})
        rows = rows.merge(change, on="scope", how="left", validate="one_to_one")
    else:
        rows = rows.assign(change=float("nan"), change_significant=pd.array([pd.NA] * len(rows), dtype="boolean"))
    return rows.reset_index(drop=True)


def group_facts(league: pd.DataFrame, city: pd.DataFrame) -> pd.DataFrame:
    """Per unit type: best and worst publishable unit, and how many units' intervals lie wholly above
    or below the group's city-wide index (read from ``city``; the intervals are the stage's)."""
    rows = []
    reference = city.set_index("scope")["estimate"]
    for unit_type, grp in league.groupby("unit_type", sort=False):
        pub = grp.loc[grp["publishable"]].sort_values("estimate", kind="stable")
        ref = reference.get(unit_type, float("nan"))
        above = int((pub["ci_low"] > ref).sum())
        below = int((pub["ci_high"] < ref).sum())
        rows.append({
            "unit_type": unit_type, "n_units": len(grp), "n_publishable": len(pub),
            "n_unpublishable": int((~grp["publishable"]).sum()),
            "best": pub["unit_id"].iloc[-1] if len(pub) else None,
            "best_estimate": pub["estimate"].iloc[-1] if len(pub) else float("nan"),
            "worst": pub["unit_id"].iloc[0] if len(pub) else None,
            "worst_estimate": pub["estimate"].iloc[0] if len(pub) else float("nan"),
            "group_estimate": ref, "n_above": above, "n_below": below, "n_between": len(pub) - above - below,
        })
    return pd.DataFrame(rows)


def sample_table(intake: pd.DataFrame, rates: pd.DataFrame, units: pd.DataFrame,
                 unit_types: tuple[str, ...]) -> pd.DataFrame:
    """Questionnaires issued, returned, received, accepted and set aside by unit type, with a total.

    The unit type of a record comes from the units registry; records whose unit is not in the
    registry (e.g. a mistyped id, quarantined) count only in the total.
    """
    types = units.set_index("unit_id")["unit_type"]
    intake = intake.assign(unit_type=intake["unit_id"].map(types))
    rates = rates.assign(unit_type=rates["unit_id"].map(types))
    counts = intake.groupby("unit_type")[["received", "accepted", "quarantined"]].sum()
    sent = rates.groupby("unit_type")[["issued", "returned"]].sum()
    table = sent.join(counts, how="outer").reindex(list(unit_types)).fillna(0).astype("int64")
    total = pd.DataFrame({"issued": [rates["issued"].sum()], "returned": [rates["returned"].sum()],
                          "received": [intake["received"].sum()], "accepted": [intake["accepted"].sum()],
                          "quarantined": [intake["quarantined"].sum()]}, index=["total"]).astype("int64")
    table = pd.concat([table, total])
    table["response_rate"] = table["returned"] / table["issued"].where(table["issued"] > 0)
    return table.rename_axis("unit_type").reset_index()


def city_criteria(city: pd.DataFrame, criteria: list[str]) -> pd.DataFrame:
    """The whole city's criterion indices (the form's criteria only), lowest first."""
    rows = city.loc[(city["scope"] == "all") & (city["level"] == "item") & city["code"].isin(criteria)]
    return rows.sort_values("estimate", kind="stable").reset_index(drop=True)


def city_target(targets: pd.DataFrame) -> pd.DataFrame:
    """The whole city's overall index against the year's target (no row when the year has none)."""
    rows = targets.loc[(targets["scope"] == "all") & (targets["level"] == "overall") & (targets["status"] != "no_target")]
    return rows.reset_index(drop=True)


# --------------------------------------------------------------------------------------------
# the stage
# --------------------------------------------------------------------------------------------


def _read(paths: config.RunPaths, name: str, required: bool = True) -> pd.DataFrame | None:
    try:
        return schemas.read_result(paths, name, required=required)
    except schemas.ContractError as err:
        raise StageError(str(err)) from None


def check_level(ranks: pd.DataFrame, settings: Settings, where: str) -> None:
    """Refuse to label intervals at one level that the index stage computed at another.

    Every interval and rank set of ``ranks``/``indices`` was computed at ``ranks.conf_level``; a
    report run with a different ``common.level`` would print the wrong label beside them.
    """
    levels = sorted(set(ranks["conf_level"].dropna().round(10)))
    if levels and levels != [round(settings.level, 10)]:
        raise StageError(f"{where}: the index stage computed its intervals at level {levels}, but this report runs "
                         f"at common.level = {settings.level}; run the whole chain with one level")


def full_settings(paths: config.RunPaths, settings: Settings) -> Settings:
    """The run's configuration with every section (saved in the run folder by the runner), its
    common section the one this stage received: the methodology names every stage's settings."""
    saved = load_run_settings(paths.run_dir)
    sections = dict(saved.sections)
    sections["common"] = settings.common
    return Settings(sections, saved.sources + settings.sources)


def run(paths: config.RunPaths, settings: Settings) -> AnnualReport:
    """Assemble the annual report's tables from the run's results (nothing is recomputed or written).

    Raises
    ------
    StageError
        A main result table of an earlier stage is missing or breaks its contract (the message
        names the file and the stage that writes it).
    """
    from sipas_lib.stages.weighting import load_design_spec

    units = _read(paths, "units")
    indices = _read(paths, "indices")
    city = _read(paths, "city_indices")
    ranks = _read(paths, "ranks")
    check_level(ranks, settings, str(schemas.result_path(paths, "ranks")))
    yoy = _read(paths, "yoy", required=False)
    city_yoy = _read(paths, "city_yoy", required=False)
    reform = _read(paths, "yoy_reform", required=False)
    small_area = _read(paths, "small_area", required=False)
    if small_area is not None:
        check_level(small_area, settings, str(schemas.result_path(paths, "small_area")))
    weights = _read(paths, "weight_diagnostics", required=False)
    groups = tuple(t for t in GROUP_ORDER if t in set(ranks["unit_type"])) + tuple(
        sorted(set(ranks["unit_type"]) - set(GROUP_ORDER)))
    league = league_table(ranks, units, yoy, reform, small_area)
    overall = city_overall(city, city_yoy)
    criteria = sorted(set().union(*(instrument_for_unit_type(g).criteria_codes for g in groups)))
    priorities = _read(paths, "priorities")
    weakest = priorities.loc[priorities["weakest"]].assign(
        _g=lambda d: d["unit_type"].map({t: i for i, t in enumerate(groups)}))
    weakest = weakest.sort_values(["_g", "unit_id", "rank_in_unit"], kind="stable").drop(columns="_g")
    alpha = _read(paths, "reliability_alpha", required=False)
    run_settings = full_settings(paths, settings)
    covariates = () if small_area is None else tuple(run_settings.section("index_ranking")["small_area_covariates"])
    deff = None
    if weights is not None and len(weights):
        deff = (float(weights["deff_kish"].min()), float(weights["deff_kish"].max()))
    return AnnualReport(
        units=units,
        groups=groups,
        league=league,
        city=overall,
        target=city_target(_read(paths, "targets")),
        group_facts=group_facts(league, overall),
        sample=sample_table(_read(paths, "intake_summary"), _read(paths, "response_rates"), units, groups),
        elements=indices.loc[indices["level"] == "element",
                             ["unit_id", "unit_type", "code", "estimate", "ci_low", "ci_high", "n"]].reset_index(drop=True),
        criteria_city=city_criteria(city, criteria),
        weakest_units=weakest.reset_index(drop=True),
        reliability=None if alpha is None else alpha.loc[alpha["unit_type"] == "all"].reset_index(drop=True),
        national_trend=published.national_trend(),
        province_path=published.province_path(PROVINCE),
        targets_plan=DEFAULT_TARGETS,
        design=load_design_spec(paths),
        run_settings=run_settings,
        deff_range=deff,
        reform=reform,
        model_covariates=covariates,
    )


def unit_names(units: pd.DataFrame, lang: str) -> dict[str, Any]:
    """``unit_id -> name`` in the reader's language (for chart labels)."""
    return dict(zip(units["unit_id"], units[f"name_{lang}"]))


def reform_summary(reform: pd.DataFrame) -> pd.DataFrame:
    """Per unit type of ``yoy_reform``: units compared, withheld (by reason), and how many moved up
    or down by more than their interval (indicative: an interval above or below 0)."""
    rows = []
    for unit_type, g in reform.groupby("unit_type", sort=False):
        shown = g.loc[~g["withheld"]]
        rows.append({"unit_type": unit_type, "n_units": len(g), "n_compared": len(shown),
                     "n_low_coverage": int((g["reason"] == "low_coverage").sum()),
                     "n_no_predecessor": int((g["reason"] == "no_predecessor").sum()),
                     "n_below_min_n": int((g["reason"] == "below_min_n").sum()),
                     "n_up": int((shown["change_ci_low"] > 0).sum()), "n_down": int((shown["change_ci_high"] < 0).sum()),
                     "median_coverage": float(g["coverage"].median()),
                     "bases": ",".join(sorted(set(g["basis"].dropna())))})
    return pd.DataFrame(rows)
