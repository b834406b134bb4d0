"""Validation of a year's input files (issue 11, items 1 and 2).

Every broken file is written in ``tmp_path`` from the bundled demo year, one class of problem per
test (``;`` separator, Windows-1258, thousands separators, blank/NaN/negative counts, duplicates,
stray spaces, Vietnamese labels, missing files and columns, wrong types). Each test asserts the
file, row and column the error names — a class, not one example: several values per class.
"""

from __future__ import annotations

import csv
import pickle
import shutil
import time
import unicodedata
from pathlib import Path

import pandas as pd
import pytest

from sipas_lib import inputs

#: Each case builds a year from the demo's files in tmp_path (about a second): not in `make test-fast`.
pytestmark = pytest.mark.slow
from sipas_lib.config import DEMO_DIR, FIELDS

#: The broken years of these tests are made from the demo's previous year (2024: the 20 departments
#: and 30 districts, ids such as D01), whose structure the cases below name.
SOURCE_DIR = DEMO_DIR / "previous_year"
#: Its transactions, summed by a plain CSV reader (what read_input must agree with).
DEMO_FRAME_TOTAL = int(pd.read_csv(SOURCE_DIR / "frame_counts.csv")["N"].sum())
from sipas_lib.inputs import InputError, InputErrors, read_delimited, read_input, validate_year
from sipas_lib.schemas.inputs import INPUT_FILES

CSV_FILES = ("units.csv", "frame_counts.csv", "sample.csv", "procedures.csv")
ADMIN_FILES = ("feedback.parquet", "apologies.parquet", "opinions.parquet")


# --------------------------------------------------------------------------------------------
# Helpers: a small year in tmp_path made from the demo's files
# --------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def admin_tables() -> dict[str, pd.DataFrame]:
    """The first records of the demo's small administrative tables (read once)."""
    tables = {}
    for name in ADMIN_FILES:
        table = pd.read_parquet(SOURCE_DIR / name)
        tables[name] = pd.concat([table[table["level"] == level].head(400) for level in ("unit", "commune")],
                                 ignore_index=True)
    return tables


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> dict[str, pd.DataFrame]:
    """``read_input(..., personal=True)`` of each CSV input of the unchanged year (read once): what a test
    that rewrites a file in another spelling must read back."""
    folder = tmp_path_factory.mktemp("pristine")
    for name in CSV_FILES:
        shutil.copy(SOURCE_DIR / name, folder / name)
    return {name: read_input(folder, name, personal=True) for name in ("frame_counts", "sample", "units", "procedures")}


def without_personal(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` as ``read_input`` returns it when personal columns are not asked for."""
    from sipas_lib import schemas

    return table.drop(columns=[c for c in table.columns if c in schemas.PERSONAL_COLUMNS])


@pytest.fixture
def year(input_copies, admin_tables) -> Path:
    """The demo's CSV inputs, copied, and the first records of its small administrative tables."""
    folder = input_copies(CSV_FILES)
    for name, table in admin_tables.items():
        table.to_parquet(folder / name, index=False)
    return folder


def first_records(path: Path, n: int) -> pd.DataFrame:
    """``pd.read_parquet(path).head(n)``, reading only the first ``n`` records (the demo's frame and dossier
    tables hold a million)."""
    import pyarrow as pa_arrow
    import pyarrow.parquet as pq

    file = pq.ParquetFile(path)
    return pa_arrow.Table.from_batches([next(file.iter_batches(batch_size=n))], schema=file.schema_arrow).to_pandas()


def rows_of(path: Path) -> list[list[str]]:
    with open(path, encoding="utf-8-sig", newline="") as fh:
        return list(csv.reader(fh))


def write_rows(path: Path, rows: list[list[str]], *, sep: str = ",", encoding: str = "utf-8") -> None:
    with open(path, "w", encoding=encoding, newline="") as fh:
        csv.writer(fh, delimiter=sep, lineterminator="\r\n").writerows(rows)


def set_cell(path: Path, row: int, column: str, value: str) -> None:
    """Change one cell: ``row`` as a spreadsheet shows it (header = row 1)."""
    rows = rows_of(path)
    rows[row - 1][rows[0].index(column)] = value
    write_rows(path, rows)


def cell(path: Path, row: int, column: str) -> str:
    rows = rows_of(path)
    return rows[row - 1][rows[0].index(column)]


_TONES = {"\u0300", "\u0301", "\u0303", "\u0309", "\u0323"}


def windows_1258(text: str) -> bytes:
    """``text`` as Windows-1258 stores Vietnamese: base letters precomposed, tone marks combining."""
    out = []
    for ch in text:
        parts = unicodedata.normalize("NFD", ch)
        out.append(unicodedata.normalize("NFC", "".join(m for m in parts if m not in _TONES))
                   + "".join(m for m in parts if m in _TONES))
    return "".join(out).encode("cp1258")


def raises_at(call, *, file: str, row: int | None, column: str | None, match: str | None = None) -> InputError:
    with pytest.raises(InputError, match=match) as info:
        call()
    err = info.value
    assert Path(err.file).name == file, str(err)
    assert err.row == row, str(err)
    assert err.column == column, str(err)
    assert err.expected
    word = "record" if file.endswith(".parquet") else "row"
    location = file + (f", {word} {row}" if row is not None else "") + (f", column {column!r}" if column else "")
    assert location in str(err)
    return err


# --------------------------------------------------------------------------------------------
# The bundled demo year is valid
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("folder", [DEMO_DIR, DEMO_DIR / "previous_year"], ids=["demo", "previous_year"])
def test_bundled_demo_year_validates_cleanly_and_quickly(folder):
    started = time.process_time()
    warnings = validate_year(folder)
    used = time.process_time() - started
    assert warnings == []
    # 1.4 million administrative records; typically 2-3 s of CPU. A regression to Python-level row
    # loops or regex fallbacks costs 15 s and more.
    assert used < 12, f"validate_year took {used:.1f} s of CPU"


def test_read_input_gives_the_contract_types(year):
    counts = read_input(year, "frame_counts")
    assert counts["N"].dtype == "int64" and int(counts["N"].sum()) == DEMO_FRAME_TOTAL
    sample = read_input(year, "sample")
    assert sample["form_id"].str.fullmatch(r"[0-9]{6}|[0-9]{10}").all()
    assert sample["recheck"].dtype == bool and sample["incl_prob"].dtype == "float64"
    assert "transaction_id" not in sample.columns  # personal: only when asked for
    assert "transaction_id" in read_input(year, "sample", personal=True).columns
    units = read_input(year, "units")
    assert units["code"].dtype == "Int64" and units["unit_id"].is_unique


def test_frame_personal_columns_only_when_asked(tmp_path):
    frame = first_records(SOURCE_DIR / "frame.parquet", 300)
    folder = tmp_path / "y"
    folder.mkdir()
    shutil.copy(SOURCE_DIR / "units.csv", folder / "units.csv")
    frame.to_parquet(folder / "frame.parquet", index=False)
    plain = read_input(folder, "frame")
    assert not {"applicant_name", "phone", "address", "transaction_id"} & set(plain.columns)
    full = read_input(folder, "frame", personal=True)
    assert {"applicant_name", "phone", "address", "transaction_id"} <= set(full.columns)
    # a repeated transaction id names both records, never the id itself (personal data)
    frame.loc[7, "transaction_id"] = frame.loc[3, "transaction_id"]
    frame.to_parquet(folder / "frame.parquet", index=False)
    err = raises_at(lambda: read_input(folder, "frame"), file="frame.parquet", row=8, column="transaction_id",
                    match="repeats record 4")
    assert frame.loc[3, "transaction_id"] not in str(err)


# --------------------------------------------------------------------------------------------
# Encoding, separator, shape of a delimited file
# --------------------------------------------------------------------------------------------

def test_utf8_with_and_without_bom_read_alike(year, tmp_path):
    plain = tmp_path / "plain.csv"
    plain.write_bytes((year / "units.csv").read_bytes().removeprefix(b"\xef\xbb\xbf"))
    bom = tmp_path / "bom.csv"
    bom.write_bytes(b"\xef\xbb\xbf" + plain.read_bytes())
    pd.testing.assert_frame_equal(read_delimited(plain), read_delimited(bom))
    assert read_delimited(bom).columns[0] == "unit_id"


@pytest.mark.parametrize("encode", [windows_1258, lambda t: t.encode("cp1252", errors="replace")],
                         ids=["windows-1258", "cp1252"])
def test_non_utf8_file_names_the_first_bad_row(year, encode):
    text = (year / "units.csv").read_text(encoding="utf-8-sig")
    (year / "units.csv").write_bytes(encode(text))
    first_bad = next(i for i, line in enumerate(encode(text).splitlines(), start=1) if not line.isascii())
    err = raises_at(lambda: validate_year(year), file="units.csv", row=first_bad, column=None,
                    match="not UTF-8: save it .*'CSV UTF-8")
    assert "UnicodeDecodeError" not in str(err)


def test_utf16_and_renamed_workbook_are_refused(year):
    text = (year / "frame_counts.csv").read_text(encoding="utf-8")
    (year / "frame_counts.csv").write_bytes(text.encode("utf-16"))
    raises_at(lambda: read_delimited(year / "frame_counts.csv"), file="frame_counts.csv", row=None, column=None,
              match="UTF-16")
    (year / "frame_counts.csv").write_bytes(b"PK\x03\x04" + b"\x00" * 40)
    raises_at(lambda: read_delimited(year / "frame_counts.csv"), file="frame_counts.csv", row=None, column=None,
              match="Excel workbook")


@pytest.mark.parametrize("sep", [";", "\t"], ids=["semicolon", "tab"])
@pytest.mark.parametrize("name", ["frame_counts", "sample", "units", "procedures"])
def test_other_separators_are_read_correctly(year, pristine, name, sep):
    expected = pristine[name]
    path = year / INPUT_FILES[name]
    write_rows(path, rows_of(path), sep=sep)
    got = read_input(year, name, personal=True)
    pd.testing.assert_frame_equal(got, expected)
    assert got.attrs["warnings"] == []


def test_semicolon_file_with_decimal_commas_reads_unambiguous_decimals(year):
    path = year / "sample.csv"
    rows = rows_of(path)
    j = rows[0].index("design_weight")
    weight = rows[1][j]
    assert "." in weight and len(weight.split(".")[1]) != 3  # a decimal that cannot be a thousands group
    rows[1][j] = weight.replace(".", ",")
    write_rows(path, rows, sep=";")
    got = read_input(year, "sample")
    assert got.loc[0, "design_weight"] == float(weight)
    assert any("decimal comma" in w for w in got.attrs["warnings"])


def test_ambiguous_separator_is_refused(tmp_path):
    path = tmp_path / "odd.csv"
    path.write_text("a,b;c\n1,2;3\n", encoding="utf-8")
    raises_at(lambda: read_delimited(path), file="odd.csv", row=1, column=None, match="cannot tell which separator")


@pytest.mark.parametrize("change, message", [
    (lambda line: line + ",extra", r"has 5 cells but the header has 4 columns"),
    (lambda line: line.rsplit(",", 1)[0], r"has 3 cells but the header has 4 columns"),
])
def test_ragged_rows_are_named(year, change, message):
    path = year / "frame_counts.csv"
    lines = path.read_text(encoding="utf-8").splitlines()
    for row in (2, len(lines)):
        changed = lines.copy()
        changed[row - 1] = change(changed[row - 1])
        path.write_text("\n".join(changed) + "\n", encoding="utf-8")
        raises_at(lambda: read_input(year, "frame_counts"), file="frame_counts.csv", row=row, column=None,
                  match=message)


def test_blank_rows_are_skipped_and_numbering_kept(year):
    path = year / "frame_counts.csv"
    lines = path.read_text(encoding="utf-8").splitlines()
    lines.insert(5, ",,,")  # becomes row 6
    lines.insert(9, "")     # becomes row 10
    lines[19] = lines[19].rsplit(",", 1)[0] + ",x"  # row 20
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    table = read_delimited(path)
    assert 6 not in table.index and 10 not in table.index and table.index[-1] == len(lines)
    raises_at(lambda: read_input(year, "frame_counts"), file="frame_counts.csv", row=20, column="N",
              match="found 'x'")


@pytest.mark.parametrize("content, row, message", [
    (b"", None, "empty"),
    (b"\r\n \r\n\r\n", None, "empty"),
    (b"\r\nunit_id,field,channel,N\r\nS01,justice,direct,3\r\n", 1, "row 1 is blank"),
    (b"unit_id,field,channel,N\r\n", 2, "header row but no records"),
    (b"unit_id,field,unit_id,N\r\nS01,justice,S01,3\r\n", 1, "columns number 1 and 3 are both named"),
    (b"unit_id,field,channel,N,\r\nS01,justice,direct,3,9\r\n", 1, "column number 5 has no name"),
])
def test_file_shape_problems(year, content, row, message):
    (year / "frame_counts.csv").write_bytes(content)
    raises_at(lambda: read_input(year, "frame_counts"), file="frame_counts.csv", row=row,
              column="unit_id" if "both named" in message else None, match=message)


def test_trailing_empty_columns_are_dropped(year):
    path = year / "frame_counts.csv"
    lines = path.read_text(encoding="utf-8").splitlines()
    path.write_text("\n".join(line + ",," for line in lines) + "\n", encoding="utf-8")
    assert int(read_input(year, "frame_counts")["N"].sum()) == DEMO_FRAME_TOTAL


# --------------------------------------------------------------------------------------------
# Required files and columns
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["sample.csv", "frame_counts.csv", "units.csv"])
def test_missing_required_file_is_named(year, name):
    (year / name).unlink()
    raises_at(lambda: validate_year(year), file=name, row=None, column=None, match="not found")


def test_optional_files_are_validated_only_when_present(year):
    for name in ("procedures.csv", *ADMIN_FILES):
        (year / name).unlink()
    assert validate_year(year) == []


def test_problems_in_several_files_are_all_reported(year):
    (year / "sample.csv").unlink()
    set_cell(year / "frame_counts.csv", 14, "N", "1.234")
    set_cell(year / "procedures.csv", 30, "field", "astrology")
    with pytest.raises(InputErrors) as info:
        validate_year(year)
    err = info.value
    assert [Path(e.file).name for e in err.errors] == ["frame_counts.csv", "sample.csv", "procedures.csv"]
    assert str(err).splitlines()[0] == str(err.errors[0])  # the first line is a complete message
    assert (Path(err.file).name, err.row, err.column) == ("frame_counts.csv", 14, "N")
    again = pickle.loads(pickle.dumps(err))
    assert str(again) == str(err) and len(again.errors) == 3


@pytest.mark.parametrize("name, column", [
    ("frame_counts", "N"), ("frame_counts", "channel"), ("sample", "incl_prob"), ("sample", "form_id"),
    ("units", "unit_type"), ("procedures", "offers_postal"),
])
def test_missing_column_is_named(year, name, column):
    path = year / INPUT_FILES[name]
    rows = rows_of(path)
    j = rows[0].index(column)
    write_rows(path, [r[:j] + r[j + 1:] for r in rows])
    raises_at(lambda: read_input(year, name), file=path.name, row=1, column=column, match="missing column")


def test_column_name_in_other_case_is_not_guessed(year):
    path = year / "frame_counts.csv"
    rows = rows_of(path)
    rows[0][rows[0].index("N")] = "n"
    write_rows(path, rows)
    raises_at(lambda: read_input(year, "frame_counts"), file="frame_counts.csv", row=1, column="N",
              match="found 'n': column names are case-sensitive")


def test_extra_columns_are_ignored_with_a_warning(year):
    path = year / "frame_counts.csv"
    rows = rows_of(path)
    write_rows(path, [r + (["note"] if i == 0 else ["x"]) for i, r in enumerate(rows)])
    got = read_input(year, "frame_counts")
    assert list(got.columns) == ["unit_id", "field", "channel", "N"]
    assert any("'note'" in w for w in got.attrs["warnings"])


# --------------------------------------------------------------------------------------------
# Population counts are strict (issue 11, item 2)
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("value, message", [
    ("1.234", r"found '1.234' \(Vietnamese thousands separator\? write 1234\)"),
    ("12.345.678", "write 12345678"),
    ("1,234", r"thousands separator\? write 1234"),
    ("1 234", r"thousands separator\? write 1234"),
    ("", "found a blank cell"),
    ("NaN", "found 'NaN'"),
    ("nan", "found 'nan'"),
    ("-", "found '-'"),
    ("-5", "cannot be negative"),
    ("-0.5", "found '-0.5'"),
    ("12.5", "whole number"),
    ("1e3", "found '1e3'"),
    ("twelve", "found 'twelve'"),
])
def test_frame_counts_N_is_strict(year, value, message):
    path = year / "frame_counts.csv"
    last = len(rows_of(path))  # the last data row (spreadsheet numbering: header = row 1)
    # validate_year over the files it needs here (the units and the counts): that it reports each file's
    # problem among several is test_problems_in_several_files_are_all_reported's
    for row, check in ((14, lambda folder: validate_year(folder, names=["frame_counts"])),
                       (last, lambda folder: read_input(folder, "frame_counts"))):
        original = cell(path, row, "N")
        set_cell(path, row, "N", value)
        err = raises_at(lambda: check(year), file="frame_counts.csv", row=row, column="N", match=message)
        assert "expected a whole number of transactions ≥ 0" in str(err)
        set_cell(path, row, "N", original)


def test_vietnamese_thousands_separators_never_pass_silently(year):
    """The issue's example: every N ≥ 1000 written as Vietnamese Excel writes it."""
    path = year / "frame_counts.csv"
    rows = rows_of(path)
    j = rows[0].index("N")
    first = None
    for i, r in enumerate(rows[1:], start=2):
        n = int(r[j])
        if n >= 1000:
            r[j] = f"{n:,}".replace(",", ".")
            first = first or i
    write_rows(path, rows, sep=";")
    raises_at(lambda: validate_year(year), file="frame_counts.csv", row=first, column="N",
              match="Vietnamese thousands separator")


def test_whole_numbers_with_zero_decimals_are_read_with_a_warning(year):
    path = year / "frame_counts.csv"
    set_cell(path, 5, "N", cell(path, 5, "N") + ".0")
    got = read_input(year, "frame_counts")
    assert int(got["N"].sum()) == DEMO_FRAME_TOTAL
    assert any("zero decimals" in w for w in got.attrs["warnings"])


def test_parse_whole_numbers_reads_only_unambiguous_text():
    values = pd.Series(["0", "17", " 42 ", "3.0", "1.234", "1,5", "-1", None, "x"], dtype="string")
    numbers, bad, decimals = inputs.parse_whole_numbers(values)
    assert numbers.tolist()[:4] == [0, 17, 42, 3]
    assert bad.tolist() == [False] * 4 + [True] * 3 + [False, True]
    assert decimals.tolist() == [False, False, False, True] + [False] * 5


# --------------------------------------------------------------------------------------------
# Keys, references, vocabularies
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, keys", [
    ("frame_counts", ["unit_id", "field", "channel"]),
    ("sample", ["form_id"]),
    ("units", ["unit_id"]),
    ("procedures", ["procedure_id"]),
])
def test_duplicated_keys_name_both_rows(year, name, keys):
    path = year / INPUT_FILES[name]
    rows = rows_of(path)
    header = rows[0]
    for first, second in ((2, 3), (5, 40)):
        changed = [r.copy() for r in rows]
        for key in keys:
            changed[second - 1][header.index(key)] = changed[first - 1][header.index(key)]
        write_rows(path, changed)
        err = raises_at(lambda: read_input(year, name), file=path.name, row=second,
                        column=keys[0] if len(keys) == 1 else None, match=f"repeats row {first}: both have")
        assert "may appear only once" in str(err)
    write_rows(path, rows + [rows[7]])  # an exact copy is refused too: nothing is summed or dropped silently
    raises_at(lambda: read_input(year, name), file=path.name, row=len(rows) + 1,
              column=keys[0] if len(keys) == 1 else None, match="repeats row 8")


def test_duplicated_parquet_ids_name_both_records(year):
    table = pd.read_parquet(year / "feedback.parquet")
    table.loc[99, "feedback_id"] = table.loc[9, "feedback_id"]
    table.to_parquet(year / "feedback.parquet", index=False)
    raises_at(lambda: validate_year(year), file="feedback.parquet", row=100, column="feedback_id",
              match="repeats record 10")


@pytest.mark.parametrize("name", ["frame_counts", "sample", "procedures"])
@pytest.mark.parametrize("value, hint", [("D99", "add the unit to units.csv"), ("d01", "did you mean 'D01'"),
                                         ("D0 1", "")])
def test_unknown_unit_ids_are_refused(year, name, value, hint):
    path = year / INPUT_FILES[name]
    set_cell(path, 9, "unit_id", value)
    raises_at(lambda: read_input(year, name), file=path.name, row=9, column="unit_id",
              match=f"expected a unit id listed in units.csv, found '{value}'.*{hint}")


@pytest.mark.parametrize("name", ["frame_counts", "sample", "units"])
def test_stray_spaces_around_ids_are_stripped_with_a_warning(year, pristine, name):
    expected = without_personal(pristine[name])
    path = year / INPUT_FILES[name]
    rows = rows_of(path)
    j = rows[0].index("unit_id")
    for r in rows[3:9]:
        r[j] = f" {r[j]}\u00a0 "
    write_rows(path, rows)
    got = read_input(year, name)
    pd.testing.assert_frame_equal(got, expected, check_like=False)
    [warning] = [w for w in got.attrs["warnings"] if "'unit_id'" in w]
    assert "6 value(s) with spaces" in warning and "row 4" in warning
    assert any("6 value(s)" in w for w in validate_year(year))


@pytest.mark.parametrize("name, column, label, code", [
    ("frame_counts", "field", "Tư pháp", "justice"),
    ("frame_counts", "field", "Tài nguyên và môi trường", "land_environment"),
    ("frame_counts", "field", "  xây dựng,  quản lý đô thị ", "construction_urban"),
    ("frame_counts", "field", "Land and environment", "land_environment"),
    ("frame_counts", "channel", "DV BCCI", "postal"),
    ("frame_counts", "channel", "DIRECT", "direct"),
    ("sample", "field", "Lao động, thương binh và xã hội", "labour_social"),
    ("sample", "survey_mode", "qua Bưu điện", "postal"),
    ("procedures", "field", "Lĩnh vực khác", "other"),
])
def test_labels_that_exactly_match_a_known_label_map_to_the_code(year, pristine, name, column, label, code):
    path = year / INPUT_FILES[name]
    rows = rows_of(path)
    j = rows[0].index(column)
    targets = [i for i, r in enumerate(rows) if i > 0 and r[j] == code][:3]
    for i in targets:
        rows[i][j] = unicodedata.normalize("NFD", label) if i == targets[-1] else label  # NFD: typed on a Mac
    expected = without_personal(pristine[name])
    write_rows(path, rows)
    got = read_input(year, name)
    pd.testing.assert_frame_equal(got, expected)
    assert any(f"read as their code" in w and repr(code) in w for w in got.attrs["warnings"])


@pytest.mark.parametrize("name, column, value", [
    ("frame_counts", "field", "Tư pháp và hộ tịch"),  # close to a label, but not one: never guessed
    ("frame_counts", "field", "justic"),
    ("frame_counts", "channel", "online"),          # a survey mode, not a submission channel
    ("sample", "channel", "one_stop"),
    ("sample", "survey_mode", "email"),
    ("units", "unit_type", "quận"),
    ("procedures", "level", "province"),
])
def test_unknown_codes_are_refused(year, name, column, value):
    path = year / INPUT_FILES[name]
    set_cell(path, 11, column, value)
    raises_at(lambda: read_input(year, name), file=path.name, row=11, column=column,
              match=f"expected one of .*found '{value}'")


def test_field_vocabulary_is_the_contracts():
    from sipas_lib import schemas

    allowed = schemas.contract("frame_counts.csv").schema.columns["field"].checks[0].statistics["allowed_values"]
    assert list(allowed) == list(FIELDS)


# --------------------------------------------------------------------------------------------
# Wrong types and the rules of each file
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, column, value, message", [
    ("sample", "incl_prob", "abc", "expected a number > 0 and ≤ 1"),
    ("sample", "incl_prob", "0", "expected a number > 0 and ≤ 1, found '0'"),
    ("sample", "incl_prob", "1.5", "found '1.5'"),
    ("sample", "incl_prob", "", "found a blank cell"),
    ("sample", "design_weight", "0.5", "expected a number ≥ 1"),
    ("sample", "N_h", "many", "expected a whole number of transactions ≥ 1"),
    ("sample", "n_h", "2.5", "expected a whole number of questionnaires ≥ 1"),
    ("sample", "recheck", "maybe", "expected True or False"),
    ("sample", "form_id", "30001", "leading zero lost"),
    ("sample", "form_id", "300012.0", "saved as a number"),
    ("sample", "form_id", "A00012", "6 digits"),
    ("units", "code", "ten", "expected a whole number of form-id code from 1 to 99999"),
    ("procedures", "offers_online_l3", "sometimes", "True or False"),
])
def test_wrong_types_are_named(year, name, column, value, message):
    path = year / INPUT_FILES[name]
    set_cell(path, 6, column, value)
    raises_at(lambda: read_input(year, name), file=path.name, row=6, column=column, match=message)


def test_booleans_in_excel_spelling_are_read(year, pristine):
    path = year / "procedures.csv"
    expected = without_personal(pristine["procedures"])
    rows = rows_of(path)
    for r in rows[1:]:
        for j, h in enumerate(rows[0]):
            if h.startswith("offers_"):
                r[j] = r[j].upper()
    write_rows(path, rows)
    pd.testing.assert_frame_equal(read_input(year, "procedures"), expected)


def test_form_ids_keep_leading_zeros(year):
    path = year / "sample.csv"
    set_cell(path, 4, "form_id", "000417")
    assert read_input(year, "sample").loc[2, "form_id"] == "000417"


def test_design_weight_must_be_the_inverse_inclusion_probability(year):
    path = year / "sample.csv"
    right = 1 / float(cell(path, 30, "incl_prob"))
    set_cell(path, 30, "design_weight", str(right * 1.01))
    raises_at(lambda: read_input(year, "sample"), file="sample.csv", row=30, column="design_weight",
              match=f"expected design_weight = 1 / incl_prob.*should be {right:.6g}")


def test_stratum_sizes_are_consistent(year):
    path = year / "sample.csv"
    stratum = cell(path, 2, "stratum")
    table = rows_of(path)
    rows = [i for i, r in enumerate(table, start=1) if i > 1 and r[table[0].index("stratum")] == stratum]
    set_cell(path, rows[3], "N_h", "829")
    raises_at(lambda: read_input(year, "sample"), file="sample.csv", row=rows[3], column="N_h",
              match=f"one N_h for every form of stratum '{stratum}'.*row 2 of the same stratum")
    set_cell(path, rows[3], "N_h", cell(path, 2, "N_h"))
    table, too_many = rows_of(path), str(int(cell(path, 2, "N_h")) + 1)
    for row in rows:  # the whole stratum claims more forms than its frame holds (one write, not one per row)
        table[row - 1][table[0].index("n_h")] = too_many
    write_rows(path, table)
    raises_at(lambda: read_input(year, "sample"), file="sample.csv", row=2, column="n_h", match="n_h ≤ N_h")


def test_sampled_unit_without_frame_counts_is_refused(year):
    path = year / "frame_counts.csv"
    rows = rows_of(path)
    write_rows(path, [r for r in rows if r[0] != "D07"])
    sample = rows_of(year / "sample.csv")
    write_rows(year / "sample.csv", sample[:2] + [[""] * len(sample[0])] + sample[2:])  # a blank row 3
    with pytest.raises(InputError, match="expected a unit with rows in frame_counts.csv, found 'D07'") as info:
        validate_year(year)
    assert info.value.column == "unit_id" and Path(info.value.file).name == "sample.csv"
    sample = rows_of(year / "sample.csv")
    assert info.value.row == next(i for i, r in enumerate(sample, start=1) if r[2] == "D07")


@pytest.mark.parametrize("column, value, message", [
    ("parent_id", "D77", "expected the unit_id of another unit in units.csv, found 'D77'"),
    ("parent_id", "S01", r"names S01 \(department\)"),
    ("code", "123456", "from 1 to 99999, found '123456'"),
])
def test_units_registry_rules(year, column, value, message):
    path = year / "units.csv"
    rows = rows_of(path)
    row = next(i for i, r in enumerate(rows, start=1) if r[rows[0].index("unit_type")] == "commune") \
        if column == "parent_id" else 3
    set_cell(path, row, column, value)
    raises_at(lambda: read_input(year, "units"), file="units.csv", row=row, column=column, match=message)


def test_two_units_sharing_a_form_id_code(year):
    path = year / "units.csv"
    set_cell(path, 4, "code", cell(path, 2, "code"))
    raises_at(lambda: read_input(year, "units"), file="units.csv", row=4, column="code", match="share a form-id code")


# --------------------------------------------------------------------------------------------
# Administrative tables (Parquet)
# --------------------------------------------------------------------------------------------

def test_administrative_commune_rules(year):
    table = pd.read_parquet(year / "opinions.parquet")
    units = pd.read_csv(year / "units.csv", dtype=str)
    at_commune = table.index[table["level"] == "commune"][5]
    at_unit = table.index[table["level"] == "unit"][5]
    other = units.loc[(units["unit_type"] == "commune") & (units["parent_id"] != table.loc[at_commune, "unit_id"]),
                      "unit_id"].iloc[0]
    for change, row, match in [
        ({"commune_id": (at_commune, other)}, at_commune, "expected a commune of unit"),
        ({"commune_id": (at_commune, None)}, at_commune, "expected a commune id where level is 'commune'"),
        ({"commune_id": (at_unit, other)}, at_unit, "expected an empty cell where level is 'unit'"),
        ({"commune_id": (at_commune, "X99")}, at_commune, "expected a unit id listed in units.csv"),
    ]:
        broken = table.copy()
        for column, (index, value) in change.items():
            broken.loc[index, column] = value
        broken.to_parquet(year / "opinions.parquet", index=False)
        raises_at(lambda: read_input(year, "opinions"), file="opinions.parquet", row=index + 1, column="commune_id",
                  match=match)


def test_administrative_types_and_codes(year):
    table = pd.read_parquet(year / "feedback.parquet")
    cases = [
        (table.assign(received_on=table["received_on"].dt.strftime("%d/%m/%Y")), 1, "received_on", "expected a date"),
        (table.assign(kind=table["kind"].where(table.index != 20, "rude")), 21, "kind",
         "expected one of behaviour, regulation, found 'rude'"),
        (table.assign(result_published=table["result_published"].map({True: "yes", False: "no"})
                      .where(table.index != 3, "perhaps")), 4, "result_published", "True or False"),
        (table.drop(columns="kind"), None, "kind", "missing column"),
    ]
    for broken, row, column, match in cases:
        broken.to_parquet(year / "feedback.parquet", index=False)
        raises_at(lambda: read_input(year, "feedback"), file="feedback.parquet", row=row, column=column, match=match)


def test_broken_parquet_is_named(year):
    (year / "apologies.parquet").write_bytes(b"not parquet at all")
    raises_at(lambda: validate_year(year), file="apologies.parquet", row=None, column=None,
              match="not a valid Parquet file")


def test_read_input_knows_every_input_file(year):
    with pytest.raises(ValueError, match="unknown input 'responses'"):
        read_input(year, "responses")
    assert set(INPUT_FILES) >= {"units", "sample", "frame_counts", "procedures", "frame", "dossiers", "feedback",
                                "apologies", "opinions"}


def test_tiny_demo_year_validates(tiny_demo):
    assert validate_year(tiny_demo) == []
    assert validate_year(tiny_demo / "previous_year") == []


def test_dossier_status_agrees_with_its_dates(tmp_path):
    folder = tmp_path / "y"
    folder.mkdir()
    shutil.copy(SOURCE_DIR / "units.csv", folder / "units.csv")
    table = first_records(SOURCE_DIR / "dossiers.parquet", 2000)
    pending = int(table.index[table["status"] == "pending"][0])
    on_time = int(table.index[table["status"] == "on_time"][3])
    day = pd.Timedelta(days=1)
    cases = [
        ("resolved_on", pending, table.loc[pending, "received_on"] + day, "expected an empty cell for a pending"),
        ("resolved_on", on_time, pd.NaT, "expected the day a dossier with status 'on_time' was resolved"),
        ("resolved_on", on_time, table.loc[on_time, "received_on"] - day, "expected a date on or after received_on"),
        ("due_on", on_time, table.loc[on_time, "received_on"] - day, "expected a date on or after received_on"),
        ("status", on_time, "overdue", "expected status 'on_time'"),
    ]
    for column, index, value, match in cases:
        broken = table.copy()
        broken.loc[index, column] = value
        broken.to_parquet(folder / "dossiers.parquet", index=False)
        raises_at(lambda: read_input(folder, "dossiers"), file="dossiers.parquet", row=index + 1, column=column,
                  match=match)


def test_missing_markers_are_empty_only_where_a_value_may_be_missing(year):
    path = year / "units.csv"
    rows = rows_of(path)
    communes = [i for i, r in enumerate(rows, start=1) if r[rows[0].index("unit_type")] == "commune"]
    set_cell(path, communes[0], "code", "NaN")
    got = read_input(year, "units")
    assert got["code"].isna().sum() == len(communes)
    assert any("written as 'NaN' were read as empty" in w for w in got.attrs["warnings"])
    set_cell(path, communes[1], "code", "1.234")  # a later real problem is still found
    raises_at(lambda: read_input(year, "units"), file="units.csv", row=communes[1], column="code",
              match="Vietnamese thousands separator")


def test_load_units_names_the_encoding_problem_too(year):
    from sipas_lib.units import UnitsError, load_units

    text = (year / "units.csv").read_text(encoding="utf-8-sig")
    (year / "units.csv").write_bytes(windows_1258(text))
    with pytest.raises(UnitsError, match=r"units.csv, row 2: not UTF-8: save it as 'CSV UTF-8'") as info:
        load_units(year / "units.csv")
    assert info.value.row == 2
