"""The methodology appendix is rendered from the run's design and configuration (issue 10, defect 3).

The old fixed text claimed strata unit x field x channel and raking by unit, field and channel, and
a 95 % interval whatever the level. These tests change the design or the configuration and check
that the appendix changes with it, in both languages.
"""

from __future__ import annotations

import pytest

from sipas_lib import methodology as M
from sipas_lib.settings import load_settings
from sipas_lib.weighting import CalibrationMargin, DesignSpec

POSTSTRATIFY = DesignSpec(calibration="poststratify", calibration_margins=(
    CalibrationMargin(("unit_id", "cal_cell"), (("D01", "justice"), ("D01", "other"), ("S01", "other")),
                      (1200.0, 300.0, 500.0)),))
RAKE = DesignSpec(calibration="rake", calibration_margins=(
    CalibrationMargin(("unit_id",), (("D01",), ("S01",)), (1500.0, 500.0)),
    CalibrationMargin(("field",), (("justice",), ("other",)), (1200.0, 800.0))))
NONE = DesignSpec(calibration="none", trim_ratio=None)


@pytest.mark.parametrize("lang", ["vi", "en"])
def test_the_old_false_claims_are_gone(lang):
    for spec in (POSTSTRATIFY, RAKE):
        text = M.appendix(spec, load_settings(), lang)
        assert "kênh" not in text and "channel" not in text  # neither strata nor calibration use the channel


def test_level_changes_every_interval_sentence():
    at95 = M.appendix(POSTSTRATIFY, load_settings(), "en")
    at90 = M.appendix(POSTSTRATIFY, load_settings(overrides=["common.level=0.9"]), "en")
    assert "95 % confidence interval: estimate ± 1.960·SE" in at95
    assert "90 % confidence interval: estimate ± 1.645·SE" in at90
    assert "95 %" not in at90.replace("2025: 90 % to 95 %", "") and "1.96·" not in at90
    assert at90.count("90 %") >= 5  # intervals, rank sets, change, targets, reliability
    vi = M.appendix(POSTSTRATIFY, load_settings(overrides=["common.level=0.9"]), "vi")
    assert "Khoảng tin cậy 90 %: ước lượng ± 1,645·SE" in vi and "95 %" not in vi.replace("từ 90 % đến 95 %", "")
    assert "2023: above 85 %; 2025: 90 % to 95 %" in at90


def test_calibration_kind_changes_the_weighting_paragraph_and_names_the_cells():
    post = M.appendix(POSTSTRATIFY, load_settings(), "en")
    rake = M.appendix(RAKE, load_settings(), "en")
    none = M.appendix(NONE, load_settings(), "en")
    assert "Post-stratification" in post and "in every cell of unit × field (after merging thin cells)" in post
    assert "(3 cells, 2,000 transactions in all)" in post
    assert "Raking" not in post
    assert "Raking" in rake and "unit (2 cells) and field (2 cells)" in rake and "Post-stratification" not in rake
    assert "at most 100 sweeps" in rake
    assert "No calibration" in none and "residuals from the calibration" not in none
    assert "Weights are not trimmed" in none and "3.5 times the median weight within unit" in post
    vi_rake = M.appendix(RAKE, load_settings(), "vi")
    assert "Raking" in vi_rake and "đơn vị (2 ô) và lĩnh vực (2 ô)" in vi_rake


def test_design_columns_come_from_the_spec():
    spec = DesignSpec(calibration="none", nonresponse_cells=("unit_id", "field"), strata_from=("unit_id", "field"),
                      lonely_psu="certainty", fpc=None, min_cell=3, trim_ratio=2.5)
    text = M.appendix(spec, load_settings(), "en")
    assert "within cells of unit × field of the issued sample" in text
    assert "strata: unit × field" in text and "`certainty`" in text
    assert "(not used)" in text and "2.5 times the median weight" in text
    merged = M.appendix(DesignSpec(calibration_margins=POSTSTRATIFY.calibration_margins, min_cell=3),
                        load_settings(), "en")
    assert "fewer than 3 responses is merged" in merged


def test_settings_of_other_stages_reach_the_text():
    s = load_settings(overrides=["index_ranking.rule=pooled", "index_ranking.n_draws=500", "common.min_publish_n=40",
                                 "reliability.n_boot=200", "sampling_design.allocation_method=neyman"])
    text = M.appendix(POSTSTRATIFY, s, "en", n_strata=123, deff_range=(1.02, 1.31))
    assert "(rule `pooled`)" in text and "share of all answered criterion ratings" in text
    assert "500 draws" in text and "at least 40 responses are ranked" in text and "fewer than 40 accepted" in text
    assert "200 replicates" in text and "Neyman allocation" in text and "(123 strata)" in text
    assert "ranges from 1.02 to 1.31" in text


def test_spec_as_saved_dictionary_and_excluded_units_are_escaped():
    spec = DesignSpec(calibration="none", excluded_units=(("<b>X</b>", "all_blank"),))
    text = M.appendix(spec.to_dict(), load_settings(), "en")
    assert "&lt;b&gt;X&lt;/b&gt; (every questionnaire blank)" in text
    with pytest.raises(ValueError):
        M.appendix({"version": 99}, load_settings(), "en")
    with pytest.raises(ValueError):
        M.appendix(NONE, load_settings(), "fr")


def test_z_value_and_level_text():
    assert M.z_value(0.95) == pytest.approx(1.959964, abs=1e-6)
    assert M.level_text(0.9, "vi") == "90 %" and M.level_text(0.975, "en") == "97.5 %"
    with pytest.raises(ValueError):
        M.z_value(1.0)
