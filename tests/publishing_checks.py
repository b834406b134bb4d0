"""Security and privacy of the published reports (issue 7): the checks (tested in ``tests/test_publishing.py``).

* No personal data anywhere under a run folder: the frame's applicant names and phone numbers and the
  enumerators' names and phones in the raw responses appear in no file (:func:`find_personal_data`,
  every format read the way its reader would: :func:`public_text`).
* Every string from data is escaped: with a unit named ``<script>alert(1)</script>``, another
  ``<img src=x onerror=...>`` (and the first as a free-text education answer, :func:`with_payloads`) no page
  contains a live script or handler (:func:`live_scripts`), and the escaped name is visible.

The checks run on the notebook tier's chain (``tests/test_notebooks.py``, ``tiny_run``: the tiny year
with the payloads, every stage notebook and scorecard through ``sipas_lib.runner.run_report``): the
runner's pages, the executed notebooks exported again with nbconvert's stock HTML exporter, which keeps
scripts (:func:`stock_html`: the escaping itself is tested, not the runner's script stripping), and the
scorecard notebook (the researcher's one-unit page) executed in English.
"""

from __future__ import annotations

import html.parser
import re
import shutil
from pathlib import Path

import pandas as pd

PAYLOAD = "<script>alert(1)</script>"
PAYLOAD_IMG = '<img src=x onerror="alert(2)">'
#: the payloads escaped, as a page must show them
PAYLOAD_ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"
#: the units that get the payload names (:func:`with_payloads`)
PAYLOAD_UNITS = {"S01": PAYLOAD, "D01": PAYLOAD_IMG}
#: raw answers given :data:`PAYLOAD` as their free-text education answer ("other, please specify")
N_FREE_TEXT_PAYLOADS = 3
#: "other, please specify" of the education question (``other_code`` in sipas_lib/instruments/hanoi_pl5_*.yaml)
EDUCATION_OTHER = "7"


def with_payloads(source: Path, target: Path) -> Path:
    """A copy of the year in ``source`` (its previous year too) at ``target`` with hostile text from data.

    S01 and D01 are named :data:`PAYLOAD` and :data:`PAYLOAD_IMG` (Vietnamese and English names), and the
    first :data:`N_FREE_TEXT_PAYLOADS` district questionnaires answer the education question "other:
    :data:`PAYLOAD`" (kept in the results only with ``intake_quality.keep_free_text``).
    """
    shutil.copytree(source, target)
    units = pd.read_csv(target / "units.csv", dtype=str)
    assert set(PAYLOAD_UNITS) <= set(units["unit_id"]), "the year has no S01 or D01 to give the payload names"
    for unit_id, name in PAYLOAD_UNITS.items():
        units.loc[units["unit_id"] == unit_id, ["name_vi", "name_en"]] = name
    units.to_csv(target / "units.csv", index=False)
    raw = pd.read_csv(target / "responses_districts.csv", dtype=str, keep_default_na=False)
    raw.loc[raw.index[:N_FREE_TEXT_PAYLOADS], ["education", "education_other"]] = [EDUCATION_OTHER, PAYLOAD]
    raw.to_csv(target / "responses_districts.csv", index=False)
    return target


def stock_html(executed: Path) -> str:
    """An executed notebook as nbconvert's stock HTML export (keeps scripts), code hidden as in the runner."""
    import nbformat
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter(exclude_input=True).from_notebook_node(nbformat.read(executed, as_version=4))
    return body


def error_outputs(executed: Path) -> list[str]:
    """What an executed notebook printed to stderr (warnings) or raised (tracebacks), one line each."""
    import nbformat

    nb = nbformat.read(executed, as_version=4)
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    return [f"{o.get('name', o.output_type)}: {(o.get('text') or o.get('evalue') or '')[:120]!r}"
            for o in outputs if o.output_type == "error" or (o.output_type == "stream" and o.get("name") == "stderr")]


class _LiveScriptFinder(html.parser.HTMLParser):
    """Collect script bodies and event-handler attributes that mention the payloads."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.in_script = False
        self.hits: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "script":
            self.in_script = True
            src = dict(attrs).get("src") or ""
            if "alert" in src:
                self.hits.append(f"<script src={src}>")
        for name, value in attrs:
            if name.lower().startswith("on") and value and "alert" in value:
                self.hits.append(f"<{tag} {name}={value}>")

    def handle_endtag(self, tag):
        if tag == "script":
            self.in_script = False

    def handle_data(self, data):
        if self.in_script and "alert(" in data:
            self.hits.append(f"script body: {data[:80]!r}")


def live_scripts(page: str) -> list[str]:
    """Live payloads in an HTML page: script elements or on* handlers running ``alert``."""
    finder = _LiveScriptFinder()
    finder.feed(page)
    raw = [m.group(0) for m in re.finditer(r"<script>alert\(1\)</script>|<img src=x onerror", page)]
    return finder.hits + raw


def personal_strings(data_dir: Path) -> set[str]:
    """Applicant names/phones of the frame and enumerator names/phones of the raw responses."""
    frame = pd.read_parquet(data_dir / "frame.parquet", columns=["applicant_name", "phone"])
    values = set(frame["applicant_name"].dropna().astype(str)) | set(frame["phone"].dropna().astype(str))
    raw = pd.read_csv(data_dir / "responses_districts.csv", dtype=str,
                      usecols=["enumerator_name", "enumerator_phone"])
    values |= set(raw["enumerator_name"].dropna()) | set(raw["enumerator_phone"].dropna())
    xlsx = data_dir / "responses_departments.xlsx"
    if xlsx.exists():
        dept = pd.read_excel(xlsx, dtype=str, engine="openpyxl")
        for col in dept.columns:
            if any(k in col.lower() for k in ("điều tra viên", "enumerator")) and "địa chỉ" not in col.lower():
                values |= set(dept[col].dropna().astype(str))
    return {v.strip() for v in values if len(v.strip()) >= 6}


def _word_ngrams(text: str, longest: int) -> set[str]:
    words = re.findall(r"\w+", text)
    grams = set(words)
    for k in range(2, longest + 1):
        grams.update(" ".join(words[i:i + k]) for i in range(len(words) - k + 1))
    return grams


def public_text(path: Path) -> str:
    """Everything a reader of ``path`` can see, as text: Parquet tables; SPSS/Stata data, labels and
    notes; every cell of an Excel workbook; the text of a PDF; the bytes of any other file (HTML,
    CSV, JSON). A download is as public as a page, so each format is opened the way its reader would."""
    if path.suffix == ".parquet":
        return pd.read_parquet(path).astype(str).to_csv(index=False)
    if path.suffix in (".sav", ".dta"):
        import pyreadstat

        reader = pyreadstat.read_sav if path.suffix == ".sav" else pyreadstat.read_dta
        data, meta = reader(str(path))
        parts = [data.astype(str).to_csv(index=False), meta.file_label or "", *(meta.notes or []),
                 *map(str, meta.column_names_to_labels.values()),
                 *(str(v) for labels in meta.variable_value_labels.values() for v in labels.values())]
        return "\n".join(parts)
    if path.suffix == ".xlsx":
        from openpyxl import load_workbook

        book = load_workbook(path, read_only=True)
        return "\n".join(ws.title + "\n" + "\n".join(" ".join("" if v is None else str(v) for v in row)
                                                    for row in ws.iter_rows(values_only=True))
                         for ws in book.worksheets)
    if path.suffix == ".pdf":
        from pypdf import PdfReader

        reader = PdfReader(str(path))
        info = " ".join(str(v) for v in (reader.metadata or {}).values())
        return info + "\n" + "\n".join(page.extract_text() or "" for page in reader.pages)
    return path.read_bytes().decode("utf-8", errors="ignore")


def find_personal_data(run_dir: Path, secrets: set[str]) -> list[str]:
    """Files under ``run_dir`` containing any of ``secrets`` (text, HTML, CSV, JSON, Parquet, and the
    downloads: SPSS, Stata, Excel, PDF; see :func:`public_text`).

    Matching is by whole words: each secret (a name or a phone number) is compared with the
    runs of 1..k consecutive words of every file (k = the longest secret's word count), so a
    demo year's hundreds of thousands of names are checked in seconds.
    """
    normal = {" ".join(re.findall(r"\w+", s)) for s in secrets}
    normal.discard("")
    longest = max((n.count(" ") + 1 for n in normal), default=1)
    leaks = []
    for path in sorted(run_dir.rglob("*")):
        if not path.is_file():
            continue
        text = public_text(path)
        hits = _word_ngrams(text, longest) & normal
        if hits:
            leaks.append(f"{path.relative_to(run_dir)}: {sorted(hits)[0]!r}")
    return leaks
