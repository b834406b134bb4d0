"""Tests of sipas_lib.intake: reading, file-level errors, record rules, response rates.

Fixtures live in tests/fixtures/intake/ (written by make_fixtures.py there). Expected values are
closed forms worked out by hand beside each test.
"""

from __future__ import annotations

import hashlib
import unicodedata
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sipas_lib import intake
from sipas_lib.config import RunPaths
from sipas_lib.instrument import load_instrument
from sipas_lib.intake import (
    IntakeError,
    VIETNAMESE_HEADERS,
    form_id_problems,
    intake_files,
    intake_year,
    item_nonresponse,
    map_columns,
    normalize_header,
    quarantine_counts,
    read_table,
    response_rates,
    validate_responses,
    write_quarantine,
)
from sipas_lib.sampling import make_form_ids

FIX = Path(__file__).parent / "fixtures" / "intake"
CRITERIA = [f"c{k:02d}" for k in range(1, 19)]
LG = [f"lg{k}" for k in range(1, 9)]
PERSONAL = ["enumerator_name", "enumerator_phone", "enumerator_address"]


@pytest.fixture(scope="module")
def units() -> pd.DataFrame:
    return pd.read_csv(FIX / "units.csv")


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _frame(n: int, code: int = 30, unit: str = "D01", seed: int = 0, start: int = 1) -> pd.DataFrame:
    """Canonical district-form records as text (what read_table returns)."""
    rng = np.random.default_rng(seed)
    out = pd.DataFrame({"form_id": make_form_ids(np.full(n, code), np.arange(start, start + n)),
                        "unit_id": unit, "field": "justice", "channel": "postal"})
    for c in CRITERIA + LG:
        out[c] = rng.integers(1, 6, n).astype(str)
    out["gender"] = "1"
    out["survey_date"] = "2025-10-14"
    out["enumerator_name"] = "Nguyễn Văn An"
    out["enumerator_phone"] = "0912345678"
    return out.astype("string")


def _check_invariant(res) -> None:
    s = res.summary
    assert (s["received"] == s["accepted"] + s["quarantined"]).all()
    assert s["received"].sum() == len(res.accepted) + len(res.quarantine)
    assert s["accepted"].sum() == len(res.accepted)
    assert s["quarantined"].sum() == len(res.quarantine)


# ----------------------------------------------------------------------------- headers

def test_normalize_header_tolerates_case_space_nfd_and_leading_zeros():
    nfd = unicodedata.normalize("NFD", "Câu 1")
    assert nfd != "Câu 1"
    assert normalize_header(nfd) == normalize_header("  CÂU   01: ") == normalize_header("câu 1") == "câu 1"
    assert normalize_header("Câu 2.1") != normalize_header("Câu 2")


def test_vietnamese_headers_are_one_to_one_and_cover_the_contract():
    values = list(VIETNAMESE_HEADERS.values())
    assert len(values) == len(set(values))  # the simulator inverts this mapping
    expected = {"form_id", "unit_id", "field", "channel", *CRITERIA, *LG, "gender", "age_group", "education",
                "education_other", "survey_date", "collection_point", "return_date", *PERSONAL}
    assert set(values) == expected
    assert VIETNAMESE_HEADERS["Câu 2.8"] == "lg8" and VIETNAMESE_HEADERS["Câu 18"] == "c18"


def test_map_columns_vietnamese_canonical_custom_and_unknown():
    cols = ["Mã số phiếu", unicodedata.normalize("NFD", "ĐƠN VỊ"), "c01", "C02", "Câu 2.3", "Ghi chú", "Phiếu số"]
    got = map_columns(cols, column_map={"Phiếu số": "form_id_2"})
    assert got == {"Mã số phiếu": "form_id", cols[1]: "unit_id", "c01": "c01", "C02": "c02", "Câu 2.3": "lg3",
                   "Ghi chú": "Ghi chú", "Phiếu số": "form_id_2"}
    # a user mapping wins over the default one
    assert map_columns(["Đơn vị"], {"Đơn vị": "unit_name"}) == {"Đơn vị": "unit_name"}


# ----------------------------------------------------------------------------- reading

def test_read_csv_keeps_spreadsheet_row_numbers_and_text():
    t = read_table(FIX / "good_districts.csv")
    # header = row 1; a blank line after the third record (row 5) is dropped but keeps its number
    assert t["source_row"].tolist() == [2, 3, 4, 6, 7, 8]
    assert (t["source_file"] == "good_districts.csv").all()
    assert t["form_id"].iloc[0] == "300012"
    assert isinstance(t["c01"].dtype, pd.CategoricalDtype)  # text, one copy of each distinct value
    assert set(t["c01"].dropna()) <= {"1", "2", "3", "4", "5"}
    assert t["c05"].isna().iloc[1]  # the empty cell is missing, not ""


def test_read_xlsx_with_vietnamese_headers():
    t = read_table(FIX / "departments_vietnamese.xlsx")
    assert {"form_id", "unit_id", "channel", "c01", "c18", "gender", "enumerator_phone"} <= set(t.columns)
    assert t.attrs["headers"]["form_id"] == "Mã số phiếu"
    assert t["source_row"].tolist() == [2, 3, 4, 5]
    assert t["c01"].iloc[0] in {"1", "2", "3", "4", "5"}  # Excel 3.0 shown as 3
    assert t["form_id"].tolist() == ["100016", "100024", "100032", "100040"]


def test_read_nfd_bom_semicolon_csv_matches_canonical_names():
    t = read_table(FIX / "vietnamese_nfd_bom.csv")
    canonical = read_table(FIX / "good_districts.csv")
    assert list(t.columns) == list(canonical.columns)
    assert t["form_id"].iloc[0] == "300012"


def test_parquet_csv_and_xlsx_give_the_same_table(tmp_path):
    data = _frame(5, seed=3)
    data.to_csv(tmp_path / "r.csv", index=False)
    data.to_parquet(tmp_path / "r.parquet", index=False)
    data.rename(columns={v: k for k, v in VIETNAMESE_HEADERS.items()}).to_excel(tmp_path / "r.xlsx", index=False)
    a, b, c = (read_table(tmp_path / f"r.{ext}").drop(columns="source_file") for ext in ("csv", "parquet", "xlsx"))
    pd.testing.assert_frame_equal(a, b, check_dtype=False)
    pd.testing.assert_frame_equal(a, c, check_dtype=False)


def test_read_xlsx_sheet_selection(tmp_path):
    path = tmp_path / "two.xlsx"
    with pd.ExcelWriter(path) as xw:
        pd.DataFrame({"x": [1]}).to_excel(xw, sheet_name="Ghi chu", index=False)
        _frame(2).to_excel(xw, sheet_name="Phieu", index=False)
    assert len(read_table(path, sheet="Phieu")) == 2
    assert len(read_table(path, sheet=1)) == 2
    with pytest.raises(IntakeError, match=r"two\.xlsx.*no sheet 'Khac'.*Phieu"):
        read_table(path, sheet="Khac")


@pytest.mark.slow
def test_raw_files_are_never_modified(units):
    files = sorted(p for p in FIX.iterdir() if p.suffix in (".csv", ".xlsx", ".parquet"))
    before = {p: _sha(p) for p in files}
    mtimes = {p: p.stat().st_mtime_ns for p in files}
    for p in files:
        try:
            validate_responses(read_table(p), units)
        except IntakeError:
            pass
    assert {p: _sha(p) for p in files} == before
    assert {p: p.stat().st_mtime_ns for p in files} == mtimes


# ----------------------------------------------------------------------------- file-level errors

@pytest.mark.parametrize("name, fragments", [
    ("empty.csv", ["empty.csv", "empty"]),
    ("header_only.csv", ["header_only.csv", "row 2", "no records"]),
    ("broken.xlsx", ["broken.xlsx", "not a valid .xlsx"]),
    ("notes.txt", ["notes.txt", "unknown file type", ".csv"]),
    ("windows_1258.csv", ["windows_1258.csv", "row 1", "not UTF-8"]),
    ("ragged.csv", ["ragged.csv", "row 3", "40 cells", "38 columns"]),
    ("duplicate_headers.csv", ["duplicate_headers.csv", "row 1", "'c01'", "'Câu 1'"]),
    ("does_not_exist.csv", ["does_not_exist.csv", "not found"]),
])
def test_read_errors_name_the_file_row_and_expectation(name, fragments):
    with pytest.raises(IntakeError) as err:
        read_table(FIX / name)
    for frag in fragments:
        assert frag in str(err.value)


@pytest.mark.parametrize("name, fragments", [
    ("missing_column.csv", ["missing_column.csv", "row 1", "'c07'", "Câu 7", "hanoi_pl5_district"]),
    # the offending text is described, not echoed: it could be personal data typed in the wrong column
    ("bad_dates.csv", ["bad_dates.csv", "row 2", "survey_date", "text (not shown)", "2025-10-14"]),
    ("text_item_column.csv", ["text_item_column.csv", "row 2", "c06", "text (not shown)", "1-5"]),
])
def test_column_errors_name_the_file_row_and_column(units, name, fragments):
    with pytest.raises(IntakeError) as err:
        validate_responses(read_table(FIX / name), units, "hanoi_pl5_district")
    for frag in fragments:
        assert frag in str(err.value)


def test_intake_error_is_a_value_error():
    assert issubclass(IntakeError, ValueError)


def test_missing_vietnamese_column_names_the_vietnamese_header(units, tmp_path):
    data = _frame(3).drop(columns=["channel"]).rename(columns={v: k for k, v in VIETNAMESE_HEADERS.items()})
    data.to_excel(tmp_path / "vi.xlsx", index=False)
    with pytest.raises(IntakeError, match=r"vi\.xlsx: row 1.*'channel' \(Vietnamese header 'Hình thức khảo sát'\)"):
        validate_responses(read_table(tmp_path / "vi.xlsx"), units)


def test_scattered_bad_dates_are_record_level(units):
    raw = _frame(4)
    raw.loc[2, "survey_date"] = "hôm qua"
    res = validate_responses(raw, units)
    assert res.quarantine["rule"].tolist() == ["survey_date_value"]
    assert res.quarantine["source_row"].tolist() == [4]


@pytest.mark.parametrize("word", ["today", "now"])
def test_words_pandas_reads_as_the_clock_are_not_dates(units, word):
    # pd.to_datetime("today", format="ISO8601") is the clock's date: a form would be dated the day intake ran
    dates, ambiguous = intake.parse_date_texts(np.array([word, "2025-10-14"], dtype=object))
    assert np.isnat(dates[0]) and dates[1] == np.datetime64("2025-10-14") and not ambiguous.any()
    raw = _frame(4)
    raw.loc[2, "survey_date"] = word
    res = validate_responses(raw, units)
    assert res.quarantine[["source_row", "rule", "column"]].values.tolist() == [[4, "survey_date_value", "survey_date"]]


# ----------------------------------------------------------------------------- record rules

def test_each_record_rule_on_the_problem_file(units):
    res = validate_responses(read_table(FIX / "records_with_problems.csv"), units, "hanoi_pl5_district")
    expected = pd.read_csv(FIX / "records_with_problems_expected.csv", keep_default_na=False)
    got = dict(zip(res.quarantine["source_row"], res.quarantine["rule"]))
    want = {r: rule for r, rule in zip(expected["source_row"], expected["rule"]) if rule}
    assert got == want
    assert sorted(res.accepted["source_row"]) == sorted(set(expected["source_row"]) - set(want))
    # every rule defined is exercised except the sample check and the form tools' review states (tested separately)
    assert set(want.values()) == set(intake.RULES) - {"form_id_not_issued", *intake.REVIEW_RULES}
    _check_invariant(res)


def test_quarantine_reasons_name_column_and_value(units):
    res = validate_responses(read_table(FIX / "records_with_problems.csv"), units, "hanoi_pl5_district")
    q = res.quarantine.set_index("source_row")
    assert q.loc[10, "column"] == "c07" and "'7'" in q.loc[10, "reason"] and "1-5" in q.loc[10, "reason"]
    assert q.loc[11, "column"] == "c02" and "3.5" in q.loc[11, "reason"]
    assert q.loc[9, "reason"] == "form id '300087' starts with 30 but unit D02 has code 31"
    assert "row 20" in q.loc[22, "reason"]
    assert q["reason_vi"].notna().all() and q["reason"].notna().all()
    assert list(res.quarantine.columns) == intake.QUARANTINE_COLUMNS


def test_no_personal_data_in_outputs(units):
    res = validate_responses(read_table(FIX / "records_with_problems.csv"), units, "hanoi_pl5_district")
    for table in (res.accepted, res.quarantine, res.summary):
        assert not set(PERSONAL) & set(table.columns)
        text = [str(t) for t in table.to_numpy().ravel()]
        assert not any("0912345678" in t or "Nguyễn Văn An" in t for t in text)


def test_scattered_missing_items_are_accepted_and_gave_feedback(units):
    res = validate_responses(read_table(FIX / "good_districts.csv"), units, "hanoi_pl5_district")
    assert res.quarantine.empty and len(res.accepted) == 6
    acc = res.accepted
    assert np.isnan(acc.loc[1, "c05"])
    assert acc["gave_feedback"].tolist() == acc[["c15", "c16", "c17", "c18"]].notna().any(axis=1).tolist()
    assert acc["gave_feedback"].tolist() == [False, False, False, True, True, True]
    assert (acc["form"] == "hanoi_pl5_district").all() and (acc["unit_type"] == "district").all()
    assert acc["c01"].dtype == float and acc["source_row"].dtype == np.int64
    assert list(acc.columns[:6]) == ["form_id", "unit_id", "unit_type", "form", "field", "channel"]


def test_labels_and_unit_names_are_understood(units):
    res = validate_responses(read_table(FIX / "departments_vietnamese.xlsx"), units, "hanoi_pl5_department")
    assert res.quarantine.empty
    acc = res.accepted
    assert acc["unit_id"].tolist() == ["S01"] * 4          # 'Sở Nội vụ' and 's01' resolved
    assert acc["gender"].tolist() == [1.0, 2.0, 1.0, 2.0]  # 'Nam', 'Nữ'
    assert acc["channel"].tolist() == ["postal", "one_stop", "online", "postal"]
    assert "lg1" not in acc.columns


def test_scale_labels_dates_and_excel_serials(units):
    raw = _frame(3)
    raw.loc[0, "c01"] = "Hài lòng"            # scale label 4
    raw.loc[1, "c01"] = "RẤT HÀI LÒNG"        # 5
    raw.loc[0, "survey_date"] = "15/10/2025"
    raw.loc[1, "survey_date"] = "45945"       # Excel serial day 45945 = 2025-10-15
    res = validate_responses(raw, units)
    assert res.quarantine.empty
    assert res.accepted["c01"].tolist()[:2] == [4.0, 5.0]
    assert res.accepted["survey_date"].dt.strftime("%Y-%m-%d").tolist()[:2] == ["2025-10-15", "2025-10-15"]


def test_form_by_unit_type_when_no_instrument_given(units):
    dist = _frame(2)
    dep = _frame(2, code=10, unit="S01").drop(columns=LG)
    dep_lg = _frame(1, code=11, unit="S02")  # department record with local-governance answers
    raw = pd.concat([dist, dep, dep_lg], ignore_index=True)
    raw["source_row"] = np.arange(2, len(raw) + 2)
    res = validate_responses(raw, units)
    assert res.accepted["form"].tolist() == ["hanoi_pl5_district"] * 2 + ["hanoi_pl5_department"] * 2
    assert res.accepted.loc[2:, LG].isna().all().all()
    q = res.quarantine
    assert q["rule"].tolist() == ["form_unit_type"] and q["column"].tolist() == ["lg1"]
    assert "not on the department form" in q["reason"].iloc[0]


def test_duplicates_policy_across_files(units, tmp_path):
    a = _frame(3, seed=1)
    b = pd.concat([a.iloc[[0]], a.iloc[[1]].assign(c01="1" if a.loc[1, "c01"] != "1" else "2"),
                   _frame(1, start=10)], ignore_index=True)
    a.to_csv(tmp_path / "a.csv", index=False)
    b.to_csv(tmp_path / "b.csv", index=False)
    res = intake_files({tmp_path / "a.csv": "hanoi_pl5_district", tmp_path / "b.csv": None}, units)
    q = res.quarantine.set_index(["source_file", "source_row"])["rule"].to_dict()
    # exact copy: the first (a.csv row 2) kept, b.csv row 2 set aside; conflict: both copies set aside
    assert q == {("b.csv", 2): "duplicate_exact", ("a.csv", 3): "duplicate_conflict",
                 ("b.csv", 3): "duplicate_conflict"}
    assert sorted(zip(res.accepted["source_file"], res.accepted["source_row"])) == [
        ("a.csv", 2), ("a.csv", 4), ("b.csv", 4)]
    _check_invariant(res)


def test_form_id_not_issued_with_sample(units):
    raw = _frame(3)
    sample = pd.DataFrame({"form_id": raw["form_id"].iloc[:2].astype(str)})
    res = validate_responses(raw, units, sample=sample)
    assert res.quarantine["rule"].tolist() == ["form_id_not_issued"]
    assert res.quarantine["source_row"].tolist() == [4]


def test_form_id_problems_scheme():
    # sipas_lib.sampling docstring: 100016 is valid (Luhn over 10001 gives 6), 100015 is not
    got = form_id_problems(pd.Series(["100016", "100015", "10001", None, "abcdef", " 100016 ", "1000160"]))
    assert got.tolist()[:3] == [None, "form_id_check_digit", "form_id_format"]
    assert got.iloc[3] == "form_id_missing" and got.iloc[4] == "form_id_format"
    assert got.iloc[5] is None and got.iloc[6] == "form_id_format"
    # Luhn by hand for 30001: digits 3,0,0,0,1 -> double d5,d3,d1: 2+0+0+0+6 = 8 -> check (10-8)%10 = 2
    assert form_id_problems(pd.Series(["300012", "300013"])).tolist() == [None, "form_id_check_digit"]


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_received_equals_accepted_plus_quarantined_under_random_damage(units, seed):
    rng = np.random.default_rng(seed)
    raw = pd.concat([_frame(60, seed=seed), _frame(40, code=10, unit="S01", seed=seed).drop(columns=LG)],
                    ignore_index=True)
    raw["source_row"] = np.arange(2, len(raw) + 2)
    junk = np.array(["", "0", "7", "x", "3.5", "99", "S99", "D01C01", "100015", "Nữ", "31/02/2025", "4"],
                    dtype=object)
    cells = rng.integers(0, len(raw), 60), rng.integers(0, raw.shape[1] - 1, 60)
    values = raw.to_numpy(dtype=object)
    values[cells] = junk[rng.integers(0, len(junk), 60)]
    dup = rng.integers(0, len(raw), 8)
    damaged = pd.DataFrame(np.vstack([values, values[dup]]), columns=raw.columns).astype("string")
    damaged["source_row"] = np.arange(2, len(damaged) + 2)
    res = validate_responses(damaged, units)
    _check_invariant(res)
    assert len(res.accepted) + len(res.quarantine) == len(damaged)
    assert not set(res.accepted["source_row"]) & set(res.quarantine["source_row"])
    assert res.accepted["form_id"].is_unique
    assert res.quarantine["rule"].isin(list(intake.RULES)).all()


# ----------------------------------------------------------------------------- year, quarantine file

@pytest.fixture(scope="module")
def tiny_year(tmp_path_factory) -> Path:
    from sipas_lib.simulate import write_demo_year

    folder = tmp_path_factory.mktemp("tiny_year")
    # 2024: the structure before the July 2025 reform (department and district files)
    write_demo_year(folder, year=2024, seed=7, scale=0.1, n_departments=4, n_districts=5)
    return folder


def test_intake_year_quarantines_exactly_the_spoiled_records(tiny_year):
    res = intake_year(tiny_year, year=2024)
    assert res.date_problems.empty and res.ignored.empty
    assert res.accepted["survey_date"].dt.year.eq(2024).all()
    spoiled = pd.read_csv(tiny_year / "spoiled_records.csv", dtype={"form_id": str})
    rule_of = {"bad_check_digit": "form_id_check_digit", "unknown_unit": "unit_unknown",
               "duplicate_exact": "duplicate_exact", "duplicate_conflicting": "duplicate_conflict"}
    want = spoiled.assign(rule=spoiled["defect"].map(rule_of).fillna(
        spoiled["defect"].str.startswith("out_of_range:age").map({True: "demographic_value", False: "item_value"})))
    got = res.quarantine.groupby("form_id")["rule"].agg(set).to_dict()
    assert set(got) == set(want["form_id"])
    for fid, rule in zip(want["form_id"], want["rule"]):
        assert rule in got[fid]
    _check_invariant(res)
    assert set(res.accepted["source_file"]) == {"responses_departments.xlsx", "responses_districts.csv"}
    assert set(res.accepted["form"]) == {"hanoi_pl5_department", "hanoi_pl5_district"}
    assert res.accepted.loc[res.accepted["unit_type"] == "department", LG].isna().all().all()


def test_intake_year_missing_file_is_named(tiny_year, tmp_path):
    (tmp_path / "units.csv").write_bytes((tiny_year / "units.csv").read_bytes())
    with pytest.raises(IntakeError, match="responses_departments.xlsx: file not found"):
        intake_year(tmp_path)


def test_write_quarantine_and_counts(units, tmp_path):
    res = validate_responses(read_table(FIX / "records_with_problems.csv"), units, "hanoi_pl5_district")
    paths = RunPaths(data_dir=tmp_path, run_dir=tmp_path / "run")
    target = write_quarantine(res, paths)
    assert target == tmp_path / "run" / "quarantine" / "quarantine.csv"
    assert target.read_bytes()[:3] == b"\xef\xbb\xbf"  # BOM: Excel shows Vietnamese correctly
    back = pd.read_csv(target, encoding="utf-8-sig", dtype={"form_id": str}, keep_default_na=False)
    assert len(back) == len(res.quarantine) and list(back.columns) == intake.QUARANTINE_COLUMNS
    counts = quarantine_counts(res.quarantine)
    assert counts["n"].sum() == len(res.quarantine)
    assert counts.set_index("rule").loc["item_value", "n"] == 3
    assert counts.set_index("rule").loc["duplicate_conflict", "n"] == 2
    assert counts["description"].notna().all()
    assert quarantine_counts(res.quarantine.iloc[:0]).empty


# ----------------------------------------------------------------------------- rates

def test_response_rates_by_unit_mode_and_overall(units):
    sample = pd.DataFrame({"form_id": [f"{k:06d}" for k in range(8)],
                           "unit_id": ["S01"] * 4 + ["D01"] * 4,
                           "survey_mode": ["postal", "postal", "online", "online", "one_stop", "one_stop",
                                           "postal", "postal"]})
    accepted = pd.DataFrame({"form_id": ["000000", "000002", "000003", "000004", "000005", "999999"]})
    by_unit = response_rates(sample, accepted, by=["unit_id"]).set_index("unit_id")
    # S01: 3 of 4 returned; D01: 2 of 4 (the accepted form 999999 was never issued and does not count)
    assert by_unit.loc["S01", ["issued", "returned"]].tolist() == [4, 3]
    assert by_unit.loc["D01", "response_rate"] == pytest.approx(0.5)
    by_mode = response_rates(sample, accepted, by=["survey_mode"]).set_index("survey_mode")
    assert by_mode["response_rate"].to_dict() == pytest.approx({"online": 1.0, "one_stop": 1.0, "postal": 0.25})
    overall = response_rates(sample, accepted, by=[])
    assert overall[["issued", "returned"]].iloc[0].tolist() == [8, 5]
    by_type = response_rates(sample, accepted, by=["unit_type"], units=units).set_index("unit_type")
    assert by_type.loc["department", "returned"] == 3
    with pytest.raises(ValueError, match="no column"):
        response_rates(sample, accepted, by=["channel_x"])
    with pytest.raises(ValueError, match="units"):
        response_rates(sample, accepted, by=["unit_type"])


def test_item_nonresponse_all_and_feedback_bases():
    inst = load_instrument("hanoi_pl5_department")
    acc = pd.DataFrame(np.full((4, 18), 4.0), columns=CRITERIA)
    acc["form"] = inst.id
    acc["unit_id"] = ["S01", "S01", "S02", "S02"]
    acc.loc[0, "c01"] = np.nan
    acc.loc[[0, 1], ["c15", "c16", "c17", "c18"]] = np.nan  # two gave no feedback
    acc.loc[2, "c16"] = np.nan                               # one feedback-giver skipped c16
    acc["gave_feedback"] = acc[["c15", "c16", "c17", "c18"]].notna().any(axis=1)
    out = item_nonresponse(acc, inst).set_index(["code", "base"])
    assert out.loc[("c01", "all"), "share_missing"] == pytest.approx(1 / 4)
    assert out.loc[("c16", "all"), "share_missing"] == pytest.approx(3 / 4)
    assert out.loc[("c16", "gave_feedback"), ["n", "n_missing"]].tolist() == [2, 1]
    assert ("c01", "gave_feedback") not in out.index
    assert len(out) == 18 + 4
    by = item_nonresponse(acc, inst, by=["unit_id"]).set_index(["unit_id", "code", "base"])
    assert by.loc[("S01", "c01", "all"), "share_missing"] == pytest.approx(0.5)
    assert by.loc[("S02", "c16", "gave_feedback"), "share_missing"] == pytest.approx(0.5)
    # records of another form do not count
    other = pd.concat([acc, acc.assign(form="hanoi_pl5_district")], ignore_index=True)
    assert item_nonresponse(other, inst)["n"].max() == 4
    both = item_nonresponse(other, [inst, "hanoi_pl5_district"])
    assert set(both["form"]) == {"hanoi_pl5_department", "hanoi_pl5_district"}


def test_item_nonresponse_rejects_frames_without_items():
    with pytest.raises(ValueError, match="hanoi_pl5_department"):
        item_nonresponse(pd.DataFrame({"x": [1]}), "hanoi_pl5_department")


# ----------------------------------------------------------------------------- notebook

def test_report_labels_have_both_languages():
    from sipas_lib import reporting

    reporting.register_labels(intake.REPORT_LABELS)  # raises when a language is missing
    assert reporting.label("iq_title", "en") == "Questionnaire intake and data quality"


@pytest.mark.notebooks
def test_intake_notebook_runs_on_a_tiny_year(tiny_demo, tmp_path):
    import papermill as pm

    notebook = Path(__file__).resolve().parents[1] / "notebooks" / "20_intake_quality.ipynb"
    run = tmp_path / "run"
    pm.execute_notebook(str(notebook), str(tmp_path / "out.ipynb"), kernel_name="python3", progress_bar=False,
                        parameters={"data_dir": str(tiny_demo), "run_dir": str(run), "lang": "en"})
    results = run / "results"
    responses = pd.read_parquet(results / "responses.parquet")
    summary = pd.read_parquet(results / "intake_summary.parquet")
    units_out = pd.read_parquet(results / "units.parquet")
    quarantine = pd.read_csv(run / "quarantine" / "quarantine.csv", encoding="utf-8-sig")
    assert not set(PERSONAL) & set(responses.columns)
    assert (summary["received"] == summary["accepted"] + summary["quarantined"]).all()
    assert summary["accepted"].sum() == len(responses) and summary["quarantined"].sum() == len(quarantine)
    assert (units_out["unit_type"] == "commune").any()
    assert {"response_rates.parquet", "item_nonresponse.parquet"} <= {p.name for p in results.iterdir()}


def test_excel_date_cells_and_plain_frames(units, tmp_path):
    data = _frame(2).drop(columns=["survey_date"])
    data["survey_date"] = [pd.Timestamp("2025-10-14"), pd.Timestamp("2025-11-02")]
    data["c01"] = [3, 4]  # numbers, not text
    data.to_excel(tmp_path / "dates.xlsx", index=False)
    res = validate_responses(read_table(tmp_path / "dates.xlsx"), units)
    assert res.accepted["survey_date"].dt.strftime("%d/%m/%Y").tolist() == ["14/10/2025", "02/11/2025"]
    assert res.accepted["c01"].tolist() == [3.0, 4.0]
    # a DataFrame without source columns gets placeholder ones
    plain = validate_responses(_frame(2).drop(columns=["survey_date"]), units)
    assert plain.accepted["source_row"].tolist() == [2, 3]
    empty = validate_responses(_frame(0), units)
    assert empty.accepted.empty and empty.quarantine.empty and empty.summary.empty


def test_workbook_cells_read_as_openpyxl_reads_them(tmp_path):
    # intake reads .xlsx with calamine (issue 16: ~20x faster) but must see the cells openpyxl sees
    import datetime

    from openpyxl import Workbook, load_workbook

    book = Workbook()
    sheet = book.active
    sheet.append(["Mã số phiếu", "Câu 1", "Ngày khảo sát", "Ghi chú", "Câu 2"])
    sheet.append(["0000400019", 4, datetime.datetime(2025, 10, 14), "  ", 3.5])
    sheet.append([400027, 4.0, datetime.datetime(2025, 10, 14, 9, 30), None, -2])
    sheet.append([None, None, None, None, None])
    sheet.append(["x", 84912345678, True, "Hài lòng", 1e20])
    book.create_sheet("Trống")
    book.save(tmp_path / "cells.xlsx")
    want = load_workbook(tmp_path / "cells.xlsx", read_only=True, data_only=True)
    got = intake._Workbook(tmp_path / "cells.xlsx")
    assert got._openpyxl is None and got.names == want.sheetnames == ["Sheet", "Trống"]
    for k, nrows in ((0, None), (0, 2), (1, None)):
        expected = [tuple(r) for r in want.worksheets[k].iter_rows(max_row=nrows, values_only=True)]
        # openpyxl keeps a text cell of blanks; calamine reads it as empty: both are missing after strip()
        expected = [tuple(None if v == "  " else v for v in r) for r in expected]
        rows = got.rows(k, nrows)
        assert rows == expected
        assert [[type(v) for v in r] for r in rows] == [[type(v) for v in r] for r in expected]
    # an error cell is text to intake ('#N/A' is reported), empty to calamine: such a workbook is read by openpyxl
    error = sheet.cell(row=3, column=2, value="#N/A")
    error.data_type = "e"
    book.save(tmp_path / "errors.xlsx")
    with_errors = intake._Workbook(tmp_path / "errors.xlsx")
    assert with_errors._openpyxl is not None and with_errors.rows(0)[2][1] == "#N/A"


# ----------------------------------------------------------------------------- issue 11: only real questionnaires

def _template_file(tmp_path: Path, real: int, numbered_to: int, total_label: str | None, ext: str) -> Path:
    """A filled-in template: STT pre-numbered to ``numbered_to``, ``real`` questionnaires, maybe a total row."""
    data = _frame(real).drop(columns=["enumerator_name", "enumerator_phone"])
    blank = pd.DataFrame({c: pd.Series([pd.NA] * (numbered_to - real), dtype="string") for c in data.columns})
    blank["unit_id"] = "D01"  # templates often pre-fill the unit and the mode
    blank["channel"] = "postal"
    table = pd.concat([data, blank], ignore_index=True)
    table.insert(0, "STT", [str(k) for k in range(1, numbered_to + 1)])
    if total_label is not None:
        sums = {c: str(int(pd.to_numeric(data[c]).sum())) for c in CRITERIA}
        table = pd.concat([table, pd.DataFrame([{"STT": total_label, **sums}])], ignore_index=True)
    path = tmp_path / f"template.{ext}"
    if ext == "csv":
        table.to_csv(path, index=False)
    else:
        table.to_excel(path, index=False)
    return path


@pytest.mark.parametrize("ext, total_label", [("csv", "Tổng cộng"), ("xlsx", "Cộng"), ("csv", "TOTAL"),
                                              ("xlsx", None)])
def test_template_rows_and_total_rows_are_not_received(units, tmp_path, ext, total_label):
    path = _template_file(tmp_path, real=7, numbered_to=60, total_label=total_label, ext=ext)
    res = intake_files([path], units)
    _check_invariant(res)
    assert res.summary["received"].sum() == 7 and res.summary["accepted"].sum() == 7
    assert res.quarantine.empty
    n_total = int(total_label is not None)
    assert len(res.ignored) == 60 - 7 + n_total
    assert res.ignored["rule"].value_counts().to_dict() == {
        "no_form_id_no_answers": 53, **({"total_row": 1} if n_total else {})}
    assert res.ignored["source_row"].min() == 9  # rows 2-8 are the seven questionnaires
    assert res.sources[["rows_read", "ignored_rows", "received"]].iloc[0].tolist() == [60 + n_total, 53 + n_total, 7]
    assert any("not questionnaires" in note for note in res.notes)


def test_a_row_with_answers_but_no_form_id_is_still_a_questionnaire(units):
    raw = _frame(3)
    raw.loc[1, "form_id"] = pd.NA
    res = validate_responses(raw, units)
    assert res.quarantine["rule"].tolist() == ["form_id_missing"] and res.ignored.empty
    _check_invariant(res)


def test_return_rate_counts_distinct_issued_forms(units):
    sample = pd.DataFrame({"form_id": make_form_ids(np.full(10, 30), np.arange(1, 11)), "unit_id": "D01"})
    issued = sample["form_id"].tolist()
    accepted = pd.DataFrame({"form_id": issued[:6]})
    # received: 6 accepted, every one keyed three times, 2 set aside, ids never issued and blanks
    received = pd.Series(issued[:6] * 3 + issued[6:8] + ["999999", None, " " + issued[0]], dtype="string")
    rr = response_rates(sample, accepted, by=["unit_id"], received=received).iloc[0]
    assert rr[["issued", "returned", "received"]].tolist() == [10, 6, 8]
    assert rr["return_rate"] == pytest.approx(0.8) and rr["response_rate"] == pytest.approx(0.6)
    # duplicated rows of the sample are one issued form each
    doubled = response_rates(pd.concat([sample, sample]), accepted, by=[], received=received).iloc[0]
    assert doubled["issued"] == 10 and doubled["return_rate"] <= 1


# ----------------------------------------------------------------------------- issue 11: dates

def test_dates_outside_the_year_are_a_problem_of_the_date_only(units):
    raw = _frame(5)
    raw.loc[1, "survey_date"] = "01/01/1900"
    raw.loc[2, "survey_date"] = "2031-01-01"
    raw.loc[3, "survey_date"] = "45658"  # Excel serial of 2025-01-01: inside the year
    res = validate_responses(raw, units, year=2025)
    assert res.quarantine.empty and len(res.accepted) == 5  # answers kept
    dates = res.accepted.set_index("source_row")["survey_date"]
    assert dates.loc[[3, 4]].isna().all()
    assert dates.min() == pd.Timestamp("2025-01-01") and dates.max() == pd.Timestamp("2025-10-14")
    dp = res.date_problems
    assert dp[["source_row", "rule"]].values.tolist() == [[3, "date_outside_year"], [4, "date_outside_year"]]
    assert "2025" in dp["reason"].iloc[0] and dp["reason_vi"].notna().all()
    # without a year nothing is set aside
    assert validate_responses(raw, units).date_problems.empty


def test_ambiguous_dates_in_a_file_mixing_day_first_and_month_first(units):
    raw = _frame(5)
    raw["survey_date"] = ["25/10/2025", "10/26/2025", "05/06/2025", "07/07/2025", "2025-11-03"]
    res = validate_responses(raw, units, year=2025)
    dates = res.accepted.set_index("source_row")["survey_date"]
    assert dates.loc[2] == pd.Timestamp("2025-10-25") and dates.loc[3] == pd.Timestamp("2025-10-26")
    assert pd.isna(dates.loc[4])                                   # 5 June or 6 May: cannot tell
    assert dates.loc[5] == pd.Timestamp("2025-07-07")              # day = month: the same either way
    assert res.date_problems[["source_row", "rule"]].values.tolist() == [[4, "date_ambiguous"]]
    # the same date in a file that only writes day first is 5 June (the Vietnamese convention)
    plain = _frame(2)
    plain["survey_date"] = ["25/10/2025", "05/06/2025"]
    ok = validate_responses(plain, units, year=2025)
    assert ok.date_problems.empty and ok.accepted["survey_date"].iloc[1] == pd.Timestamp("2025-06-05")


# ----------------------------------------------------------------------------- issue 11: Excel layouts

def test_formulas_without_saved_values_are_reported(units, tmp_path):
    from openpyxl import Workbook

    data = _frame(3).drop(columns=["enumerator_name", "enumerator_phone"])
    wb = Workbook()
    ws = wb.active
    ws.title = "Phieu"
    ws.append(list(data.columns))
    for row in data.itertuples(index=False):
        ws.append(list(row))
    c03 = list(data.columns).index("c03") + 1
    for r in (2, 3, 4):  # answers computed by a formula that no program has calculated
        ws.cell(row=r, column=c03, value=f"=2+{r}")
    wb.save(tmp_path / "formulas.xlsx")
    with pytest.raises(IntakeError) as err:
        read_table(tmp_path / "formulas.xlsx")
    msg = str(err.value)
    assert "formulas.xlsx" in msg and "'Phieu'" in msg and "G2:G4" in msg and "formula" in msg


def _titled_workbook(path: Path, data: pd.DataFrame, title_rows: int) -> None:
    from openpyxl import Workbook

    wb = Workbook()
    guide = wb.active
    guide.title = "Hướng dẫn"
    guide.append(["Hướng dẫn nhập phiếu: mỗi dòng một phiếu; cột Mã số phiếu ghi 6 chữ số."])
    guide.append(["Mã số phiếu", "ghi đủ 6 chữ số"])
    sheet = wb.create_sheet("Phiếu khảo sát")
    for k in range(title_rows):
        sheet.append([f"PHIẾU KHẢO SÁT SỰ HÀI LÒNG – dòng tiêu đề {k + 1}"])
    sheet.append([{v: k for k, v in VIETNAMESE_HEADERS.items()}.get(c, c) for c in data.columns])
    for row in data.itertuples(index=False):
        sheet.append([None if pd.isna(v) else v for v in row])
    wb.save(path)


def test_excel_with_instructions_sheet_and_title_rows(units, tmp_path):
    data = _frame(4)
    path = tmp_path / "titled.xlsx"
    _titled_workbook(path, data, title_rows=2)
    t = read_table(path)
    assert t.attrs["sheet"] == "Phiếu khảo sát" and t.attrs["header_row"] == 3
    assert t["source_row"].tolist() == [4, 5, 6, 7]
    assert t["form_id"].tolist() == data["form_id"].tolist()
    res = intake_files([path], units)
    assert len(res.accepted) == 4
    assert res.sources[["sheet", "header_row"]].iloc[0].tolist() == ["Phiếu khảo sát", 3]
    assert any("'Phiếu khảo sát'" in n and "row 3" in n for n in res.notes)
    # explicit settings (intake_quality.sheet / header_row) are obeyed
    assert read_table(path, sheet="Phiếu khảo sát", header_row=3)["source_row"].iloc[0] == 4
    with pytest.raises(IntakeError, match=r"titled\.xlsx: row 2 \(header\) of sheet 'Phiếu khảo sát': missing"):
        validate_responses(read_table(path, sheet=1, header_row=2), units)


# ----------------------------------------------------------------------------- issue 11: personal data, formulas

PHONE, EMAIL, FORMULA = "0912 345 678", "lan.nguyen@gmail.com", "=cmd|' /C calc'!A0"


def test_personal_values_are_described_not_echoed(units, tmp_path):
    raw = _frame(6)
    raw.loc[0, "c05"] = PHONE
    raw.loc[1, "unit_id"] = EMAIL
    raw.loc[2, "form_id"] = FORMULA
    raw.loc[3, "gender"] = "Nguyễn Thị Lan"
    raw.loc[4, "survey_date"] = "0987654321"
    raw.loc[5, "channel"] = "+84912345678"
    res = validate_responses(raw, units)
    q = res.quarantine.set_index("source_row")
    assert q["rule"].to_dict() == {2: "item_value", 3: "unit_unknown", 4: "form_id_format",
                                   5: "demographic_value", 6: "survey_date_value", 7: "channel_value"}
    assert "phone number" in q.loc[2, "reason"] and "c05" in q.loc[2, "reason"]
    assert "e-mail" in q.loc[3, "reason"] and "formula" in q.loc[4, "reason"]
    assert "text (not shown)" in q.loc[5, "reason"] and "phone number" in q.loc[6, "reason"]
    text = " ".join(str(v) for table in (res.quarantine, res.summary, res.accepted)
                    for v in table.to_numpy().ravel())
    for secret in ("0912", "345 678", "lan.nguyen", "gmail", "cmd|", "Nguyễn Thị Lan", "0987654321", "84912345678"):
        assert secret not in text
    assert q.loc[4, "form_id"] == "" and q.loc[3, "unit_id"] == "(unit not shown)"
    # harmless wrong values are still shown so the paper form can be found
    other = _frame(2)
    other.loc[0, "c07"] = "7"
    assert "'7'" in validate_responses(other, units).quarantine["reason"].iloc[0]


def test_quarantine_file_never_carries_a_live_formula(units, tmp_path):
    raw = _frame(4)
    raw.loc[0, "form_id"] = FORMULA
    raw.loc[1, "unit_id"] = "=HYPERLINK(\"http://x\")"
    raw.loc[2, "field"] = "@SUM(A1)"
    raw.loc[3, "c02"] = "-1"
    raw.to_csv(tmp_path / "in.csv", index=False)
    res = intake_files([tmp_path / "in.csv"], units)
    assert len(res.quarantine) == 4
    target = write_quarantine(res, RunPaths(data_dir=tmp_path, run_dir=tmp_path / "run"))
    cells = pd.read_csv(target, encoding="utf-8-sig", dtype=str, keep_default_na=False).to_numpy().ravel()
    assert not [c for c in cells if c.startswith(("=", "+", "-", "@", "\t", "\r"))]
    assert b"cmd|" not in target.read_bytes() and b"HYPERLINK" not in target.read_bytes()


def test_duplicate_copies_share_their_reason(units):
    raw = pd.concat([_frame(3)] * 4, ignore_index=True)
    raw["source_row"] = np.arange(2, len(raw) + 2)
    res = validate_responses(raw, units)
    _check_invariant(res)
    assert len(res.accepted) == 3 and (res.quarantine["rule"] == "duplicate_exact").all()
    first = res.quarantine.loc[res.quarantine["form_id"] == raw["form_id"].iloc[0], "reason"]
    assert first.nunique() == 1 and "row 2" in first.iloc[0]
