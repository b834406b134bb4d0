"""Hot paths changed for the national-scale year (issue 16 §1): same results, less time."""

import numpy as np
import pandas as pd
import pytest

from sipas_lib import intake, spreadsheet
from sipas_lib.reliability import alpha
from sipas_lib.stages import annual_report


def test_formula_scan_finds_formula_cells_and_only_them(tmp_path):
    from openpyxl import Workbook

    plain, formulas = Workbook(), Workbook()
    plain.active.append(["Mã số phiếu", "Câu 1", "Ghi chú"])
    plain.active.append(["0000400019", 4, "fine"])
    text = plain.active.cell(row=2, column=3, value="=not a formula")
    text.data_type = "s"  # a text cell that starts with '=' (openpyxl would store a formula otherwise)
    plain.save(tmp_path / "plain.xlsx")
    formulas.active.append(["Mã số phiếu", "Câu 1"])
    formulas.active.append(["0000400019", "=1+3"])
    formulas.save(tmp_path / "formulas.xlsx")
    assert not intake._has_formula_cells(tmp_path / "plain.xlsx")
    assert intake._has_formula_cells(tmp_path / "formulas.xlsx")


@pytest.mark.parametrize("dtype", ["str", "string", object, "category"])
def test_neutralised_columns_equal_the_per_cell_rule(dtype):
    values = pd.Series(["=HYPERLINK(1)", "Phường 1", None, "-3", "+x", "@y", "\tz", "\rq", "ok"], dtype=dtype)
    expected = values.map(spreadsheet.neutralise, na_action="ignore")
    got = spreadsheet._neutralise_column(values)
    pd.testing.assert_series_equal(got, expected)
    if dtype != "category":
        assert got.iloc[0] == "'=HYPERLINK(1)" and got.iloc[1] == "Phường 1" and got.iloc[3] == "'-3"


def test_bootstrap_counts_are_the_draws_of_one_index_matrix():
    n, b = 1000, 7
    reference = np.random.default_rng(5).integers(0, n, size=(b, n), dtype=np.int64)
    expected = np.stack([np.bincount(row, minlength=n) for row in reference]).astype(float)
    np.testing.assert_array_equal(alpha._boot_counts(np.random.default_rng(5), n, b), expected)


def test_bootstrap_alpha_is_the_same_whether_row_blocks_are_kept_or_recomputed():
    rng = np.random.default_rng(3)
    n, k = 5000, 8
    X = rng.integers(1, 6, size=(n, k)).astype(float)
    X[rng.random(X.shape) < 0.05] = np.nan
    w = rng.uniform(0.5, 2, n)
    scales = [np.arange(4), np.arange(4, k), np.arange(k)]
    n_feat = 10 + 4 + 10 + 4 + 36 + 8 + 2
    # both settings give 1,024-row blocks; the first keeps them (fits in 8 blocks' memory), the second not
    kept = alpha._boot_alpha(X, w, 120, 11, scales, max_feature_bytes=1024 * n_feat * 8)
    again = alpha._boot_alpha(X, w, 120, 11, scales, max_feature_bytes=40_000)
    np.testing.assert_array_equal(kept, again)
    whole = alpha._boot_alpha(X, w, 120, 11, scales)  # one block: equal up to summation order
    np.testing.assert_allclose(kept, whole, rtol=0, atol=1e-12)


def test_response_rates_count_distinct_issued_ids_that_came_back():
    sample = pd.DataFrame({"form_id": ["01", "02", "03", "04", " 05", "05"], "unit_id": list("AABBBB")})
    accepted = pd.DataFrame({"form_id": ["01", "03 ", "03", "05", "99"]})
    rates = intake.response_rates(sample, accepted, by=["unit_id"])
    assert rates.set_index("unit_id")[["issued", "returned"]].to_dict("index") == {
        "A": {"issued": 2, "returned": 1}, "B": {"issued": 3, "returned": 2}}


def _league(units: pd.DataFrame) -> pd.DataFrame:
    ranked = units.loc[units["unit_type"] != "province"].reset_index(drop=True)
    return pd.DataFrame({"unit_id": ranked["unit_id"], "unit_type": ranked["unit_type"],
                         "rank": np.arange(len(ranked), 0, -1)})


def test_league_sections_one_per_type_in_a_city_and_per_province_in_the_country():
    units = pd.DataFrame({
        "unit_id": ["P01", "P04", "S1", "S2", "C1", "C2", "C3", "C4"],
        "unit_type": ["province", "province", "department", "department", "commune", "commune", "commune", "ward"],
        "parent_id": [None, None, "P01", "P04", "P04", "P01", "P04", "P01"],
        "name_vi": ["Thành phố Hà Nội", "Tỉnh Cao Bằng", "S1", "S2", "C1", "C2", "C3", "C4"],
        "name_en": ["Ha Noi City", "Cao Bang Province", "S1", "S2", "C1", "C2", "C3", "C4"],
    })
    league = _league(units)
    sections = annual_report.league_sections(league, units, "en", ("department", "commune", "ward"))
    assert [(t, p, list(rows["unit_id"])) for t, p, rows in sections] == [
        ("department", "Ha Noi City", ["S1"]), ("department", "Cao Bang Province", ["S2"]),
        ("commune", "Ha Noi City", ["C2"]), ("commune", "Cao Bang Province", ["C1", "C3"]),
        ("ward", None, ["C4"])]
    city = units.loc[units["parent_id"].ne("P04") & units["unit_id"].ne("P04")]
    one = annual_report.league_sections(_league(city), city, "vi")
    assert [(t, p, len(rows)) for t, p, rows in one] == [("department", None, 1), ("commune", None, 1),
                                                        ("ward", None, 1)]
