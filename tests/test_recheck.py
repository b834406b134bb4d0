"""The re-check (phúc tra, sipas_lib.recheck): intake rules, rates, agreement, the confirmation flag.

Wilson intervals: R ``prop.test(x, n, correct = FALSE)$conf.int`` (the Wilson score interval), R 4.2.2.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sipas_lib import schemas
from sipas_lib.formids import make_form_ids
from sipas_lib.inputs import InputError
from sipas_lib.recheck import RULES, read_recheck, recheck_agreement, recheck_flags, recheck_summary

CRITERIA = ["c01", "c05", "c10"]
NAME, PHONE, ADDRESS = "Nguyễn Thị Bích Ngọc", "0912 345 678", "12 Hàng Bạc, Hoàn Kiếm"


@pytest.fixture(scope="module")
def year() -> dict:
    """Two units × 20 issued forms; the first 10 of each unit are the planned re-check subsample."""
    ids = make_form_ids(np.repeat([101, 102], 20), np.tile(np.arange(1, 21), 2))
    sample = pd.DataFrame({"form_id": ids, "unit_id": np.repeat(["S01", "S02"], 20),
                           "survey_mode": np.tile(["postal", "one_stop"], 20),
                           "recheck": np.tile([True] * 10 + [False] * 10, 2)})
    rng = np.random.default_rng(13)
    responses = pd.DataFrame({"form_id": ids[:-1],  # the last issued form never came back
                              **{c: rng.integers(1, 6, 39).astype(float) for c in CRITERIA},
                              "survey_date": pd.Timestamp("2025-10-01")})
    return {"ids": ids, "sample": sample, "responses": responses}


def _rows(year: dict, forms: list[int], **columns) -> pd.DataFrame:
    """A re-check table for the issued forms number ``forms``: answers equal to the original by default."""
    original = year["responses"].set_index("form_id")
    ids = [year["ids"][k] for k in forms]
    table = pd.DataFrame({"form_id": ids, "rechecked_by": "MTTQ", "recheck_date": "2025-11-03", "outcome": "confirmed",
                          **{c: original[c].reindex(ids).to_numpy() for c in CRITERIA},
                          "respondent_name": NAME, "respondent_phone": PHONE, "respondent_address": ADDRESS})
    for column, values in columns.items():
        table[column] = values
    return table.astype({c: object for c in CRITERIA})  # cells may hold anything a person types


def _read(tmp_path: Path, year: dict, table: pd.DataFrame, name: str = "recheck.csv", **kwargs):
    path = tmp_path / name
    if name.endswith(".csv"):
        table.to_csv(path, index=False)
    else:
        table.to_excel(path, index=False)
    accepted, quarantine = read_recheck(path, year["sample"], year["responses"], criteria=CRITERIA, **kwargs)
    assert len(accepted) + len(quarantine) == len(table)  # received = accepted + quarantined
    return accepted, quarantine


def _no_contacts(*tables: pd.DataFrame) -> None:
    for table in tables:
        assert not set(table.columns) & schemas.PERSONAL_COLUMNS
        text = table.to_csv(index=False)
        for value in (NAME, PHONE, PHONE.replace(" ", ""), ADDRESS):
            assert value not in text


def test_a_clean_file_is_accepted_without_contacts(tmp_path, year):
    table = _rows(year, list(range(10)) + list(range(20, 30)))
    accepted, quarantine = _read(tmp_path, year, table)
    assert len(accepted) == 20 and quarantine.empty
    assert accepted["planned"].all() and set(accepted["unit_id"]) == {"S01", "S02"}
    assert accepted["reached"].all() and (accepted["recheck_date"] == pd.Timestamp("2025-11-03")).all()
    assert list(accepted.columns) == [c for c in schemas.contract("recheck").columns if c in accepted.columns]
    _no_contacts(accepted, quarantine)
    assert any("contact column(s)" in note and "(personal data)" in note for note in accepted.attrs["notes"])


def test_row_problems_are_quarantined_with_one_reason_each(tmp_path, year):
    ids = year["ids"]
    table = _rows(year, list(range(13)))
    table.loc[0, "outcome"] = "maybe"                       # outside the vocabulary
    table.loc[1, "recheck_date"] = "31/02/2025"              # not a date
    table.loc[2, "form_id"] = ids[2][:-1] + str((int(ids[2][-1]) + 1) % 10)  # mistyped: check digit fails
    table.loc[3, "form_id"] = make_form_ids([101], [999])[0]  # well formed, never issued
    table.loc[4, "c05"] = 7                                  # outside 1-5
    table.loc[5, "c10"] = PHONE                              # a phone typed into an answer cell
    table.loc[6, ["outcome", "c01"]] = ["unreachable", 3]    # answers without a reached respondent
    table.loc[6, ["c05", "c10"]] = np.nan
    table.loc[7, "recheck_date"] = "2025-09-15"              # before the survey date (2025-10-01)
    table.loc[8, "rechecked_by"] = "UBND"                    # not a re-checker
    table.loc[9, "form_id"] = ""                             # empty
    table.loc[10, "form_id"] = ids[39]                       # issued, never returned
    table.loc[12, "form_id"] = PHONE.replace(" ", "")        # a phone in the form id column: never echoed
    accepted, quarantine = _read(tmp_path, year, table)
    expected = {2: "outcome_value", 3: "recheck_date_value", 4: "form_id_check_digit", 5: "form_id_not_issued",
                6: "answer_value", 7: "answer_value", 8: "answers_unreached", 9: "recheck_date_order",
                10: "rechecked_by_value", 11: "form_id_missing", 12: "form_id_not_returned",
                14: "form_id_check_digit"}
    assert dict(zip(quarantine["source_row"], quarantine["rule"])) == expected
    assert set(quarantine["rule"]) <= set(RULES)
    assert len(accepted) == 1 and accepted["source_row"].tolist() == [13]
    by_row = quarantine.set_index("source_row")
    assert by_row.loc[6, "column"] == "c05" and "'7'" in by_row.loc[6, "reason"]
    assert by_row.loc[7, "column"] == "c10" and "phone number (not shown)" in by_row.loc[7, "reason"]
    assert by_row.loc[2, "column"] == "outcome" and "text (not shown)" in by_row.loc[2, "reason"]  # may be a name
    assert by_row.loc[3, "reason"].startswith("re-check date '31/02/2025' cannot be read")
    assert by_row.loc[5, "unit_id"] == "" and by_row.loc[12, "unit_id"] == "S02"
    assert by_row.loc[12, "form_id"] == ids[39] and by_row.loc[5, "form_id"] == ""  # ids shown only when issued
    assert "phone number (not shown)" in by_row.loc[14, "reason"]
    assert (quarantine["reason"].str.len() > 10).all() and (quarantine["reason_vi"].str.len() > 10).all()
    _no_contacts(accepted, quarantine)
    assert schemas.validate("recheck_quarantine", quarantine) is not None


def test_duplicated_form_ids(tmp_path, year):
    table = _rows(year, [0, 0, 1, 1, 2])
    table.loc[3, "outcome"] = "denied"  # form 1 re-checked twice with different results
    accepted, quarantine = _read(tmp_path, year, table)
    assert accepted["form_id"].tolist() == [year["ids"][0], year["ids"][2]]
    assert dict(zip(quarantine["source_row"], quarantine["rule"])) == {
        3: "duplicate_exact", 4: "duplicate_conflict", 5: "duplicate_conflict"}


def test_missing_column_and_wrong_type_columns_raise_naming_row_and_column(tmp_path, year):
    table = _rows(year, list(range(5)))
    with pytest.raises(InputError) as err:
        _read(tmp_path, year, table.drop(columns="outcome"))
    assert err.value.row == 1 and err.value.column == "outcome" and "recheck.csv" in str(err.value)
    with pytest.raises(InputError, match=r"row 1, column 'c05': missing column"):
        _read(tmp_path, year, table.drop(columns="c05"))
    shifted = table.assign(recheck_date=["xác nhận"] * 5)  # a column of text where dates belong
    with pytest.raises(InputError) as err:
        _read(tmp_path, year, shifted)
    assert (err.value.row, err.value.column) == (2, "recheck_date") and "no value in this column" in str(err.value)
    with pytest.raises(InputError, match="column 'outcome'"):
        _read(tmp_path, year, table.assign(outcome=["2025-11-03"] * 5))


def test_broken_and_empty_files_raise(tmp_path, year):
    broken = tmp_path / "recheck.xlsx"
    broken.write_bytes(b"PK\x03\x04 not really a workbook")
    with pytest.raises(InputError, match=r"recheck\.xlsx: not a valid \.xlsx file"):
        read_recheck(broken, year["sample"], year["responses"])
    empty = tmp_path / "empty.csv"
    empty.write_text("form_id,rechecked_by,recheck_date,outcome,c01,c05,c10\n", encoding="utf-8")
    with pytest.raises(InputError, match="no records"):
        read_recheck(empty, year["sample"], year["responses"])


def test_vietnamese_headers_and_labels_in_a_workbook(tmp_path, year):
    table = _rows(year, [0, 1, 2, 3])
    table["rechecked_by"] = ["Mặt trận Tổ quốc", "Hội CCB", "sở nội vụ", "mttq"]
    table["outcome"] = ["Xác nhận", "Phủ nhận", "Không nhớ", "Không liên lạc được"]
    table.loc[3, CRITERIA] = np.nan
    table = table.rename(columns={"form_id": "Mã số phiếu", "rechecked_by": "Đơn vị phúc tra",
                                  "recheck_date": "Ngày phúc tra", "outcome": "Kết quả phúc tra",
                                  "c01": "Câu 1", "c05": "Câu 5", "c10": "Câu 10",
                                  "respondent_name": "Họ tên người trả lời"})
    accepted, quarantine = _read(tmp_path, year, table, name="recheck.xlsx")
    assert quarantine.empty
    assert accepted["rechecked_by"].tolist() == ["MTTQ", "CCB", "SNV", "MTTQ"]
    assert accepted["outcome"].tolist() == ["confirmed", "denied", "not_remember", "unreachable"]
    assert accepted["reached"].tolist() == [True, True, True, False]
    _no_contacts(accepted)


def test_unplanned_rechecks_are_kept_but_not_in_the_rates(tmp_path, year):
    # forms 10-11 of unit S01 were not drawn for the re-check
    accepted, _ = _read(tmp_path, year, _rows(year, [0, 1, 10, 11], outcome=["confirmed", "confirmed", "denied", "denied"]))
    assert accepted["planned"].tolist() == [True, True, False, False]
    unit = recheck_summary(accepted).query("scope == 'unit'").iloc[0]
    assert (unit["n_rechecked"], unit["n_denied"], unit["n_unplanned"], unit["confirmation_rate"]) == (2, 0, 2, 1.0)


def test_summary_counts_rates_and_wilson_interval(tmp_path, year):
    outcomes = (["confirmed"] * 7 + ["not_remember", "unreachable", "unreachable"]      # S01: 7 of 8 reached
                + ["confirmed"] * 4 + ["denied"] * 6)                                     # S02: 4 of 10
    table = _rows(year, list(range(10)) + list(range(20, 30)), outcome=outcomes)
    table.loc[[8, 9], CRITERIA] = np.nan
    accepted, _ = _read(tmp_path, year, table)
    summary = recheck_summary(accepted, level=0.95)
    schemas.validate("recheck_summary", summary)
    s01 = summary[summary["unit_id"] == "S01"].iloc[0]
    assert (s01["n_rechecked"], s01["n_reached"], s01["n_confirmed"], s01["n_unreachable"]) == (10, 8, 7, 2)
    assert s01["reach_rate"] == pytest.approx(0.8) and s01["confirmation_rate"] == pytest.approx(7 / 8)
    assert (s01["ci_low"], s01["ci_high"]) == pytest.approx((0.529111817787146, 0.977582508549943), abs=1e-9)
    s02 = summary[summary["unit_id"] == "S02"].iloc[0]
    assert (s02["ci_low"], s02["ci_high"]) == pytest.approx((0.168180329706236, 0.687326230266342), abs=1e-9)
    assert s02["denial_rate"] == pytest.approx(0.6)
    city = summary[summary["scope"] == "city"].iloc[0]
    assert (city["n_rechecked"], city["n_confirmed"]) == (20, 11) and pd.isna(city["unit_id"])
    routes = summary[summary["scope"] == "survey_mode"].set_index("survey_mode")
    assert routes["n_rechecked"].sum() == 20 and set(routes.index) == {"postal", "one_stop"}

    flags = recheck_flags(summary, threshold=0.90, level=0.95)
    schemas.validate("recheck_flags", flags)
    by_unit = flags.set_index("unit_id")
    # R: binom.test(4, 10, p = 0.9, alternative = "less")$p.value; binom.test(4, 10)$conf.int (Clopper-Pearson)
    assert by_unit.loc["S02", "p_value"] == pytest.approx(0.0001469026, rel=1e-6)
    assert (by_unit.loc["S02", "lower"], by_unit.loc["S02", "upper"]) == pytest.approx(
        (0.121552258119827, 0.737621923393055), abs=1e-9)
    # R: binom.test(7, 8, p = 0.9, alternative = "less")$p.value; binom.test(7, 8)$conf.int
    assert by_unit.loc["S01", "p_value"] == pytest.approx(0.56953279, rel=1e-6)
    assert by_unit.loc["S01", "upper"] == pytest.approx(0.996840276468748, abs=1e-9)
    assert by_unit.loc["S02", "flagged"] and not by_unit.loc["S01", "flagged"]  # 73.8 % < 90 %; 99.7 % is not
    assert "credibly below the 90.0% threshold" in by_unit.loc["S02", "reason"]
    assert "73,8 %" in by_unit.loc["S02", "reason_vi"] and "10 người liên lạc được" in by_unit.loc["S02", "reason_vi"]
    assert "not credibly below" in by_unit.loc["S01", "reason"]
    assert (flags["signal"] == "recheck_confirmation").all() and (flags["reference"] == 0.90).all()


def test_one_respondent_who_did_not_confirm_is_not_enough_to_flag(tmp_path, year):
    # Wilson's upper limit for 0 of 1 is 79 % (< 90 %); the exact test: P(X <= 0 | n = 1, 0.9) = 0.1
    accepted, _ = _read(tmp_path, year, _rows(year, [0], outcome="denied"))
    summary = recheck_summary(accepted)
    assert summary.loc[summary["scope"] == "unit", "ci_high"].iloc[0] == pytest.approx(0.975)  # R binom.test(0, 1)
    row = recheck_flags(summary).iloc[0]
    assert not row["flagged"] and row["p_value"] == pytest.approx(0.1) and row["upper"] == pytest.approx(0.975)


def test_flag_false_rate_at_the_threshold_stays_within_alpha():
    # the exact test's size: P(flag | true rate = threshold) <= (1 - level)/2 for every n (closed form)
    from scipy import stats

    n = np.arange(1, 121)
    x = [np.arange(k + 1) for k in n]
    summary = pd.DataFrame({"scope": "unit", "unit_id": [f"U{k}_{j}" for k in n for j in range(k + 1)],
                            "n_confirmed": np.concatenate(x), "n_reached": np.repeat(n, n + 1)})
    flags = recheck_flags(summary.assign(**{c: np.nan for c in ("ci_low", "ci_high", "confirmation_rate")}))
    size = pd.Series(stats.binom.pmf(summary["n_confirmed"], summary["n_reached"], 0.90) * flags["flagged"]
                     ).groupby(summary["n_reached"].to_numpy()).sum()
    assert size.max() <= 0.025 and size.max() > 0.015


def test_a_unit_nobody_was_reached_in_is_not_flagged(tmp_path, year):
    table = _rows(year, [0, 1, 2], outcome="unreachable")
    table[CRITERIA] = np.nan
    accepted, _ = _read(tmp_path, year, table)
    flags = recheck_flags(recheck_summary(accepted))
    row = flags.iloc[0]
    assert not row["flagged"] and pd.isna(row["value"]) and "cannot be judged" in row["reason"]
    with pytest.raises(ValueError, match="confirmation_threshold"):
        recheck_flags(recheck_summary(accepted), threshold=90)


def test_agreement_uses_confirmed_planned_pairs(tmp_path, year):
    table = _rows(year, list(range(10)) + [10], outcome=["confirmed"] * 8 + ["denied", "not_remember", "confirmed"])
    accepted, _ = _read(tmp_path, year, table)  # answers equal to the original ones
    agreement = recheck_agreement(accepted, year["responses"], criteria=CRITERIA)
    schemas.validate("recheck_agreement", agreement)
    pooled = agreement[(agreement["scope"] == "city") & (agreement["criterion"] == "all")].set_index("weights")
    assert (pooled["n"] == 8 * 3).all()  # 8 confirmed planned forms × 3 criteria; denied/unplanned left out
    assert (pooled["exact_agreement"] == 1.0).all() and np.allclose(pooled["kappa"], 1.0)
    assert set(agreement["criterion"]) == {"all", *CRITERIA}
    assert set(agreement["weights"]) == {"unweighted", "linear", "quadratic"}

    moved = table.assign(c01=np.where(table["c01"] < 5, table["c01"] + 1, table["c01"]))
    accepted, _ = _read(tmp_path, year, moved)
    agreement = recheck_agreement(accepted, year["responses"], criteria=CRITERIA)
    c01 = agreement[(agreement["scope"] == "city") & (agreement["criterion"] == "c01")].set_index("weights")
    assert c01.loc["unweighted", "exact_agreement"] < 1 and c01.loc["quadratic", "kappa"] > c01.loc["unweighted", "kappa"]
