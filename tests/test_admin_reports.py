"""Tests of sipas_lib.admin_reports: Phụ lục 3 (monthly) and Phụ lục 4 (annual) of plan 143/KH-UBND.

Reference values: a hand-built set of dossiers whose counts are worked out by hand below, and an
independent pandas computation of the same definitions on a random year (the DuckDB SQL must
agree with it exactly). Template rows are checked against the text of Phụ lục 3 / Phụ lục 4 in
the seed document (Kế hoạch 143/KH-UBND, shared/seeds/003).
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from sipas_lib import admin_reports as A

D = pd.Timestamp


def _write(folder, dossiers, procedures=None, feedback=None, apologies=None, opinions=None):
    folder.mkdir(parents=True, exist_ok=True)
    dossiers.to_parquet(folder / "dossiers.parquet", index=False)
    if procedures is None:
        procedures = pd.DataFrame(columns=list(A.PROCEDURE_COLUMNS))
    procedures.to_csv(folder / "procedures.csv", index=False)
    empty = {"unit_id": pd.Series(dtype=str), "level": pd.Series(dtype=str), "commune_id": pd.Series(dtype=str)}
    if feedback is None:
        feedback = pd.DataFrame({**empty, "feedback_id": pd.Series(dtype=str),
                                 "received_on": pd.Series(dtype="datetime64[ms]"),
                                 "kind": pd.Series(dtype=str), "result_published": pd.Series(dtype=bool)})
    if apologies is None:
        apologies = pd.DataFrame({**empty, "apology_id": pd.Series(dtype=str),
                                  "sent_on": pd.Series(dtype="datetime64[ms]"), "reason": pd.Series(dtype=str)})
    if opinions is None:
        opinions = pd.DataFrame({**empty, "opinion_id": pd.Series(dtype=str),
                                 "received_on": pd.Series(dtype="datetime64[ms]"),
                                 "medium": pd.Series(dtype=str), "satisfied": pd.Series(dtype=bool)})
    feedback.to_parquet(folder / "feedback.parquet", index=False)
    apologies.to_parquet(folder / "apologies.parquet", index=False)
    opinions.to_parquet(folder / "opinions.parquet", index=False)
    return folder


def _dossiers(rows):
    cols = ["dossier_id", "unit_id", "level", "commune_id", "field", "channel", "procedure_id",
            "received_on", "due_on", "resolved_on", "status", "overdue_reason"]
    df = pd.DataFrame(rows, columns=cols)
    for c in ("received_on", "due_on", "resolved_on"):
        df[c] = pd.to_datetime(df[c])
    return df


@pytest.fixture()
def hand_made(tmp_path):
    """Seven dossiers of S01 and two of D01's communes, reporting month = March 2025.

    By hand, for S01 level unit:
    - d1 received 10 Jan, resolved 20 Jan (on time): resolved before March -> only in YTD.
    - d2 received 25 Feb, due 5 Mar, resolved 8 Mar (late, "Thiếu nhân lực"): carried into March.
    - d3 received 3 Mar online_l3, due 10 Mar, resolved 9 Mar (on time).
    - d4 received 20 Mar postal, pending.
    - d5 received 31 Mar online_l4, due 10 Apr, resolved 2 Apr: to resolve in March, resolved later.
    - d6 received 2 Apr: after the month -> excluded.
    - d7 received 15 Dec 2024, due 30 Dec, resolved 5 Jan 2025 (late, "Lỗi phần mềm"): YTD only.
    Month to resolve = d2, d3, d4, d5 = 4; YTD to resolve = d1, d2, d3, d4, d5, d7 = 6.
    Resolved in March = d2 (late), d3 (on time); resolved YTD = d1, d2, d3, d7 (2 late).
    """
    rows = [
        ("d1", "S01", "unit", None, "justice", "direct", "P1", "2025-01-10", "2025-01-25", "2025-01-20", "on_time", None),
        ("d2", "S01", "unit", None, "justice", "direct", "P1", "2025-02-25", "2025-03-05", "2025-03-08", "overdue", "Thiếu nhân lực"),
        ("d3", "S01", "unit", None, "other", "online_l3", "P2", "2025-03-03", "2025-03-10", "2025-03-09", "on_time", None),
        ("d4", "S01", "unit", None, "other", "postal", "P3", "2025-03-20", "2025-04-01", None, "pending", None),
        ("d5", "S01", "unit", None, "justice", "online_l4", "P2", "2025-03-31", "2025-04-10", "2025-04-02", "on_time", None),
        ("d6", "S01", "unit", None, "justice", "direct", "P1", "2025-04-02", "2025-04-10", "2025-04-05", "on_time", None),
        ("d7", "S01", "unit", None, "justice", "direct", "P1", "2024-12-15", "2024-12-30", "2025-01-05", "overdue", "Lỗi phần mềm"),
        ("c1", "D01", "commune", "D01C01", "land_environment", "direct", "PC1", "2025-03-01", "2025-03-05", "2025-03-04", "on_time", None),
        ("c2", "D01", "commune", "D01C02", "justice", "online_l3", "PC2", "2025-03-02", "2025-03-05", "2025-03-06", "overdue", "Hồ sơ phức tạp"),
    ]
    procedures = pd.DataFrame({
        "procedure_id": ["P1", "P2", "P3", "P4", "PC1", "PC2"],
        "unit_id": ["S01", "S01", "S01", "S01", "D01", "D01"],
        "level": ["unit", "unit", "unit", "unit", "commune", "commune"],
        "field": ["justice", "other", "other", "justice", "land_environment", "justice"],
        "offers_online_l3": [True, True, False, True, False, True],
        "offers_online_l4": [False, True, False, False, False, False],
        "offers_postal": [True, False, True, False, False, False],
    })
    feedback = pd.DataFrame({"feedback_id": ["f1", "f2", "f3"], "unit_id": ["S01"] * 3, "level": ["unit"] * 3,
                             "commune_id": [None] * 3,
                             "received_on": pd.to_datetime(["2025-03-02", "2025-03-30", "2025-02-01"]),
                             "kind": ["behaviour", "regulation", "behaviour"], "result_published": [True, False, True]})
    apologies = pd.DataFrame({"apology_id": ["a1", "a2"], "unit_id": ["S01", "S01"], "level": ["unit", "unit"],
                              "commune_id": [None, None], "sent_on": pd.to_datetime(["2025-03-10", "2025-01-07"]),
                              "reason": ["Giải quyết quá hạn"] * 2})
    opinions = pd.DataFrame({"opinion_id": ["o1", "o2", "o3"], "unit_id": ["S01", "S01", "D01"],
                             "level": ["unit", "unit", "commune"], "commune_id": [None, None, "D01C01"],
                             "received_on": pd.to_datetime(["2025-03-15", "2025-03-16", "2025-03-17"]),
                             "medium": ["paper", "electronic", "paper"], "satisfied": [True, False, True]})
    return _write(tmp_path / "admin", _dossiers(rows), procedures, feedback, apologies, opinions)


def _get(counts, unit, level, period, metric):
    hit = counts[(counts["unit_id"] == unit) & (counts["level"] == level) & (counts["period"] == period)
                 & (counts["metric"] == metric)]
    return int(hit["value"].sum())


def test_report_periods():
    p = A.report_periods(2024, 2)
    assert p["month"] == (dt.date(2024, 2, 1), dt.date(2024, 2, 29))  # leap year
    assert p["ytd"] == (dt.date(2024, 1, 1), dt.date(2024, 2, 29))
    for bad in (0, 13, 2.5, True):
        with pytest.raises(ValueError, match="month"):
            A.report_periods(2025, bad)
    with pytest.raises(ValueError, match="year"):
        A.report_periods(25, 3)


def test_hand_made_counts(hand_made):
    counts, reasons = A.monthly_aggregates(hand_made, 2025, 3)
    g = lambda period, metric, unit="S01", level="unit": _get(counts, unit, level, period, metric)  # noqa: E731
    assert g("month", "total") == 4 and g("ytd", "total") == 6
    assert g("month", "received_new") == 3 and g("ytd", "received_new") == 5
    assert (g("month", "ch_direct"), g("month", "ch_online_l3"), g("month", "ch_online_l4"), g("month", "ch_postal")) == (1, 1, 1, 1)
    assert g("month", "field_justice") == 2 and g("month", "field_other") == 2
    assert (g("month", "resolved"), g("month", "on_time"), g("month", "late")) == (2, 1, 1)
    assert (g("ytd", "resolved"), g("ytd", "on_time"), g("ytd", "late")) == (4, 2, 2)
    assert (g("month", "resolved_online_l3"), g("month", "on_time_online_l3")) == (1, 1)
    # procedures offering online L3: P1, P2, P4; with an L3 dossier in March: P2 only
    assert (g("month", "offered_online_l3"), g("month", "active_online_l3")) == (3, 1)
    # L4 offered by P2; d5 (L4, P2) received 31 March
    assert (g("month", "offered_online_l4"), g("month", "active_online_l4")) == (1, 1)
    # postal offered by P1, P3; d4 postal on P3 in March
    assert (g("month", "offered_postal"), g("month", "active_postal")) == (2, 1)
    assert (g("month", "fb_total"), g("month", "fb_behaviour"), g("month", "fb_regulation"), g("month", "fb_published")) == (2, 1, 1, 1)
    assert (g("ytd", "fb_total"), g("ytd", "fb_published")) == (3, 2)
    assert (g("month", "apologies"), g("ytd", "apologies")) == (1, 2)
    assert (g("month", "opinions"), g("month", "opinions_satisfied"), g("month", "opinions_paper")) == (2, 1, 1)
    # commune block of D01
    assert g("month", "total", "D01", "commune") == 2
    assert (g("month", "resolved", "D01", "commune"), g("month", "late", "D01", "commune")) == (2, 1)
    assert (g("month", "offered_online_l3", "D01", "commune"), g("month", "active_online_l3", "D01", "commune")) == (1, 1)
    assert g("month", "opinions", "D01", "commune") == 1
    r = reasons[(reasons["unit_id"] == "S01")]
    assert dict(zip(r.loc[r["period"] == "month", "reason"], r.loc[r["period"] == "month", "n"])) == {"Thiếu nhân lực": 1}
    assert dict(zip(r.loc[r["period"] == "ytd", "reason"], r.loc[r["period"] == "ytd", "n"])) == {
        "Thiếu nhân lực": 1, "Lỗi phần mềm": 1}


def test_unit_filter(hand_made):
    counts, reasons = A.monthly_aggregates(hand_made, 2025, 3, "D01")
    assert set(counts["unit_id"]) == {"D01"}
    assert set(reasons["unit_id"]) <= {"D01"}
    both, _ = A.monthly_aggregates(hand_made, 2025, 3, ["D01", "S01"])
    assert set(both["unit_id"]) == {"D01", "S01"}
    with pytest.raises(ValueError, match="empty"):
        A.monthly_aggregates(hand_made, 2025, 3, [])


def test_monthly_table_layout_and_values(hand_made):
    counts, reasons = A.monthly_aggregates(hand_made, 2025, 3)
    t = A.monthly_table(counts, reasons, 1, "S01")
    assert list(t.columns) == ["STT", "Nội dung", "Kết quả trong tháng báo cáo", "Kết quả từ đầu năm đến tháng báo cáo"]
    # STT column of Mẫu số 1 as printed in Phụ lục 3 (seed 003)
    assert t["STT"].tolist() == ["I", "1", "-", "-", "-", "-", "2", "3", "4", "5", "-", "-", "-", "-", "6", "-", "-",
                                 "II", "1", "2", "3", "III", "IV"]
    row = dict(zip(t["Nội dung"], t["Kết quả trong tháng báo cáo"]))
    assert row["Tổng số hồ sơ cần giải quyết"] == "4"
    assert row["Tỷ lệ TTHC cung cấp DVC TT mức độ 3 có phát sinh hồ sơ"] == "33,33 % (1/3)"
    assert row["Tỷ lệ hồ sơ DV BCCI giải quyết đúng hạn"] == "–"  # nothing resolved by post in March
    assert row["Lý do quá hạn"] == "Thiếu nhân lực (1)"
    ytd = dict(zip(t["Nội dung"], t["Kết quả từ đầu năm đến tháng báo cáo"]))
    assert ytd["Tổng số hồ sơ cần giải quyết"] == "6"
    late = t.loc[t["Nội dung"] == "Tỷ lệ hồ sơ giải quyết quá hạn", "Kết quả từ đầu năm đến tháng báo cáo"].iloc[0]
    assert late == "50,00 % (2/4)"
    en = A.monthly_table(counts, reasons, 1, "S01", lang="en")
    assert en.columns[2] == "Result in the reporting month" and "50.00 % (2/4)" in en.iloc[:, 3].tolist()


def test_form2_has_district_and_commune_blocks(hand_made):
    rows = A.monthly_template(2)
    stt = [r.stt for r in rows]
    assert stt[0] == "A" and stt.count("B") == 1
    b = stt.index("B")
    assert all(r.level == "unit" for r in rows[:b]) and all(r.level == "commune" for r in rows[b + 1:])
    texts = [r.text_vi for r in rows]
    # wording differences between blocks A and B, exactly as in the seed
    assert "Lĩnh vực tài nguyên và môi trường" in texts[:b] and "Lĩnh vực đất đai" in texts[b:]
    assert "Tổng số hồ sơ cần giải quyết:" in texts[b:]
    assert texts.count("Lĩnh vực tư pháp") == 2
    counts, reasons = A.monthly_aggregates(hand_made, 2025, 3)
    t = A.monthly_table(counts, reasons, 2, "D01")
    assert len(t) == len(rows)
    block_b = t.iloc[b:]
    assert block_b.loc[block_b["Nội dung"] == "Tổng số hồ sơ cần giải quyết:", "Kết quả trong tháng báo cáo"].iloc[0] == "2"
    assert block_b.loc[block_b["Nội dung"] == "Lĩnh vực đất đai", "Kết quả trong tháng báo cáo"].iloc[0] == "1"
    with pytest.raises(ValueError, match="form"):
        A.monthly_template(3)


def test_form_for_unit_type():
    assert A.form_for_unit_type("department") == "form1" == A.monthly_form(1)
    assert A.form_for_unit_type("district") == "form2" == A.monthly_form(2)
    # communes and wards of the two-tier government report themselves; a legacy district's commune is its block B
    assert A.form_for_unit_type("commune", "province") == A.form_for_unit_type("ward") == "form2_commune"
    with pytest.raises(ValueError, match="commune.*under a district"):
        A.form_for_unit_type("commune", "district")
    with pytest.raises(ValueError, match="province"):
        A.form_for_unit_type("province")
    with pytest.raises(ValueError, match="form"):
        A.monthly_form(3)


def test_monthly_form_of_follows_the_registry_not_the_ids():
    from sipas_lib.units import load_units, units_on

    registry = load_units()
    before, after = units_on(registry, "2024-10-01"), units_on(registry, "2025-10-01")
    district = before.loc[before["unit_type"] == "district"].iloc[0]
    before = pd.concat([before, pd.DataFrame({  # a legacy district's communes (dossier records only, no code)
        "unit_id": ["D01C01", "D01C02"], "code": [pd.NA] * 2, "name_vi": ["Phường 1", "Xã 2"],
        "name_en": ["Ward 1", "Commune 2"], "unit_type": ["commune"] * 2, "parent_id": [district["unit_id"]] * 2})],
        ignore_index=True)
    form = pd.concat([A.monthly_form_of(before), A.monthly_form_of(after)])
    types = pd.concat([before, after]).set_index("unit_id")["unit_type"]
    assert set(form[types == "department"]) == {"form1"} and set(form[types == "district"]) == {"form2"}
    # after the reform every commune and ward reports on the commune Mẫu số 2; before it, none has a form of its own
    assert set(A.monthly_form_of(after)[after["unit_type"].isin(["commune", "ward"]).to_numpy()]) == {"form2_commune"}
    legacy_communes = before.loc[before["unit_type"] == "commune", "unit_id"]
    assert len(legacy_communes) and A.monthly_form_of(before)[legacy_communes].isna().all()
    assert A.monthly_form_of(after)[after.loc[after["unit_type"] == "province", "unit_id"]].isna().all()
    # an id that looks like another kind of unit changes nothing: the type and the parent decide
    ward = after.loc[after["unit_type"] == "ward"].iloc[[0]].assign(unit_id="S01")
    dept = after.loc[after["unit_type"] == "department"].iloc[[0]].assign(unit_id="X99")
    odd = pd.concat([after.loc[after["unit_type"] == "province"], ward, dept], ignore_index=True)
    assert A.monthly_form_of(odd)[["S01", "X99"]].tolist() == ["form2_commune", "form1"]
    grouped = A.units_by_monthly_form(odd, ["X99", "S01", "nobody"])
    assert grouped == {"form1": ["X99"], "form2_commune": ["S01"]}


def test_commune_form2_has_the_templates_commune_rows_and_states_its_changes():
    rows, printed = A.monthly_template("form2_commune"), A.monthly_template(2)
    b = [r.stt for r in printed].index("B")
    key = [(r.stt, r.text_vi, r.text_en, r.kind, r.metric, r.denominator) for r in rows[1:]]
    # the same rows, numbering and wording as the template gives the communes (block B of Mẫu số 2) ...
    assert key == [(r.stt, r.text_vi, r.text_en, r.kind, r.metric, r.denominator) for r in printed[b + 1:]]
    # ... counted at the commune's own one-stop shop, under one header naming UBND xã/phường
    assert all(r.level == "unit" for r in rows)
    assert (rows[0].stt, rows[0].text_vi, rows[0].adapted_from) == (
        "A", "TẠI UBND XÃ/PHƯỜNG", "TẠI UBND QUẬN/HUYỆN/THỊ XÃ")
    assert [r for r in rows if r.adapted_from] == [rows[0]] and "B" not in [r.stt for r in rows]
    for lang in ("vi", "en"):
        notes = A.monthly_adaptations("form2_commune", lang)
        assert len(notes) == 4  # the title, row A, the rows' wording, block B left out
        assert A.label("form2_commune", lang) in notes[0] and A.label("form2", lang) in notes[0]
        assert "TẠI UBND XÃ/PHƯỜNG" in notes[1] and "TẠI UBND QUẬN/HUYỆN/THỊ XÃ" in notes[1]
        assert "TẠI UBND CÁC XÃ/PHƯỜNG/THỊ TRẤN" in notes[3]
    assert A.monthly_adaptations(1) == A.monthly_adaptations(2) == []


def test_commune_form2_values_equal_block_b_of_the_same_records(hand_made, tmp_path):
    """D01's two commune dossiers, recorded after the reform by a commune X01 at its own one-stop shop:
    the commune Mẫu số 2 of X01 shows exactly what block B of D01's Mẫu số 2 showed."""
    dossiers, opinions = (pd.read_parquet(hand_made / f"{name}.parquet") for name in ("dossiers", "opinions"))
    procedures = pd.read_csv(hand_made / "procedures.csv")
    moved = {"unit_id": "X01", "level": "unit", "commune_id": None}
    two_tier = _write(tmp_path / "two_tier", dossiers.loc[dossiers["unit_id"] == "D01"].assign(**moved),
                      procedures.loc[procedures["unit_id"] == "D01"].assign(unit_id="X01", level="unit"),
                      opinions=opinions.loc[opinions["unit_id"] == "D01"].assign(**moved))
    counts, reasons = A.monthly_aggregates(two_tier, 2025, 3)
    commune = A.monthly_table(counts, reasons, "form2_commune", "X01")
    old_counts, old_reasons = A.monthly_aggregates(hand_made, 2025, 3)
    district = A.monthly_table(old_counts, old_reasons, 2, "D01")
    b = district.index[district["STT"] == "B"][0]
    pd.testing.assert_frame_equal(commune.iloc[1:].reset_index(drop=True),
                                  district.iloc[b + 1:].reset_index(drop=True))
    month = dict(zip(commune["Nội dung"], commune["Kết quả trong tháng báo cáo"]))
    assert month["Tổng số hồ sơ cần giải quyết:"] == "2" and month["Lĩnh vực đất đai"] == "1"  # by hand: c1, c2
    assert month["Tỷ lệ giải quyết hồ sơ quá hạn"] == "50,00 % (1/2)" and month["Lý do quá hạn"] == "Hồ sơ phức tạp (1)"
    html = A.monthly_html(counts, reasons, "form2_commune", ["X01"], title="<X01>")
    assert "&lt;X01&gt;" in html and "Mẫu số 2 – Các xã, phường" in html and html.count("<li>") == 4
    assert A.monthly_html(counts, reasons, "form2_commune", ["X01"], with_adaptations=False).count("<li>") == 0


def _random_year(folder, n=4000, seed=3):
    rng = np.random.default_rng(seed)
    units = np.array(["S01", "S02", "D01"])
    u = rng.choice(units, n)
    level = np.where((u == "D01") & (rng.random(n) < 0.5), "commune", "unit")
    rec = D("2025-01-01") + pd.to_timedelta(rng.integers(-20, 365, n), unit="D")
    due = rec + pd.to_timedelta(rng.integers(1, 15, n), unit="D")
    res = np.maximum(due + pd.to_timedelta(rng.integers(-6, 4, n), unit="D"), rec)  # never before reception
    pending = rng.random(n) < 0.05
    res = pd.Series(res).where(~pending)
    late = (res > due) & ~pending
    df = pd.DataFrame({
        "dossier_id": [f"x{i}" for i in range(n)], "unit_id": u, "level": level,
        "commune_id": np.where(level == "commune", "D01C01", None),
        "field": rng.choice(list(A.FIELDS), n), "channel": rng.choice(list(A.CHANNELS), n),
        "procedure_id": [f"{a}{b}{c}" for a, b, c in zip(u, level, rng.integers(0, 12, n))],
        "received_on": rec, "due_on": due, "resolved_on": res,
        "status": np.where(pending, "pending", np.where(late, "overdue", "on_time")),
        "overdue_reason": np.where(late, rng.choice(["r1", "r2"], n), None)})
    procs = pd.DataFrame([(f"{a}{b}{c}", a, b, "other", bool(rng.random() < .6), bool(rng.random() < .4),
                           bool(rng.random() < .5)) for a in units for b in ("unit", "commune") for c in range(12)],
                         columns=list(A.PROCEDURE_COLUMNS))
    return _write(folder, df, procs), df, procs


def test_duckdb_agrees_with_pandas_reference(tmp_path):
    """Independent pandas implementation of the definitions (module docstring) on a random year."""
    folder, df, procs = _random_year(tmp_path / "rand")
    counts, reasons = A.monthly_aggregates(folder, 2025, 7)
    m0, y0, end = D("2025-07-01"), D("2025-01-01"), D("2025-07-31")
    for period, start in (("month", m0), ("ytd", y0)):
        todo = (df["received_on"] <= end) & (df["resolved_on"].isna() | (df["resolved_on"] >= start))
        resolved = df["resolved_on"].between(start, end)
        on_time = resolved & (df["resolved_on"] <= df["due_on"])
        new = todo & (df["received_on"] >= start)
        ref = pd.DataFrame({"unit_id": df["unit_id"], "level": df["level"], "total": todo, "resolved": resolved,
                            "on_time": on_time, "received_new": new,
                            "ch_postal": todo & (df["channel"] == "postal"),
                            "field_justice": todo & (df["field"] == "justice")}).groupby(["unit_id", "level"]).sum()
        for (unit, level), row in ref.iterrows():
            for metric in ("total", "resolved", "on_time", "received_new", "ch_postal", "field_justice"):
                assert _get(counts, unit, level, period, metric) == int(row[metric]), (unit, level, period, metric)
        arrived = df[df["received_on"].between(start, end) & (df["channel"] == "online_l3")]
        active = set(arrived["procedure_id"])
        for (unit, level), p in procs.groupby(["unit_id", "level"]):
            offered = p[p["offers_online_l3"]]
            assert _get(counts, unit, level, period, "offered_online_l3") == len(offered)
            assert _get(counts, unit, level, period, "active_online_l3") == int(offered["procedure_id"].isin(active).sum())
        late = df[resolved & (df["resolved_on"] > df["due_on"])]
        want = late.groupby(["unit_id", "level", "overdue_reason"]).size()
        got = reasons[reasons["period"] == period].set_index(["unit_id", "level", "reason"])["n"]
        assert want.sort_index().tolist() == got.sort_index().tolist()


def test_one_unit_sums_equal_the_selection_of_its_rows(tmp_path):
    # a national report asks for ~3,900 units one by one: they are cut from sums grouped once
    # (issue 16); each must equal the selection of the unit's rows in the whole tables
    folder, df, _ = _random_year(tmp_path / "rand")
    counts, reasons = A.monthly_aggregates(folder, 2025, 7)
    assert len(reasons) and counts["unit_id"].nunique() > 2
    for form in ("form1", "form2"):
        for unit in sorted(set(counts["unit_id"])) + ["NO_SUCH_UNIT"]:
            one = A.monthly_values(counts, reasons, form, unit)
            # the same unit twice is a selection of several ids: grouped from the unit's rows
            rows = A.monthly_values(counts, reasons, form, [unit, unit])
            assert [r for r, _ in one] == [r for r, _ in rows]
            for (_, got), (_, want) in zip(one, rows):
                for g, w in zip(got, want):
                    if isinstance(w, pd.DataFrame):
                        pd.testing.assert_frame_equal(g, w)
                    else:
                        assert g == w, (form, unit)
    # other tables (or the same tables grown) are grouped again, never served from the last ones
    first = A.monthly_values(counts, reasons, "form1", counts["unit_id"].iloc[0])
    doubled = pd.concat([counts, counts], ignore_index=True)
    again = A.monthly_values(doubled, reasons, "form1", counts["unit_id"].iloc[0])
    assert [v for _, v in again if isinstance(v[0], int)] == [[2 * a, 2 * b] for _, (a, b) in
                                                              ((r, v) for r, v in first if isinstance(v[0], int))]


def test_missing_file_and_column_are_named(hand_made, tmp_path):
    (hand_made / "opinions.parquet").unlink()
    with pytest.raises(FileNotFoundError, match="opinions.parquet"):
        A.monthly_aggregates(hand_made, 2025, 3)
    folder, df, procs = _random_year(tmp_path / "bad", n=50)
    df.drop(columns=["due_on"]).to_parquet(folder / "dossiers.parquet")
    with pytest.raises(ValueError, match=r"dossiers.parquet: missing column\(s\) due_on"):
        A.monthly_aggregates(folder, 2025, 3)


def test_monthly_overview_and_latest_month(hand_made):
    counts, _ = A.monthly_aggregates(hand_made, 2025, 3)
    ov = A.monthly_overview(counts, "unit", "month").set_index("unit_id")
    assert ov.loc["S01", "total"] == 4 and ov.loc["S01", "on_time_rate"] == pytest.approx(0.5)
    assert ov.loc["S01", "late_rate"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="period"):
        A.monthly_overview(counts, "unit", "week")
    assert A.latest_month(hand_made, 2025) == 4
    assert A.latest_month(hand_made, 2030) == 12


# ----------------------------------------------------------------------------------------------
# Phụ lục 4
# ----------------------------------------------------------------------------------------------

def _phuluc4_tables(responses, year=2025, quarantined=2, issued=12):
    """The stage-80 tables of a small set of accepted responses (hand-made intake counts)."""
    from sipas_lib.stages.annual_survey_report import fieldwork_period

    accepted = len(responses)
    by_field = responses["field"].value_counts()
    summary = pd.DataFrame([{
        "year": year, "received": accepted + quarantined, "accepted": accepted, "quarantined": quarantined,
        "issued": issued, "returned": accepted, "return_rate": accepted / issued,
        **fieldwork_period(responses["survey_date"], year),
        "top_field": by_field.index[0], "top_field_n": int(by_field.iloc[0])}])
    forms = responses.groupby(["field", "channel"]).size().rename("n").reset_index().rename(
        columns={"channel": "survey_mode"})
    units = responses.groupby("unit_type").agg(n_units=("unit_id", "nunique"), n_forms=("unit_id", "size")).reset_index()
    return summary, forms, units


@pytest.fixture()
def responses():
    return pd.DataFrame({
        "unit_id": ["S01", "S01", "S02", "D01", "D01", "D02", "D02", "D02"],
        "unit_type": ["department"] * 3 + ["district"] * 5,
        "field": ["justice", "justice", "other", "land_environment", "justice", "other", "justice", "other"],
        "channel": ["postal", "postal", "one_stop", "postal", "one_stop", "postal", "postal", "one_stop"],
        "survey_date": pd.to_datetime(["2025-10-03", "2025-10-20", "2025-11-02", "2025-11-30", "2025-10-15",
                                       "2025-10-07", "2025-11-11", "2025-10-09"]),
    })


def test_annual_survey_rows(responses):
    t = A.annual_survey_rows(*_phuluc4_tables(responses))
    assert list(t.columns) == ["STT", "Nội dung", "Kết quả thực hiện"]
    assert t["STT"].tolist() == [f"{i}." for i in range(1, 11)]
    # row texts exactly as in Phụ lục 4 (seed 003)
    assert t["Nội dung"].iloc[5] == "Lĩnh vực/TTHC có số phiếu khảo sát nhiều nhất"
    assert t["Nội dung"].iloc[9] == "Tổng số phiếu khảo sát tại các đơn vị trực thuộc"
    v = t["Kết quả thực hiện"].tolist()
    assert v[0].startswith("Có.")
    assert v[1] == "Từ 03/10/2025 đến 30/11/2025"
    assert v[2] == "qua Bưu điện: 5 phiếu; trực tiếp tại Bộ phận Một cửa: 3 phiếu"
    assert v[3] == "01 kỳ, 3 tháng (10/2025–11/2025)"
    assert v[5] == "Tư pháp: 4 phiếu (50,0 %)"
    assert v[6].startswith("10 phiếu thu về (hợp lệ: 8; bị loại: 2); tỷ lệ thu hồi 66,7 % (8/12")
    assert v[8] == "4 đơn vị (2 sở, ban, ngành; 2 quận, huyện, thị xã)"
    assert v[9] == "8 phiếu hợp lệ (3 tại các sở, ban, ngành; 5 tại các quận, huyện, thị xã)"
    en = A.annual_survey_rows(*_phuluc4_tables(responses), lang="en")
    assert en["Result"].iloc[6].startswith("10 questionnaires returned (8 accepted; 2 set aside)")


def test_annual_survey_rows_period_and_unit_types(responses):
    long = responses.assign(survey_date=pd.to_datetime(["2025-01-05"] * 4 + ["2025-05-20"] * 4))
    assert A.annual_survey_rows(*_phuluc4_tables(long))["Kết quả thực hiện"].iloc[3] == "01 kỳ, 6 tháng (01/2025–05/2025)"
    nodate = responses.assign(survey_date=pd.NaT)
    assert "Không có dữ liệu" in A.annual_survey_rows(*_phuluc4_tables(nodate))["Kết quả thực hiện"].iloc[1]
    # dates outside the survey year never stretch the period; they are counted and said
    stray = responses.assign(survey_date=pd.to_datetime(["1900-01-01", "2031-01-01"] + ["2025-10-03"] * 6))
    v = A.annual_survey_rows(*_phuluc4_tables(stray))["Kết quả thực hiện"]
    assert v.iloc[1] == "Từ 03/10/2025 đến 03/10/2025 (không tính 2 phiếu có ngày khảo sát ngoài năm 2025)"
    # unit types come from the unit_type column (registry), whatever the ids look like
    wards = responses.assign(unit_type=["ward"] * 3 + ["department"] * 5)
    assert A.annual_survey_rows(*_phuluc4_tables(wards))["Kết quả thực hiện"].iloc[8] == \
        "4 đơn vị (2 sở, ban, ngành; 2 phường)"


def test_admin_files_missing(hand_made):
    files = A.AdminFiles.in_folder(hand_made)
    assert files.missing() == []
    (hand_made / "apologies.parquet").unlink()
    assert files.missing() == ["apologies.parquet"]
