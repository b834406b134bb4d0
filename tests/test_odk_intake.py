"""ODK Central and KoboToolbox submission exports go through intake like any response file.

Round trip: the XLSForm of an instrument (sipas_lib.xlsform) is converted with pyxform; its
instance gives the export's columns (group paths as ODK Central writes them, ``E1-c01``, and as
KoboToolbox writes them, ``E1/c01``, with each tool's metadata columns); a few submissions are
written in each shape and intake must accept and quarantine exactly the expected records.

The committed files in tests/fixtures/odk/ were written by this module
(``python tests/test_odk_intake.py``) and are checked against the current form.
"""

from __future__ import annotations

import tempfile
import xml.etree.ElementTree as ET
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pyxform.xls2xform import convert

from sipas_lib import formids, intake, xlsform
from sipas_lib.instrument import load_instrument
from sipas_lib.units import load_units

FIXTURES = Path(__file__).parent / "fixtures" / "odk"
NS = {"xf": "http://www.w3.org/2002/xforms", "h": "http://www.w3.org/1999/xhtml"}
JR = "http://openrosa.org/javarosa"
SHAPES = ("odk_central_csv", "kobo_xlsx", "kobo_csv")
# Metadata each tool adds after the questions (ODK Central's CSV, KoboToolbox's export).
ODK_META = ["KEY", "SubmitterID", "SubmitterName", "AttachmentsPresent", "AttachmentsExpected", "Status",
            "ReviewState", "DeviceID", "Edits", "FormVersion"]
KOBO_META = ["_id", "_uuid", "_submission_time", "_validation_status", "_notes", "_status", "_submitted_by",
             "__version__", "_tags", "_index"]
SUBMITTER = "Nguyễn Văn Điều Tra"  # personal: must never reach the results
DEVICE = "collect:Xk3pQ9fE2mN7aB1c"


def _tag(elem) -> str:
    return elem.tag.rsplit("}", 1)[-1]


@lru_cache(maxsize=None)
def registry() -> pd.DataFrame:
    return load_units()


@lru_cache(maxsize=None)
def form_of(instrument_id: str) -> tuple[dict[str, pd.DataFrame], list[tuple[str, ...]]]:
    """The instrument's XLSForm sheets and the answered leaves of its XForm instance, in order."""
    instrument = load_instrument(instrument_id)
    units = registry()
    tmp = Path(tempfile.mkdtemp(prefix="xlsform-"))
    path = xlsform.write_xlsform(instrument, units, tmp / f"{instrument_id}.xlsx")
    root = ET.fromstring(convert(xlsform=str(path), validate=False).xform)
    readonly = {b.get("nodeset") for b in root.iter(f"{{{NS['xf']}}}bind")
                if b.get("readonly") == "true()" and b.get(f"{{{JR}}}preload") is None}  # notes, not meta/instanceID
    data = root.find("h:head/xf:model/xf:instance", NS)[0]
    leaves = []

    def walk(elem, path):
        for child in elem:
            here = (*path, _tag(child))
            if len(child):
                walk(child, here)
            elif "/data/" + "/".join(here) not in readonly:  # notes hold no answer
                leaves.append(here)

    walk(data, ())
    return xlsform.xlsform_sheets(instrument, units), leaves


def submissions(instrument_id: str, sheets: dict[str, pd.DataFrame], seed: int = 7) -> tuple[list[dict], dict]:
    """Six submissions (question name -> value as the tool exports it) and what intake must do with them.

    1-3 are valid (1 gave feedback, 2 did not; 3 has a 10-digit id), 4 has a mistyped form id, 5 an answer outside the
    scale (an edit on the server bypasses the device's constraint), 6 is 1 submitted twice.
    """
    rng = np.random.default_rng(seed)
    instrument = load_instrument(instrument_id)
    codes = registry().set_index("unit_id")["code"]
    offered = sheets["choices"].loc[sheets["choices"]["list_name"] == "units", "name"]
    chosen = [u for u in offered if 10 <= int(codes[u]) <= 99][:3]
    feedback = instrument.items.loc[instrument.items["condition"] == "gave_feedback", "code"].tolist()
    records = []
    for k in range(5):
        unit = chosen[k % len(chosen)]
        legacy = k != 2  # one current 10-digit id (Damm), the others legacy 6-digit ones (Luhn)
        rec = {"form_id": str(formids.make_form_ids([int(codes[unit])], [k + 1], legacy=legacy)[0]),
               "unit_id": unit, "channel": ["one_stop", "online", "postal"][k % 3],
               "field": ["justice", "land_environment", "other"][k % 3], "survey_date": f"2025-03-{10 + k:02d}"}
        gave = k != 1
        rec["gave_feedback"] = "yes" if gave else "no"
        for cond in ("registered_resident", "made_complaint"):
            rec[cond] = "yes" if k % 2 == 0 else "no"
        for item in instrument.items.itertuples():
            shown = (item.code not in feedback or gave)
            if item.condition == "made_complaint":
                shown = rec["made_complaint"] == "yes" and rec["registered_resident"] == "yes"
            elif item.block == "local_governance":
                shown = rec["registered_resident"] == "yes"
            rec[item.code] = str(int(rng.integers(1, 6))) if shown else ""
        for d in instrument.demographics.itertuples():
            rec[d.code] = str(int(rng.choice(instrument.demographic_values(d.code))))
            if isinstance(d.other_column, str):
                rec[d.other_column] = "Tự học" if rec[d.code] == str(int(d.other_code)) else ""
        records.append(rec)
    records[3]["form_id"] = records[3]["form_id"][:-1] + str((int(records[3]["form_id"][-1]) + 1) % 10)
    records[4][instrument.item_codes[2]] = "6"
    records.append(dict(records[0]))
    expected = {"accepted": [r["form_id"] for r in records[:3]], "gave_feedback": [True, False, True],
                "quarantine": {records[3]["form_id"]: "form_id_check_digit", records[4]["form_id"]: "item_value",
                               records[5]["form_id"]: "duplicate_exact"}}
    return records, expected


def write_export(shape: str, records: list[dict], leaves: list[tuple[str, ...]], version: str, path: Path,
                 review: list[str] | None = None) -> Path:
    """Write submissions as ODK Central (CSV, ``-`` group separator) or KoboToolbox (``/``) exports.

    ``review``: each submission's review state as the tool exports it (ODK Central ``ReviewState``,
    KoboToolbox ``_validation_status``); default approved (ODK) and not reviewed (Kobo).
    """
    rows = []
    for k, rec in enumerate(records):
        state = review[k] if review is not None else ("approved" if shape == "odk_central_csv" else "")
        meta = {("meta", "instanceID"): "uuid:%08d-0000-4000-8000-%012d" % (k, k),
                ("meta", "instanceName"): f"{rec['unit_id']}-{rec['form_id']}"}
        answers = {leaf: meta.get(leaf, rec.get(leaf[-1], "")) for leaf in leaves}
        if shape == "odk_central_csv":
            row = {"SubmissionDate": f"2025-03-{10 + k % 5:02d}T08:1{k}:33.123Z",
                   **{"-".join(leaf): v for leaf, v in answers.items()},
                   **dict(zip(ODK_META, [answers[("meta", "instanceID")], "5", SUBMITTER, "0", "0", "",
                                         state, DEVICE, "0", version]))}
        else:
            row = {**{"/".join(leaf): v for leaf, v in answers.items()},
                   **dict(zip(KOBO_META, [str(1000 + k), answers[("meta", "instanceID")][5:],
                                          f"2025-03-{10 + k % 5:02d}T08:1{k}:33", state, "", "submitted_via_web",
                                          SUBMITTER, version, "", str(k + 1)]))}
        rows.append(row)
    table = pd.DataFrame(rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    if shape == "odk_central_csv":
        table.to_csv(path, index=False, encoding="utf-8")
    elif shape == "kobo_csv":
        table.to_csv(path, index=False, sep=";", encoding="utf-8")  # KoboToolbox's CSV default separator
    else:
        # KoboToolbox's XLSX: the form title as sheet name, answers that look numeric stored as numbers
        typed = table.apply(lambda s: s.map(lambda v: int(v) if isinstance(v, str) and v.isdigit()
                                            and len(v) < 6 else v))
        with pd.ExcelWriter(path, engine="openpyxl") as writer:
            typed.replace("", None).to_excel(writer, sheet_name="Phiếu khảo sát", index=False)
    return path


SUFFIX = {"odk_central_csv": ".csv", "kobo_csv": ".csv", "kobo_xlsx": ".xlsx"}


def _check(result: intake.IntakeResult, records: list[dict], expected: dict, instrument_id: str) -> None:
    accepted, quarantine = result.accepted, result.quarantine
    assert sorted(accepted["form_id"].astype(str)) == sorted(expected["accepted"])
    got = dict(zip(quarantine["form_id"].astype(str), quarantine["rule"]))
    assert got == expected["quarantine"]
    rows = accepted.set_index(accepted["form_id"].astype(str))
    instrument = load_instrument(instrument_id)
    for rec in records[:3]:
        row = rows.loc[rec["form_id"]]
        for code in instrument.item_codes:
            want = float(rec[code]) if rec[code] else np.nan
            assert (np.isnan(want) and pd.isna(row[code])) or float(row[code]) == want, (rec["form_id"], code)
        assert row["unit_id"] == rec["unit_id"] and row["channel"] == rec["channel"]
        assert pd.Timestamp(row["survey_date"]) == pd.Timestamp(rec["survey_date"])
    gave = [bool(rows.loc[f, "gave_feedback"]) for f in expected["accepted"]]
    assert gave == expected["gave_feedback"]  # section V answered only when the screening said yes
    # metadata and the submitter never reach the results
    for table in (accepted, quarantine):
        assert not [c for c in table.columns if c.startswith(("_", "meta")) or c in ODK_META or c == "SubmissionDate"]
        text = [str(v) for v in table.to_numpy(dtype=object).ravel()]
        assert SUBMITTER not in text and DEVICE not in text
        assert not any(v.startswith("uuid:") for v in text)
    assert (result.summary["received"] == result.summary["accepted"] + result.summary["quarantined"]).all()


@pytest.fixture(scope="module")
def round_trip(tmp_path_factory):
    """``round_trip(shape, instrument_id)``: the instrument's submissions (:func:`submissions`) exported in ``shape``
    and taken in by intake, once per file: ``(path, records, expected, result)``. Tests only read them."""
    folder, done = tmp_path_factory.mktemp("exports"), {}

    def run(shape: str, instrument_id: str):
        if (shape, instrument_id) not in done:
            sheets, leaves = form_of(instrument_id)
            records, expected = submissions(instrument_id, sheets)
            path = write_export(shape, records, leaves, sheets["settings"]["version"].iloc[0],
                                folder / f"{instrument_id}_{shape}{SUFFIX[shape]}")
            done[shape, instrument_id] = path, records, expected, intake.intake_files({path: instrument_id}, registry())
        return done[shape, instrument_id]
    return run


@pytest.mark.slow
@pytest.mark.parametrize("instrument_id", ["hanoi_pl5_district", "hanoi_pl5_department"])
@pytest.mark.parametrize("shape", SHAPES)
def test_round_trip_form_to_accepted_responses(round_trip, shape, instrument_id):
    path, records, expected, result = round_trip(shape, instrument_id)
    table = intake.read_table(path)
    instrument = load_instrument(instrument_id)
    # every question intake knows arrives under its own name, whatever the group prefix
    for name in ["form_id", "unit_id", "channel", "field", "survey_date", *instrument.item_codes,
                 *instrument.demographics["code"]]:
        assert name in table.columns, (name, list(table.columns)[:12])
    _check(result, records, expected, instrument_id)


@pytest.mark.slow
def test_exports_in_both_shapes_give_the_same_responses(round_trip):
    results = [round_trip(shape, "hanoi_pl5_district")[3].accepted for shape in SHAPES]
    drop = ["source_file", "source_row"]
    for other in results[1:]:
        pd.testing.assert_frame_equal(results[0].drop(columns=drop), other.drop(columns=drop))


@pytest.mark.parametrize("name, shape", [("district_odk_central.csv", "odk_central_csv"),
                                         ("district_kobo.xlsx", "kobo_xlsx")])
def test_committed_fixtures(name, shape):
    """The committed exports still fit the current form, and intake reads them as expected."""
    sheets, leaves = form_of("hanoi_pl5_district")
    records, expected = submissions("hanoi_pl5_district", sheets)
    path = FIXTURES / name
    header = (pd.read_csv(path, nrows=0) if path.suffix == ".csv" else pd.read_excel(path, nrows=0)).columns
    sep = "-" if shape == "odk_central_csv" else "/"
    meta = {"SubmissionDate", *ODK_META, *KOBO_META}
    assert [h for h in header if h not in meta] == [sep.join(leaf) for leaf in leaves], \
        "the form changed: rewrite the fixtures with `python tests/test_odk_intake.py`"
    _check(intake.intake_files({path: "hanoi_pl5_district"}, registry()), records, expected, "hanoi_pl5_district")


# --------------------------------------------------------------------------------------------
# The reviewers' decision: ODK Central ReviewState, KoboToolbox _validation_status
# --------------------------------------------------------------------------------------------

#: Per submission, the review state in each shape: ODK Central's values, Kobo's uids (CSV) and labels (XLSX).
REVIEW = {
    "odk_central_csv": ["approved", "", "hasIssues", "", "rejected", "edited", "rejected", "needs_check"],
    "kobo_csv": ["validation_status_approved", "", "validation_status_on_hold", "", "validation_status_not_approved",
                 "", "validation_status_not_approved", "needs_check"],
    "kobo_xlsx": ["Approved", "", "On Hold", "", "Not Approved", "Approved", "Not Approved", "needs_check"],
}


def reviewed_submissions(instrument_id: str, sheets) -> tuple[list[dict], list[tuple[int, str | None]]]:
    """The six submissions of :func:`submissions` and two more, with what intake must do with each.

    0-2 valid (2 flagged: accepted, noted); 3 mistyped form id; 4 answer outside the scale *and*
    rejected (the reviewers' decision is the reason given); 5 an exact copy of 0; 6 a re-submission
    of 1 with a different answer, rejected (1 stays accepted: a rejected copy is no conflict);
    7 a fresh valid form with a review state neither tool writes.
    """
    records, _ = submissions(instrument_id, sheets)
    instrument = load_instrument(instrument_id)
    resubmitted = dict(records[1])
    item = instrument.item_codes[0]
    resubmitted[item] = str(int(resubmitted[item]) % 5 + 1)
    fresh = dict(records[0])
    code = int(registry().set_index("unit_id").loc[fresh["unit_id"], "code"])
    fresh["form_id"] = str(formids.make_form_ids([code], [50], legacy=True)[0])
    records += [resubmitted, fresh]
    outcome = [None, None, None, "form_id_check_digit", "review_rejected", "duplicate_exact", "review_rejected",
               "review_state_value"]
    return records, list(enumerate(outcome))


@pytest.mark.parametrize("shape", SHAPES)
def test_rejected_submissions_are_quarantined_and_flagged_ones_noted(shape, tmp_path):
    sheets, leaves = form_of("hanoi_pl5_district")
    records, outcome = reviewed_submissions("hanoi_pl5_district", sheets)
    path = write_export(shape, records, leaves, sheets["settings"]["version"].iloc[0],
                        tmp_path / f"{shape}{SUFFIX[shape]}", review=REVIEW[shape])
    result = intake.intake_files({path: "hanoi_pl5_district"}, registry())
    row_of = {k: k + 2 for k in range(len(records))}  # header in row 1 (CSV and the Kobo sheet)
    got = dict(zip(result.quarantine["source_row"], result.quarantine["rule"]))
    assert got == {row_of[k]: rule for k, rule in outcome if rule}
    assert sorted(result.accepted["source_row"]) == [row_of[k] for k, rule in outcome if rule is None]
    # the same form id as an accepted one: the rejected re-submission is not a duplicate of it
    assert records[6]["form_id"] == records[1]["form_id"]
    assert (result.accepted["form_id"] == records[1]["form_id"]).sum() == 1
    # counts add up
    summary = result.summary
    assert (summary["received"] == summary["accepted"] + summary["quarantined"]).all()
    assert summary["received"].sum() == len(records) == len(result.accepted) + len(result.quarantine)
    # reasons: the decision, the tool's word quoted; an unknown state described, not echoed
    q = result.quarantine.set_index("source_row")
    assert q.loc[row_of[4], "column"] == "review_state"
    assert REVIEW[shape][4] in q.loc[row_of[4], "reason"] and "rejected by the reviewers" in q.loc[row_of[4], "reason"]
    assert "needs_check" not in q.loc[row_of[7], "reason"] and "not known" in q.loc[row_of[7], "reason"]
    assert q["reason_vi"].notna().all()
    # the flagged submission is accepted and named in a note, with the counts
    note = next(n for n in result.notes if "review states" in n)
    assert "2 submission(s) rejected" in note and "1 flagged" in note and f"rows {row_of[2]}" in note
    # the quarantine reasons describe the rules in both languages
    counts = intake.quarantine_counts(result.quarantine)
    assert set(counts.loc[counts["rule"] == "review_rejected", "n"]) == {2}
    assert counts["description_vi"].notna().all()


def test_a_review_column_with_no_review_state_is_a_file_error(tmp_path):
    sheets, leaves = form_of("hanoi_pl5_district")
    records, _ = submissions("hanoi_pl5_district", sheets)
    path = write_export("kobo_csv", records, leaves, sheets["settings"]["version"].iloc[0], tmp_path / "kobo.csv",
                        review=["Đã duyệt"] * len(records))  # a translated label: no row can be decided
    with pytest.raises(intake.IntakeError, match=r"kobo\.csv: row 2, column '_validation_status' \(review_state\).*"
                                                 r"review state"):
        intake.intake_files({path: "hanoi_pl5_district"}, registry())


def test_review_states_cover_both_tools():
    """Every state ODK Central and KoboToolbox export has a decision; only 'rejected' ones quarantine."""
    odk = {"received": "accepted", "hasIssues": "flagged", "edited": "accepted", "approved": "accepted",
           "rejected": "rejected"}
    kobo = {"validation_status_approved": "accepted", "validation_status_not_approved": "rejected",
            "validation_status_on_hold": "flagged", "Approved": "accepted", "Not Approved": "rejected",
            "On Hold": "flagged"}
    keys = {intake.normalize_label(k): v for k, v in intake.REVIEW_STATES.items()}
    for state, decision in {**odk, **kobo}.items():
        assert keys[intake.normalize_label(state)] == decision, state
    assert list(intake.RULES)[:2] == list(intake.REVIEW_RULES)  # the reviewers' decision comes first


if __name__ == "__main__":  # rewrite tests/fixtures/odk/ from the current district form
    sheets, leaves = form_of("hanoi_pl5_district")
    records, _ = submissions("hanoi_pl5_district", sheets)
    version = sheets["settings"]["version"].iloc[0]
    write_export("odk_central_csv", records, leaves, version, FIXTURES / "district_odk_central.csv")
    write_export("kobo_xlsx", records, leaves, version, FIXTURES / "district_kobo.xlsx")
