"""The run's index page at national size: scorecards grouped by province, every unit linked once."""

from __future__ import annotations

import re
import time
from collections import Counter

import pandas as pd
import pytest

from sipas_lib import runner, schemas
from sipas_lib.runner.index_page import OPEN_GROUPS_UP_TO, _collation_key
from sipas_lib.runner.records import FAILED, OK, NotebookFailure, NotebookRun, RunSummary
from sipas_lib.settings import load_settings
from conftest import index_links

HOSTILE = "<script>alert(1)</script> & Co"
PROVINCES = 34
DEPARTMENTS_PER_PROVINCE = 17  # 578 departments in all, as in the national year
UNITS = 3_000


def _national_units() -> pd.DataFrame:
    """34 provinces, 578 departments and 2,422 communes; one province and one commune with hostile names."""
    province_ids = [f"P{i:02d}" for i in range(1, PROVINCES + 1)]
    names = [f"Tỉnh {chr(ord('A') + i % 26)}{i:02d}" for i in range(PROVINCES)]
    names[5], names[6] = "Tỉnh Đắk Lắk", HOSTILE  # Đ sorts with D; a name that must be escaped
    departments = pd.DataFrame({"unit_id": [f"S{i:04d}" for i in range(PROVINCES * DEPARTMENTS_PER_PROVINCE)],
                                "unit_type": "department"})
    departments["parent_id"] = [province_ids[i % PROVINCES] for i in range(len(departments))]
    communes = pd.DataFrame({"unit_id": [f"C{i:05d}" for i in range(UNITS - len(departments))], "unit_type": "commune"})
    communes["parent_id"] = [province_ids[i % PROVINCES] for i in range(len(communes))]
    local = pd.concat([departments, communes], ignore_index=True)
    local["name_vi"] = "Đơn vị " + local["unit_id"]
    local.loc[local["unit_id"] == "C00007", "name_vi"] = HOSTILE
    provinces = pd.DataFrame({"unit_id": province_ids, "unit_type": "province", "parent_id": None, "name_vi": names})
    units = pd.concat([provinces, local], ignore_index=True)
    return units.assign(code=pd.array([pd.NA] * len(units), dtype="Int64"), name_en=units["name_vi"])


@pytest.fixture(scope="module")
def national_index(tmp_path_factory):
    """An index page of 3,000 scorecards across 34 provinces (one failed), and its run's units."""
    run_dir = tmp_path_factory.mktemp("national") / "run"
    units = _national_units()
    schemas.write_result(run_dir / "results", "units", units)
    cards = run_dir / "html" / "unit_scorecard"
    cards.mkdir(parents=True)
    rows = []
    for unit in units.loc[units["unit_type"] != "province"].itertuples():
        html = cards / f"{unit.unit_id}.html"
        html.write_text("<html></html>")
        failed = unit.unit_id == "C00100"
        rows.append(NotebookRun("fanout", "unit_scorecard", f"Phiếu — {unit.name_vi}", run_dir / "t.ipynb",
                                run_dir / "n.ipynb", html, FAILED if failed else OK, 0.2, unit_id=unit.unit_id,
                                unit_type=unit.unit_type, unit_name=unit.name_vi, section="Phiếu điểm theo đơn vị",
                                failure=NotebookFailure("ValueError", "no <rows>", cell=2) if failed else None))
    summary = RunSummary(run_dir, run_dir / "index.html", rows, 60.0, load_settings(year=2025, lang="vi"))
    started = time.process_time()
    page = runner.write_index(summary, "vi").read_text(encoding="utf-8")
    return page, units, summary, time.process_time() - started


def test_every_scorecard_is_linked_exactly_once(national_index):
    page, units, summary, _ = national_index
    links = [link for link in index_links(summary.index) if not link.startswith("#")]
    assert len(links) == UNITS
    assert Counter(links).most_common(1)[0][1] == 1
    assert set(links) == {f"html/unit_scorecard/{u}.html" for u in units.loc[units["unit_type"] != "province", "unit_id"]}
    # each link shows the unit's name and its id
    assert '<a href="html/unit_scorecard/C01234.html">Đơn vị C01234</a> <span class="unit-id">(C01234)</span>' in page


def test_scorecards_are_grouped_by_province_with_counts_and_a_jump_list(national_index):
    page, units, _, _ = national_index
    groups = re.findall(r'<details class="units" id="([^"]+)"( open)?>\s*<summary>([^<]*)</summary>', page)
    assert len(groups) == PROVINCES  # one closed group per province (3,000 units > OPEN_GROUPS_UP_TO)
    assert UNITS > OPEN_GROUPS_UP_TO
    # 3,000 units over 34 provinces: 578 departments (17 each) and 2,422 communes (71 or 72 each)
    counts = [int(summary.rsplit(" (", 1)[1].split(" ")[0].rstrip(")")) for _, _, summary in groups]
    assert sum(counts) == UNITS and set(counts) == {17 + 71, 17 + 72}
    # provinces A–Z without diacritics: Đắk Lắk among the D's, not after Z
    titles = [summary.rsplit(" (", 1)[0] for _, _, summary in groups]
    assert titles == sorted(titles, key=lambda t: _collation_key(t.replace("&amp;", "&").replace("&lt;", "<")
                                                                   .replace("&gt;", ">")))
    assert titles.index("Tỉnh Đắk Lắk") < titles.index("Tỉnh E04")
    # only the group holding the failed scorecard is open, and says so in its summary
    opened = [summary for _, is_open, summary in groups if is_open]
    assert len(opened) == 1 and "1 lỗi" in opened[0]
    assert "no &lt;rows&gt;" in page and "cell 2" in page
    # inside a province: its departments, then its communes, each with a count
    assert page.count("<h4>Sở, ban, ngành (17)</h4>") == PROVINCES
    # the jump list links every province group, in the same order
    jump = re.search(r'<nav class="jump"[^>]*>(.*?)</nav>', page, re.S).group(1)
    assert re.findall(r'href="#([^"]+)"', jump) == [anchor for anchor, _, _ in groups]


def test_names_are_escaped_and_the_page_needs_no_script(national_index):
    page, *_ = national_index
    assert HOSTILE not in page
    assert page.count("&lt;script&gt;alert(1)&lt;/script&gt; &amp; Co") == 3  # province: jump list, group; commune
    assert "<script" not in page.lower()


def test_page_stays_small_and_quick(national_index):
    page, _, _, cpu_seconds = national_index
    size = len(page.encode("utf-8"))
    assert size < 600_000, f"index page of {UNITS} scorecards is {size:,} bytes"  # measured 2026-11-30: 349 kB
    assert cpu_seconds < 10.0  # measured: 0.6 CPU-s at load 12 (reading the units table, 3,000 existence checks, rendering)


def test_one_province_groups_by_unit_type_open(tmp_path):
    """The Hà Nội demo: one province, so the unit types are the groups, open, without a jump list."""
    run_dir = tmp_path / "run"
    units = pd.DataFrame({"unit_id": ["P01", "S01", "C01", "C02"], "code": pd.array([1, 2, 3, 4], dtype="Int64"),
                          "name_vi": ["Hà Nội", "Sở Y tế", "Xã Đông Anh", "Xã Ba Vì"], "name_en": ["HN", "H", "D", "B"],
                          "unit_type": ["province", "department", "commune", "commune"],
                          "parent_id": [None, "P01", "P01", "P01"]})
    schemas.write_result(run_dir / "results", "units", units)
    rows = [NotebookRun("fanout", "card", "Card", tmp_path / "c.ipynb", tmp_path / "n.ipynb", None, OK, 1.0,
                        unit_id=u, unit_type=t, unit_name=n, section="Phiếu")
            for u, t, n in zip(units["unit_id"][1:], units["unit_type"][1:], units["name_vi"][1:])]
    page = runner.write_index(RunSummary(run_dir, run_dir / "index.html", rows, 1.0,
                                         load_settings(year=2025, lang="vi")), "vi").read_text(encoding="utf-8")
    groups = re.findall(r'<details class="units" id="([^"]+)" open>\s*<summary>([^<]*)</summary>', page)
    assert [summary for _, summary in groups] == ["Sở, ban, ngành (1)", "Xã (2)"]
    assert '<nav class="jump"' not in page
    assert page.index("Xã Ba Vì") < page.index("Xã Đông Anh")  # by name, Đ with the D's
