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


def write_export(shape: str, records: list[dict], leaves: list[tuple[str, ...]], version: str, path: Path) -> Path:
    """Write submissions as ODK Central (CSV, ``-`` group separator) or KoboToolbox (``/``) exports."""
    rows = []
    for k, rec in enumerate(records):
        meta = {("meta", "instanceID"): "uuid:%08d-0000-4000-8000-%012d" % (k, k),
                ("meta", "instanceName"): f"{rec['unit_id']}-{rec['form_id']}"}
        answers = {leaf: meta.get(leaf, rec.get(leaf[-1], "")) for leaf in leaves}
        if shape == "odk_central_csv":
            row = {"SubmissionDate": f"2025-03-{10 + k % 5:02d}T08:1{k}:33.123Z",
                   **{"-".join(leaf): v for leaf, v in answers.items()},
                   **dict(zip(ODK_META, [answers[("meta", "instanceID")], "5", SUBMITTER, "0", "0", "",
                                         "approved", DEVICE, "0", version]))}
        else:
            row = {**{"/".join(leaf): v for leaf, v in answers.items()},
                   **dict(zip(KOBO_META, [str(1000 + k), answers[("meta", "instanceID")][5:],
                                          f"2025-03-{10 + k % 5:02d}T08:1{k}:33", "", "", "submitted_via_web",
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


@pytest.mark.slow
@pytest.mark.parametrize("instrument_id", ["hanoi_pl5_district", "hanoi_pl5_department"])
@pytest.mark.parametrize("shape", SHAPES)
def test_round_trip_form_to_accepted_responses(shape, instrument_id, tmp_path):
    sheets, leaves = form_of(instrument_id)
    records, expected = submissions(instrument_id, sheets)
    path = write_export(shape, records, leaves, sheets["settings"]["version"].iloc[0],
                        tmp_path / f"{shape}{SUFFIX[shape]}")
    table = intake.read_table(path)
    instrument = load_instrument(instrument_id)
    # every question intake knows arrives under its own name, whatever the group prefix
    for name in ["form_id", "unit_id", "channel", "field", "survey_date", *instrument.item_codes,
                 *instrument.demographics["code"]]:
        assert name in table.columns, (name, list(table.columns)[:12])
    result = intake.intake_files({path: instrument_id}, registry())
    _check(result, records, expected, instrument_id)


@pytest.mark.slow
def test_exports_in_both_shapes_give_the_same_responses(tmp_path):
    sheets, leaves = form_of("hanoi_pl5_district")
    records, _ = submissions("hanoi_pl5_district", sheets)
    version = sheets["settings"]["version"].iloc[0]
    results = [intake.intake_files({write_export(s, records, leaves, version, tmp_path / f"{s}{SUFFIX[s]}"):
                                    "hanoi_pl5_district"}, registry()).accepted for s in SHAPES]
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


if __name__ == "__main__":  # rewrite tests/fixtures/odk/ from the current district form
    sheets, leaves = form_of("hanoi_pl5_district")
    records, _ = submissions("hanoi_pl5_district", sheets)
    version = sheets["settings"]["version"].iloc[0]
    write_export("odk_central_csv", records, leaves, version, FIXTURES / "district_odk_central.csv")
    write_export("kobo_xlsx", records, leaves, version, FIXTURES / "district_kobo.xlsx")
