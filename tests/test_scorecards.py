"""Unit scorecards (sipas_lib.scorecards): the blocks, the SVG chart, the page, and the bulk renderer.

The notebook ``notebooks/fanout/unit_scorecard.ipynb`` and the runner's bulk renderer show the same
sections: the notebook must call every section function, and the bulk page is those blocks. The fast
tests use a hand-made scorecard; ``test_bulk_pages_*`` renders every unit of the tiny year (slow tier).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import nbformat
import numpy as np
import pandas as pd
import pytest

from sipas_lib import config, scorecards
from sipas_lib.notebook import open_stage
from sipas_lib.runner import find_online_references
from sipas_lib.stages.unit_scorecard import Scorecard

HOSTILE = '<script>alert("x")</script> & Co'
SVG_NS = "{http://www.w3.org/2000/svg}"


def _elements(estimates=(0.8563, 0.9, 0.7), peers=(0.8929, 0.85, 0.75)) -> pd.DataFrame:
    k = len(estimates)
    est = np.asarray(estimates, dtype=float)
    return pd.DataFrame({"code": [f"E{i + 1}" for i in range(k)], "estimate": est, "ci_low": est - 0.05,
                         "ci_high": np.minimum(est + 0.05, 1.0), "n": [40] * k, "peer_estimate": list(peers)})


def _card(name: str = "Phường Ba Đình", **changes) -> Scorecard:
    criteria = pd.DataFrame({"code": ["c01", "c02", "c15"], "estimate": [0.847, 0.867, 0.732],
                             "ci_low": [0.74, 0.76, 0.46], "ci_high": [0.96, 0.97, 0.90], "n": [40, 39, 9],
                             "peer_estimate": [0.89, 0.906, 0.845], "gap_to_city": [-0.042, -0.04, np.nan]})
    weakest = pd.DataFrame({"code": ["c15", "c01"], "estimate": [0.732, 0.847], "rank_in_unit": [1, 2],
                            "weakest": [True, True]})
    overall = {"unit_id": "W1", "estimate": 0.8563, "ci_low": 0.793, "ci_high": 0.919, "n": 40, "publishable": True,
               "rank": 18.0, "n_units": 19, "rank_ci_low_marginal": 3.0, "rank_ci_high_marginal": 19.0}
    values = dict(unit={"unit_id": "W1", "unit_type": "ward", "name_vi": name, "name_en": name}, overall=overall,
                  peer_overall=0.8929, change={"change": 0.0456, "significant": False}, elements=_elements(),
                  criteria=criteria, weakest=weakest,
                  sample={"issued": 49, "returned": 40, "received": 40, "accepted": 40, "quarantined": 0,
                          "response_rate": 40 / 49})
    values.update(changes)
    return Scorecard(**values)


@pytest.fixture()
def ctx(tmp_path):
    return open_stage("unit_scorecard", str(tmp_path / "run"), "", {"lang": "vi"}, {})


def test_the_notebook_shows_every_section_the_pages_show():
    nb = nbformat.read(config.FANOUT_DIR / "unit_scorecard.ipynb", as_version=4)
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    for section in scorecards.SECTIONS:
        assert f"scorecards.{section.__name__}(card, ctx)" in code, section.__name__
    assert nb.metadata["sipas"]["renderer"] == "sipas_lib.scorecards:render_scorecards"


def test_blocks_carry_the_units_figures_in_the_readers_format(ctx):
    shown = scorecards.blocks(_card(), ctx)
    text = "\n".join(b.body for b in shown)
    assert shown[0].kind == "markdown" and shown[0].body.startswith("# ") and "Phường Ba Đình" in shown[0].body
    assert "**85,63 %**" in text and "79,3–91,9 %" in text and "89,29 %" in text  # headline, Vietnamese format
    assert "**18/19**" in text and "**3–19**" in text  # rank and its marginal rank set
    assert "+4,56 điểm %" in text
    assert [b.kind for b in shown].count("svg") == 1 and [b.kind for b in shown].count("html") == 1
    # the criterion with 9 answers is flagged, its gap missing; the weakest list keeps the criterion numbers
    assert '<tr class="flagged"><td style="text-align:left">15.' in text
    assert re.search(r"^- 15\\\. ", text, re.M) and re.search(r"^- 1\\\. ", text, re.M)
    assert "40 phiếu thu về" in text and "81,6 %" in text


def test_a_unit_without_an_index_or_previous_year_says_so(ctx):
    shown = scorecards.blocks(_card(overall=None, change=None, elements=_elements()[0:0]), ctx)
    text = "\n".join(b.body for b in shown)
    assert "không có trong kết quả" in text and "Chưa có kết quả năm trước" in text
    assert not [b for b in shown if b.kind == "svg"]  # no elements, no chart


def test_the_model_based_section_only_with_a_small_area_row(ctx):
    assert scorecards.model_based(_card(), ctx) == []
    model = {"direct": np.nan, "model_estimate": 0.87, "model_ci_low": 0.813, "model_ci_high": 0.918,
             "direct_ci_low": np.nan, "direct_ci_high": np.nan, "direct_rank": np.nan, "direct_rank_ci_low": np.nan,
             "direct_rank_ci_high": np.nan, "model_rank": 41, "model_rank_ci_low": 1, "model_rank_ci_high": 51,
             "official": "direct", "estimate_type": "synthetic_no_sample"}
    text = "\n".join(b.body for b in scorecards.model_based(_card(model=model), ctx))
    assert "87,0 %" in text and "41 (1–51)" in text and "ước lượng tổng hợp" in text


def test_the_chart_is_valid_svg_with_titles_labels_n_and_escaped_names():
    svg = scorecards.element_chart_svg(
        _elements(estimates=(0.8563, np.nan, 1.0), peers=(0.89, 0.85, np.nan)).assign(ci_high=[0.9, np.nan, 1 - 2e-16]),
        lang="vi", level_text="95 %", unit_name=HOSTILE, peer_name="Cùng loại: các phường",
        element_names={"E1": "Tiếp cận dịch vụ"}, n=1250, title="Các yếu tố", description="Biểu đồ")
    root = ET.fromstring(svg)  # well-formed XML
    assert root.tag == f"{SVG_NS}svg" and root.get("role") == "img"
    assert root.find(f"{SVG_NS}title").text == "Các yếu tố (n = 1.250)"
    texts = [t.text for t in root.iter(f"{SVG_NS}text")]
    assert {"0", "20", "40", "60", "80", "100"} <= set(texts)
    assert "Tỷ lệ hài lòng (%)" in texts and "Yếu tố" in texts  # both axis labels (the x axis names its unit)
    assert "Tiếp cận dịch vụ" in texts and "E2" in texts  # element names, the code when unnamed
    assert any(HOSTILE[:20] in t for t in texts) and "<script" not in svg  # escaped, shown as text
    dark = [r for r in root.iter(f"{SVG_NS}rect") if r.get("fill") == "#1a1a1a" and r.get("width") != "16"]
    hatched = [r for r in root.iter(f"{SVG_NS}rect") if r.get("fill") == "url(#sipas-hatch)" and r.get("width") != "16"]
    assert len(dark) == 2 and len(hatched) == 2  # a missing estimate draws no bar
    desc = root.find(f"{SVG_NS}desc").text
    assert desc.startswith("Biểu đồ") and "85,6 %" in desc


def test_the_page_is_offline_escaped_and_in_the_readers_language(ctx):
    page = scorecards.page(_card(name=HOSTILE), ctx, f"Phiếu điểm — {HOSTILE}")
    assert find_online_references(page) == [] and "<script" not in page.lower()
    assert '<html lang="vi">' in page and "&lt;script&gt;alert(" in page
    assert page.count("<svg") == 1 and "<h1>" in page and "<ol" not in page


def test_render_scorecards_fails_every_page_with_the_missing_table(tmp_path):
    pages = [{"unit_id": u, "html": str(tmp_path / "html" / f"{u}.html"), "title": u} for u in ("A", "B")]
    out = scorecards.render_scorecards(str(tmp_path / "run"), "", {}, {}, pages)
    assert [r["status"] for r in out] == ["failed", "failed"]
    assert all("units.parquet" in r["evalue"] for r in out)
    assert not (tmp_path / "html").exists()


def test_bulk_pages_for_every_unit_of_the_tiny_year(tiny_demo, tmp_path):
    """Every unit's page from the stages' own tables: written, offline, one chart, its own figures."""
    from sipas_lib import schemas
    from sipas_lib.settings import load_settings
    from sipas_lib.stages import index_ranking, intake_quality, unit_scorecard, weighting

    settings = load_settings(overrides=["index_ranking.n_draws=200"])
    paths = config.RunPaths(tiny_demo, (tmp_path / "run").resolve()).ensure()
    settings.save(paths.run_dir)
    for stage in (intake_quality, weighting, index_ranking):
        stage.run(paths, settings)
    ranks = schemas.read_result(paths, "ranks")
    pages = [{"unit_id": u, "html": str(tmp_path / "html" / f"{u}.html"), "title": f"T {u}"} for u in ranks["unit_id"]]
    pages.append({"unit_id": "NOPE", "html": str(tmp_path / "html" / "NOPE.html"), "title": "x"})
    out = {r["unit_id"]: r for r in scorecards.render_scorecards(
        str(paths.run_dir), str(tiny_demo), dict(settings.common), {}, pages)}
    assert out.pop("NOPE")["status"] == "failed"
    assert all(r["status"] == "ok" and r["seconds"] < 2 for r in out.values()), out
    ctx = open_stage("unit_scorecard", str(paths.run_dir), str(tiny_demo), dict(settings.common), {})
    for unit in ranks["unit_id"]:
        page = (tmp_path / "html" / f"{unit}.html").read_text(encoding="utf-8")
        assert find_online_references(page) == [] and page.count("<svg") == 1
        card = unit_scorecard.run(paths, settings, unit)
        assert ctx.pct(card.overall["estimate"], 2) in page  # the unit's own headline figure
