"""Crosswalk across the 2025 reform: shares, and the predecessor figures and changes built on them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from sipas_lib import crosswalk as cw


def _small():
    # new N1 = all of old A + half of old B; new N2 = the other half of B + all of C (C not surveyed)
    crosswalk = pd.DataFrame({
        "old_unit_id": ["A", "B", "B", "C"],
        "new_unit_id": ["N1", "N1", "N2", "N2"],
        "share_of_old": [1.0, 0.5, 0.5, 1.0],
        "share_of_new": [0.6, 0.4, 0.3, 0.7],
        "basis": "area",
    })
    old = pd.DataFrame({"unit_id": ["A", "B"], "estimate": [0.80, 0.70], "se": [0.02, 0.03]})
    return crosswalk, old


def test_predecessor_figure_and_se_equal_a_hand_computation():
    crosswalk, old = _small()
    pred = cw.predecessor_estimates(cw.validate_crosswalk(crosswalk), old, min_coverage=0.25).set_index("new_unit_id")
    # N1: w = (0.6, 0.4) / 1.0 -> 0.6*0.80 + 0.4*0.70 = 0.76; var = 0.36*0.0004 + 0.16*0.0009 = 0.000288
    assert pred.loc["N1", "estimate_pred"] == pytest.approx(0.76, abs=1e-15)
    assert pred.loc["N1", "se_pred"] == pytest.approx(np.sqrt(0.000288), abs=1e-15)
    # N2: only B has an estimate, covering 0.3 of it -> B's figure, coverage 0.3
    assert pred.loc["N2", "estimate_pred"] == pytest.approx(0.70)
    assert pred.loc["N2", "coverage"] == pytest.approx(0.3)
    # with a covariance matrix, var = w' S w
    cov = pd.DataFrame([[0.0004, 0.0001], [0.0001, 0.0009]], index=["A", "B"], columns=["A", "B"])
    p2 = cw.predecessor_estimates(crosswalk, old, cov).set_index("new_unit_id")
    assert p2.loc["N1", "se_pred"] == pytest.approx(np.sqrt(0.000288 + 2 * 0.6 * 0.4 * 0.0001), abs=1e-15)


def test_predecessors_covering_too_little_are_withheld_and_the_change_has_a_ci():
    crosswalk, old = _small()
    pred = cw.predecessor_estimates(crosswalk, old, min_coverage=0.5)
    new = pd.DataFrame({"unit_id": ["N1", "N2"], "estimate": [0.82, 0.75], "se": [0.04, 0.05]})
    ch = cw.cross_reform_change(new, pred, level=0.90).set_index("unit_id")
    assert bool(ch.loc["N2", "withheld"]) and np.isnan(ch.loc["N2", "change"])
    z = stats.norm.ppf(0.95)
    se = np.sqrt(0.04 ** 2 + 0.000288)
    assert ch.loc["N1", "change"] == pytest.approx(0.06)
    assert ch.loc["N1", "change_se"] == pytest.approx(se)
    assert ch.loc["N1", "change_ci_low"] == pytest.approx(0.06 - z * se)
    assert ch.loc["N1", "comparison"].startswith("indicative (area-based")


def test_invalid_crosswalks_are_refused_with_the_unit_named():
    crosswalk, _ = _small()
    with pytest.raises(ValueError, match="old unit 'B' sums to 0.900000"):
        cw.validate_crosswalk(crosswalk.assign(share_of_old=[1.0, 0.5, 0.4, 1.0]))
    with pytest.raises(ValueError, match="row 3, column 'share_of_new'"):
        cw.validate_crosswalk(crosswalk.assign(share_of_new=[0.6, 1.4, 0.3, 0.7]))
    with pytest.raises(ValueError, match="basis"):
        cw.validate_crosswalk(crosswalk.assign(basis="guess"))
    with pytest.raises(ValueError, match="missing column"):
        cw.validate_crosswalk(crosswalk.drop(columns="basis"))


def test_ha_noi_area_crosswalk_covers_every_old_district_and_new_commune():
    pytest.importorskip("vietnamadminunits")
    x = cw.area_crosswalk("Hà Nội")
    assert x["old_district"].nunique() == 30 and x["new_code"].nunique() == 126
    np.testing.assert_allclose(x.groupby("old_district")["share_of_old"].sum(), 1.0, atol=1e-12)
    np.testing.assert_allclose(x.groupby("new_code")["share_of_new"].sum(), 1.0, atol=1e-12)
    # Phường Hoàn Kiếm (00070) was formed from wards of Hoàn Kiếm district (and a sliver of Ba Đình)
    hk = x[x["new_code"] == 70].set_index("old_district")["share_of_new"]
    assert hk.idxmax() == "Quận Hoàn Kiếm"


def test_shipped_ha_noi_crosswalk_is_what_the_mapping_gives():
    pytest.importorskip("vietnamadminunits")
    from sipas_lib import config, official_units

    shipped = cw.validate_crosswalk(pd.read_csv(config.PACKAGE_DIR / "registry" / "hanoi_crosswalk_2025.csv"))
    old = pd.read_csv(config.PACKAGE_DIR / "registry" / "hanoi_units.csv")
    # the district rows (the merged departments' rows follow, basis dossiers)
    shipped = shipped[shipped["old_unit_id"].isin(old.loc[old["unit_type"] == "district", "unit_id"])]
    rebuilt = cw.registry_crosswalk(cw.area_crosswalk("Hà Nội"), old[old["unit_type"] == "district"],
                                    official_units.communes("Hà Nội"))
    pd.testing.assert_frame_equal(shipped, rebuilt, check_exact=False, rtol=1e-10)
    assert shipped["old_unit_id"].nunique() == 30 and shipped["new_unit_id"].nunique() == 126


def test_every_old_province_goes_whole_to_one_of_34():
    pytest.importorskip("vietnamadminunits")
    p = cw.province_crosswalk()
    assert len(p) == 63 and p["old_province"].is_unique and p["new_unit_id"].nunique() == 34
    assert (p["share_of_old"] == 1).all()
    published = pd.read_csv(__import__("sipas_lib").config.PUBLISHED_DIR / "sipas_provincial_partial.csv")
    assert set(published["province"]) <= set(p["old_province"])  # every published province maps
