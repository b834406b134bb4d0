"""The checks of the published reports (``tests/publishing_checks.py``) can fail: each finds what it looks for.

The checks themselves run on the notebook tier's chain (``tests/test_notebooks.py``).
"""

from __future__ import annotations

import pandas as pd

from publishing_checks import PAYLOAD, error_outputs, find_personal_data, live_scripts


# --------------------------------------------------------------------------------------------
# tests of the helpers themselves (they must be able to fail)
# --------------------------------------------------------------------------------------------


def test_live_scripts_detects_payloads_and_ignores_escaped_text():
    assert live_scripts(f"<p>{PAYLOAD}</p>")
    assert live_scripts('<p><img src=x onerror="alert(2)"></p>')
    assert live_scripts('<div onclick="alert(3)">x</div>')
    assert live_scripts("<script>\nalert(1)\n</script>")
    escaped = "<p>&lt;script&gt;alert(1)&lt;/script&gt; &lt;img src=x onerror=&quot;alert(2)&quot;&gt;</p>"
    assert live_scripts(escaped) == []
    assert live_scripts("<script>var ok = 1;</script>") == []


def test_find_personal_data_spots_a_leak(tmp_path):
    (tmp_path / "a.html").write_text("<p>Nguyễn Văn Test 0912345678</p>", encoding="utf-8")
    pd.DataFrame({"x": ["0987654321"]}).to_parquet(tmp_path / "b.parquet")
    (tmp_path / "c.csv").write_text("clean\n", encoding="utf-8")
    leaks = find_personal_data(tmp_path, {"Nguyễn Văn Test", "0987654321", "Trần Thị Khác"})
    assert sorted(leak.split(":")[0] for leak in leaks) == ["a.html", "b.parquet"]


def test_error_outputs_finds_warnings_and_tracebacks(tmp_path):
    import nbformat

    nb = nbformat.v4.new_notebook()
    clean = nbformat.v4.new_code_cell("1", outputs=[nbformat.v4.new_output("stream", name="stdout", text="ok\n")])
    warned = nbformat.v4.new_code_cell("w", outputs=[nbformat.v4.new_output("stream", name="stderr", text="Warning\n")])
    failed = nbformat.v4.new_code_cell("f", outputs=[nbformat.v4.new_output("error", ename="KeyError", evalue="'c01'",
                                                                               traceback=[])])
    nb.cells = [clean]
    nbformat.write(nb, tmp_path / "clean.ipynb")
    assert error_outputs(tmp_path / "clean.ipynb") == []
    nb.cells = [clean, warned, failed]
    nbformat.write(nb, tmp_path / "bad.ipynb")
    assert [line.split(":")[0] for line in error_outputs(tmp_path / "bad.ipynb")] == ["stderr", "error"]
