"""The methodology appendix, rendered from the run: its saved design and its configuration.

Report layer. The appendix used to be a fixed text that described a method the code did not use
(strata unit x field x channel, raking by unit, field and channel). It is now built from

* the design specification the weighting stage saved (``results/design.json``,
  :class:`sipas_lib.weighting.DesignSpec`): weight columns, strata, PSUs, fpc, lonely-PSU rule,
  non-response cells, calibration kind with its cells and population counts, trimming;
* the run's configuration (:class:`sipas_lib.settings.Settings`): confidence ``level``,
  publication minima, aggregation ``rule``, rank draws, bootstrap replicates, sample allocation,

so a change of calibration or level changes the text. Wording lives in
``sipas_lib/texts/methodology.yaml`` (Vietnamese and English); formulas there are trusted
Markdown, every value inserted is formatted here.
"""

from __future__ import annotations

from statistics import NormalDist
from typing import Any, Mapping, Sequence

from sipas_lib import reporting as R
from sipas_lib.settings import Settings
from sipas_lib.texts import load_texts
from sipas_lib.weighting import DesignSpec

__all__ = ["appendix", "reform_text", "z_value", "level_text", "as_spec"]

_TEXTS = load_texts("methodology")


def _t(key: str, lang: str, **values: Any) -> str:
    template = _TEXTS[key][lang]
    return template.format(**values) if values else template


def level_text(level: float, lang: str) -> str:
    """The level as readers see it: ``0.9 -> "90 %"``, ``0.995 -> "99,5 %"`` (vi).

    >>> level_text(0.9, "vi"), level_text(0.995, "en")
    ('90 %', '99.5 %')
    """
    decimals = 0 if round(level * 100, 6).is_integer() else 1
    return R.fmt_pct(level, decimals, lang)


def z_value(level: float) -> float:
    r"""The normal quantile :math:`z_{(1+\ell)/2}` of a two-sided interval at ``level``
    (what every interval of the run uses; 1.96 at 0.95, 1.645 at 0.90).

    >>> round(z_value(0.95), 3), round(z_value(0.90), 3)
    (1.96, 1.645)
    """
    if not 0 < level < 1:
        raise ValueError(f"level must be between 0 and 1, got {level}")
    return NormalDist().inv_cdf((1 + level) / 2)


def as_spec(spec: DesignSpec | Mapping[str, Any]) -> DesignSpec:
    """A :class:`~sipas_lib.weighting.DesignSpec` from itself or from its saved dictionary."""
    return spec if isinstance(spec, DesignSpec) else DesignSpec.from_dict(spec)


def _columns(columns: Sequence[str], lang: str) -> str:
    """``("unit_id", "cal_cell") -> "đơn vị × lĩnh vực (…)"``: the reader's names of design columns."""
    names = [_t(f"col_{c}", lang) if f"col_{c}" in _TEXTS else f"`{R.md_escape(c)}`" for c in columns]
    return _t("times", lang).join(names)


def _section(settings: Settings, name: str) -> Mapping[str, Any]:
    return settings.sections.get(name, {})


def _sample(settings: Settings, lang: str, n_strata: int | None) -> str:
    sampling = _section(settings, "sampling_design")
    method = str(sampling.get("allocation_method", "power"))
    key = f"allocation_{method}"
    allocation = (_t(key, lang, a=R.fmt_num(sampling.get("power_exponent", 0.5), 2, lang)) if key in _TEXTS
                  else f"`{R.md_escape(method)}`")
    selection_key = f"selection_{sampling.get('selection_method', 'systematic')}"
    selection = _t(selection_key, lang) if selection_key in _TEXTS else f"`{R.md_escape(sampling.get('selection_method'))}`"
    strata = _t("strata_count", lang, k=R.fmt_num(n_strata, lang=lang)) if n_strata else ""
    return _t("population", lang, year=settings.year, strata=strata, allocation=allocation,
              minimum=R.fmt_num(sampling.get("minimum_per_unit", 1), lang=lang), selection=selection)


def _aggregation(settings: Settings, lang: str) -> str:
    rule = str(_section(settings, "index_ranking").get("rule", "mean"))
    key = f"rule_{rule}"
    if key in _TEXTS:
        description = _t(key, lang)
    else:  # a rule registered by the user: its own one-sentence description
        from sipas_lib.index import get_rule

        description = R.md_escape(get_rule(rule).description)
    return _t("aggregation", lang, rule=R.md_escape(rule), description=description)


def _weights(spec: DesignSpec, lang: str, deff_range: tuple[float, float] | None) -> str:
    parts = [_t("weights_base", lang, final=spec.weights, incl=spec.inclusion_probability,
                nr_cells=_columns(spec.nonresponse_cells, lang), nr_fallback=_columns(spec.nonresponse_fallback, lang))]
    min_cell_text = (_t("min_cell_one", lang) if spec.min_cell <= 1
                     else _t("min_cell_merge", lang, min_cell=R.fmt_num(spec.min_cell, lang=lang)))
    if spec.calibration == "poststratify":
        margin = spec.calibration_margins[0]
        parts.append(_t("calibration_poststratify", lang, cells=_columns(margin.columns, lang),
                        k=R.fmt_num(len(margin.cells), lang=lang), total=R.fmt_num(margin.total, lang=lang),
                        min_cell_text=min_cell_text))
    elif spec.calibration == "rake":
        margins = [_t("margin", lang, cells=_columns(m.columns, lang), k=R.fmt_num(len(m.cells), lang=lang))
                   for m in spec.calibration_margins]
        parts.append(_t("calibration_rake", lang, margins=_t("and", lang).join(margins),
                        maxit=R.fmt_num(spec.calibration_maxit, lang=lang),
                        epsilon=f"{spec.calibration_epsilon:g}", min_cell_text=min_cell_text))
    else:
        parts.append(_t("calibration_none", lang))
    if spec.trim_ratio is None:
        parts.append(_t("no_trim", lang))
    else:
        parts.append(_t("trim", lang, ratio=R.fmt_num(spec.trim_ratio, 1, lang), by=_columns(spec.trim_by, lang)))
    parts.append(_t("kish", lang))
    if deff_range is not None:
        parts.append(_t("kish_range", lang, low=R.fmt_num(deff_range[0], 2, lang), high=R.fmt_num(deff_range[1], 2, lang)))
    if spec.excluded_units:
        units = ", ".join(f"{R.md_escape(u)} ({_t(f'reason_{r}', lang)})" for u, r in spec.excluded_units)
        parts.append(_t("excluded", lang, units=units))
    return " ".join(parts)


def _variance(spec: DesignSpec, lang: str, level: float) -> str:
    if spec.calibration == "none":
        calibrated = ""
    else:
        cells = _t("and", lang).join(_columns(m.columns, lang) for m in spec.calibration_margins)
        calibrated = _t("calibrated_residuals", lang, cells=cells)
    fpc = _t("fpc_from", lang) if spec.fpc else _t("no_fpc", lang)
    return _t("variance", lang, strata=_columns(spec.strata_from, lang), psu=_columns(spec.psu_from, lang), fpc=fpc,
              lonely=R.md_escape(spec.lonely_psu), calibrated=calibrated, level=level_text(level, lang),
              z=R.fmt_num(z_value(level), 3, lang))


def _targets(lang: str) -> str:
    """The plan's targets as the index stage applies them (:data:`sipas_lib.index.DEFAULT_TARGETS`)."""
    from sipas_lib.index import DEFAULT_TARGETS

    parts = []
    for _, t in DEFAULT_TARGETS.sort_values("year").iterrows():
        low = R.fmt_pct(t["target_low"], 0, lang)
        if t["target_high"] == t["target_high"] and t["target_high"] < 1:  # a range, not a floor
            parts.append(_t("target_range", lang, year=int(t["year"]), low=low, high=R.fmt_pct(t["target_high"], 0, lang)))
        else:
            parts.append(_t("target_above", lang, year=int(t["year"]), low=low))
    return "; ".join(parts)


def reform_text(reform: Any, settings: Settings, lang: str) -> str:
    """The paragraph on comparisons across the 2025 reform, from the run's ``yoy_reform`` table
    (bases of the crosswalk, the coverage threshold, the level, how many units were compared)."""
    options = _section(settings, "index_ranking")
    bases = [b for b in ("population", "dossiers", "area") if b in set(reform["basis"].dropna())]
    basis = _t("and", lang).join(_t(f"basis_{b}", lang) for b in bases) or "–"
    crosswalk = str(options.get("crosswalk") or "sipas_lib/registry/hanoi_crosswalk_2025.csv")
    withheld = int(reform["withheld"].sum())
    counts = _t("reform_counts", lang, compared=R.fmt_num(len(reform) - withheld, lang=lang),
                withheld=R.fmt_num(withheld, lang=lang))
    coverage = float(reform["min_coverage"].iloc[0]) if len(reform) else float(options.get("min_predecessor_coverage", 0.5))
    return _t("reform", lang, basis=basis, crosswalk=R.md_escape(crosswalk.rsplit("/", 1)[-1]),
              level=level_text(settings.level, lang), z=R.fmt_num(z_value(settings.level), 3, lang),
              coverage=R.fmt_pct(coverage, 0, lang), min_n=R.fmt_num(settings.common["min_publish_n"], lang=lang),
              counts=counts)


def _integrity(settings: Settings, lang: str) -> str:
    opts = _section(settings, "integrity")
    policy = "integrity_policy_exclude" if opts.get("exclude_flagged") else "integrity_policy_report"
    return _t("integrity", lang, recheck=R.fmt_pct(_section(settings, "sampling_design").get("recheck_share", 0), 0, lang),
              threshold=R.fmt_pct(opts.get("confirmation_threshold", 0.9), 0, lang),
              rate=R.fmt_pct(opts.get("false_flag_rate", 0.01), 0, lang),
              gap=R.fmt_num(100 * float(opts.get("self_survey_gap", 0.05)), 1, lang), policy=_t(policy, lang))


def appendix(spec: DesignSpec | Mapping[str, Any], settings: Settings, lang: str | None = None, *,
             n_strata: int | None = None, deff_range: tuple[float, float] | None = None,
             reform: Any = None) -> str:
    """The methodology appendix (Markdown) of a run.

    Parameters
    ----------
    spec
        The run's design specification (``results/design.json``; a
        :class:`~sipas_lib.weighting.DesignSpec` or its dictionary).
    settings
        The run's effective configuration (all sections: ``sampling_design`` for the allocation,
        ``index_ranking`` for the rule and rank draws, ``reliability`` for the bootstrap).
    lang
        ``"vi"`` or ``"en"`` (default: the configuration's language).
    n_strata
        Number of sampling strata (unit x field) of the issued sample, when known.
    deff_range
        ``(min, max)`` of the units' Kish design effect of weighting (``weight_diagnostics``).
    reform
        The run's ``yoy_reform`` table (comparisons across the 2025 reform), when it wrote one:
        adds the paragraph of :func:`reform_text`.

    Examples
    --------
    >>> from sipas_lib.settings import load_settings
    >>> from sipas_lib.weighting import CalibrationMargin, DesignSpec
    >>> spec = DesignSpec(calibration="rake", calibration_margins=(
    ...     CalibrationMargin(("unit_id",), (("D01",),), (100.0,)),
    ...     CalibrationMargin(("field",), (("justice",),), (100.0,))))
    >>> text = appendix(spec, load_settings(overrides=["common.level=0.9"]), "en")
    >>> "Raking" in text and "90 % confidence interval" in text and "1.645" in text
    True
    """
    spec = as_spec(spec)
    lang = lang or settings.lang
    R._check_lang(lang)
    level = settings.level
    lv = level_text(level, lang)
    common = settings.common
    paragraphs = [
        _sample(settings, lang, n_strata),
        _t("satisfied", lang),
        _t("criterion_index", lang),
        _aggregation(settings, lang),
        _weights(spec, lang, deff_range),
        _variance(spec, lang, level),
        _t("ranks", lang, level=lv, min_n=R.fmt_num(common["min_publish_n"], lang=lang),
           draws=R.fmt_num(_section(settings, "index_ranking").get("n_draws", 0), lang=lang)),
        _t("change", lang, level=lv, z=R.fmt_num(z_value(level), 3, lang)),
        *([reform_text(reform, settings, lang)] if reform is not None and len(reform) else []),
        _t("targets", lang, level=lv, targets=_targets(lang)),
        _t("publication", lang, min_n=R.fmt_num(common["min_publish_n"], lang=lang),
           min_item=R.fmt_num(common["min_publish_n_item"], lang=lang)),
        _t("reliability", lang, level=lv, n_boot=R.fmt_num(_section(settings, "reliability").get("n_boot", 0), lang=lang)),
        _integrity(settings, lang),
    ]
    return "\n\n".join(paragraphs)
