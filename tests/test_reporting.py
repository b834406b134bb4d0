"""Tests of sipas_lib.reporting: number formats, labels, escaping, flags, charts, result reading.

Reference values are closed forms (the formatting rules written beside each assertion).
"""

from __future__ import annotations

import re
import string

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from sipas_lib import reporting as R  # noqa: E402

PAYLOAD = "<script>alert(1)</script>"


# ---------------------------------------------------------------------------------------------
# numbers
# ---------------------------------------------------------------------------------------------

def test_fmt_num_and_pct_by_language():
    # Vietnamese: "." thousands, "," decimals; English the reverse
    assert R.fmt_num(1250) == "1.250" and R.fmt_num(1250, lang="en") == "1,250"
    assert R.fmt_num(1234567.891, 2) == "1.234.567,89"
    assert R.fmt_pct(0.8515) == "85,15 %" and R.fmt_pct(0.8515, lang="en") == "85.15 %"
    assert R.fmt_pct(85.15, 1, scale=1) == "85,2 %"
    for missing in (None, float("nan"), pd.NA, np.nan):
        assert R.fmt_num(missing) == "–" and R.fmt_pct(missing) == "–"
    with pytest.raises(ValueError, match="unknown language"):
        R.fmt_num(1, lang="fr")


def test_fmt_range():
    assert R.fmt_range(1, 6) == "1–6" and R.fmt_range(np.nan, 3) == "–" and R.fmt_range(pd.NA, None) == "–"


def test_guessing_helpers_are_gone():
    """Results are read through their contracts and shares are 0–1 by contract (issue 10, defect 6)."""
    for name in ("first_column", "share_scale", "read_result", "city_rows", "method_text", "publishable_flags",
                 "weakest_criteria"):
        assert not hasattr(R, name), name


def test_interval_labels_carry_the_level():
    """No "95 %" baked into a shared label: the run's level fills it (issue 10, defect 2)."""
    assert R.label("ci_level", "vi", level="90 %") == "KTC 90 %"
    assert R.label("rank_set_sim", "en", level="90 %") == "90 % rank set (simultaneous)"
    for key, entry in R.LABELS.items():
        assert "95 %" not in entry["vi"] + entry["en"], key


def test_fmt_pp_ci_rank():
    assert R.fmt_pp(0.0125) == "+1,25 điểm %"
    assert R.fmt_pp(-0.0125, 1, lang="en") == "−1.2 pp"  # 1.25 rounds half to even
    assert R.fmt_pp(0.0) == "±0,00 điểm %"
    assert R.fmt_ci(0.8312, 0.8768) == "83,1–87,7 %"
    assert R.fmt_ci(None, 0.8) == "–"
    assert R.fmt_rank_set(3, 1, 6) == "3 (1–6)" and R.fmt_rank_set(3, 1, 6, 20) == "3 (1–6) / 20"
    assert R.fmt_rank_set(np.nan, 1, 2) == "–" and R.fmt_rank_set(4, None, None) == "4"


# ---------------------------------------------------------------------------------------------
# escaping
# ---------------------------------------------------------------------------------------------

def test_esc_and_md_escape():
    assert R.esc(PAYLOAD) == "&lt;script&gt;alert(1)&lt;/script&gt;"
    assert R.esc(None) == "" and R.esc('a"b') == "a&quot;b"
    md = R.md_escape("[click](javascript:alert(1)) *x* # _y_\nz")
    assert md == r"\[click\]\(javascript:alert\(1\)\) \*x\* \# \_y\_ z"


@pytest.mark.parametrize("text", [PAYLOAD, '<img src=x onerror="alert(2)">', "[x](javascript:alert(3))",
                                  "<a href='javascript:alert(4)'>a</a>", "&lt;script&gt;", "O'Brien & \"Co\""])
def test_escaped_markdown_renders_as_text(text):
    """Rendered by nbconvert's own Markdown filter (what the HTML export uses): no tag, no link."""
    from nbconvert.filters.markdown_mistune import markdown2html_mistune

    html = markdown2html_mistune(R.narrate("unit_not_found", "en", unit=text))
    assert "<script" not in html and "<img" not in html and "<a " not in html
    # the visible text is the original string
    from html.parser import HTMLParser

    class Text(HTMLParser):
        def __init__(self):
            super().__init__(convert_charrefs=True)
            self.parts = []

        def handle_data(self, data):
            self.parts.append(data)

    p = Text()
    p.feed(html)
    assert text in "".join(p.parts)


def test_narrate_escapes_values_but_not_raw():
    out = R.narrate("unit_not_found", "vi", unit=PAYLOAD)
    assert "<script>" not in out and "&lt;script&gt;" in out
    raw = R.narrate("unit_not_found", "vi", unit=R.Raw("**S01**"))
    assert "**S01**" in raw


def test_html_table_escapes_everything_and_flags():
    df = pd.DataFrame({PAYLOAD: ["<b>x</b>", "y"], "v": ["85,15 %", "1.250"], "_f": [True, False]})
    out = R.html_table(df, caption=PAYLOAD, flag_column="_f", row_classes=["section", ""])
    assert "<script>" not in out and "<b>" not in out
    assert out.count("&lt;script&gt;") == 2  # header and caption
    assert '<tr class="flagged section">' in out and "_f" not in out
    assert 'text-align:right' in out  # the numeric column
    with pytest.raises(ValueError, match="flag column"):
        R.html_table(df, flag_column="nope")


# ---------------------------------------------------------------------------------------------
# publishability
# ---------------------------------------------------------------------------------------------

# ---------------------------------------------------------------------------------------------
# labels
# ---------------------------------------------------------------------------------------------

def _fields(text):
    return {f for _, f, _, _ in string.Formatter().parse(text) if f}


def test_every_label_has_both_languages_with_the_same_placeholders():
    for key, entry in R.LABELS.items():
        assert set(entry) >= {"vi", "en"}, key
        assert entry["vi"].strip() and entry["en"].strip(), key
        assert _fields(entry["vi"]) == _fields(entry["en"]), key


def test_label_and_register():
    assert R.label("department", "en") == "Departments"
    assert R.label("flag_too_few", "vi", min_n=30) == "dưới 30 phiếu – không xếp hạng"
    with pytest.raises(ValueError, match="no report label"):
        R.label("nope")
    with pytest.raises(ValueError, match="en"):
        R.register_labels({"x_test": {"vi": "x"}})
    R.register_labels({"x_test": {"vi": "x", "en": "y"}})
    assert R.label("x_test", "en") == "y"
    del R.LABELS["x_test"]


def test_not_available_sentence():
    assert "not available in this run" in R.not_available("Ranks", "en")
    assert "không có trong lần chạy này" in R.not_available("Hạng", "vi")


def test_unit_name_fallback():
    units = pd.DataFrame({"unit_id": ["S01", "S02"], "name_vi": ["Sở Nội vụ", ""], "name_en": ["Home Affairs", None]})
    assert R.unit_name(units, "S01") == "Sở Nội vụ" and R.unit_name(units, "S01", "en") == "Home Affairs"
    assert R.unit_name(units, "S02", "en") == "S02" and R.unit_name(units, "S99") == "S99"
    assert R.unit_name(None, "S01") == "S01"


def test_heading_and_toc():
    h = R.heading(2, "sec-1", PAYLOAD)
    assert h.startswith('<a id="sec-1"></a>') and "## &lt;script&gt;" in h
    with pytest.raises(ValueError, match="anchor"):
        R.heading(2, 'x" onclick="y', "t")
    toc = R.toc([("a", "One"), ("b", "Two")], "en")
    assert "1. [One](#a)" in toc and "2. [Two](#b)" in toc and toc.startswith("**Contents**")


def test_item_texts_and_shorten():
    texts = R.item_texts("vi", "district")
    assert texts["c01"].startswith("Trụ sở cơ quan") and texts["E1"] == "Tiếp cận dịch vụ"
    assert R.item_texts("en", "department")["E3"] == "Civil servants"
    s = R.shorten("một hai ba bốn năm sáu bảy", 12)
    assert s.endswith("…") and len(s) <= 12
    assert R.shorten("ngắn", 12) == "ngắn"


# ---------------------------------------------------------------------------------------------
# result tables
# ---------------------------------------------------------------------------------------------

# ---------------------------------------------------------------------------------------------
# charts
# ---------------------------------------------------------------------------------------------

def _luminance(hex_colour):
    r, g, b = (int(hex_colour[i:i + 2], 16) / 255 for i in (1, 3, 5))
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def test_chart_style_is_greyscale_readable():
    style = R.chart_style()
    assert matplotlib.rcParams["text.parse_math"] is False
    lum = sorted(_luminance(c) for c in R.GREYS)
    assert min(np.diff(lum)) > 0.15  # neighbouring greys differ clearly when printed
    cycle = style["axes.prop_cycle"].by_key()
    assert len(set(cycle["marker"])) == len(cycle["marker"])  # markers carry the distinction too


def test_finish_chart_puts_title_n_and_labels():
    R.chart_style()
    fig, ax = plt.subplots()
    ax.plot([1, 2], [3, 4])
    R.finish_chart(ax, title="Tỷ lệ $x$", xlabel="Năm", ylabel="Tỷ lệ (%)", n=1250, lang="vi", source="Nguồn: x")
    assert ax.get_title(loc="left") == "Tỷ lệ $x$ (n = 1.250)"
    assert ax.get_xlabel() == "Năm" and ax.get_ylabel() == "Tỷ lệ (%)"
    fig.canvas.draw()  # "$" in a label must not be parsed as mathtext
    with pytest.raises(ValueError, match="ylabel"):
        R.finish_chart(ax, title="t", xlabel="x", ylabel=" ")
    R.finish_chart(ax, title="một tiêu đề rất dài " * 8, xlabel="x", ylabel="y")
    assert "\n" in ax.get_title(loc="left")  # a long title is wrapped to the figure's width
    R.pct_axis(ax, "y", "vi", 1)
    assert ax.yaxis.get_major_formatter()(85.5, 0) == "85,5"
    plt.close(fig)


def test_show_helpers_display_escaped_objects(monkeypatch):
    import IPython.display as ipd

    shown = []
    monkeypatch.setattr(ipd, "display", lambda obj, raw=False: shown.append(obj))
    R.show("**x**")
    R.show_html("<p>y</p>")
    R.show_table(pd.DataFrame({"a": [PAYLOAD]}), caption="cap")
    assert isinstance(shown[0], ipd.Markdown) and shown[0].data == "**x**"
    assert isinstance(shown[1], ipd.HTML) and shown[1].data == "<p>y</p>"
    assert "&lt;script&gt;" in shown[2].data and "<script>" not in shown[2].data
    from matplotlib.figure import Figure

    fig = Figure(figsize=(2, 1))
    fig.add_subplot().plot([1, 2])
    R.show_figure(fig)
    assert list(shown[3]) == ["image/svg+xml"]  # vector, also in the PDF
    assert shown[3]["image/svg+xml"].startswith("<svg") and shown[3]["image/svg+xml"].endswith("</svg>\n")


def test_show_figure_writes_the_same_svg_for_the_same_chart(monkeypatch):
    """No creation date and stable ids (``svg.hashsalt``): a re-run writes the same page."""
    import IPython.display as ipd

    from sipas_lib import charts

    shown = []
    monkeypatch.setattr(ipd, "display", lambda obj, raw=False: shown.append((obj, raw)))
    points = pd.DataFrame({"unit_id": ["S01", "S02"], "estimate": [0.8, 0.9], "ci_low": [0.7, 0.85],
                           "ci_high": [0.88, 0.95], "n": [40, 50]})
    for _ in range(2):
        R.show_figure(charts.caterpillar(points, lang="vi", level=0.95, names={"S01": PAYLOAD}))
    (first, raw), (second, _) = shown
    assert raw and first == second
    svg = first["image/svg+xml"]
    assert "<dc:date>" not in svg and "<?xml" not in svg and svg.count("<svg") == 1
    assert "<script" not in svg  # a unit name is drawn as glyph outlines, never written as markup


@pytest.mark.parametrize("name", ["annual_report", "unit_scorecard", "methodology"])
def test_report_texts_use_the_level_and_match_placeholders(name):
    from sipas_lib.texts import load_texts

    for key, entry in load_texts(name).items():
        assert "95 %" not in entry["vi"].replace("từ {low} đến {high}", "") + entry["en"], f"{name}.{key}"
        fields = [{f for _, f, _, _ in string.Formatter().parse(entry[lang]) if f} for lang in ("vi", "en")]
        assert fields[0] == fields[1], f"{name}.{key}: placeholders differ between vi and en"
