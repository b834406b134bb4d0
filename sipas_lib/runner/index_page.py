"""``reports/<run>/index.html``: every report with its status and run time, and the run's configuration."""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Mapping

from sipas_lib import config
from sipas_lib.runner.export import TEMPLATES_DIR
from sipas_lib.runner.records import FAILED, OK, SKIPPED, NotebookRun, RunSummary

_LABELS = {
    "vi": {
        "title": "Báo cáo SIPAS {year} — lượt chạy {run}",
        "stages": "Các bước phân tích",
        "scorecards": "Phiếu điểm theo đơn vị",
        "admin": "Báo cáo hành chính (tháng, năm)",
        "report": "Báo cáo",
        "unit": "Đơn vị",
        "status": "Trạng thái",
        "time": "Thời gian chạy",
        OK: "hoàn thành",
        FAILED: "lỗi",
        SKIPPED: "bỏ qua",
        "generated": "Tạo lúc",
        "total": "Tổng thời gian",
        "summary": "{ok} hoàn thành, {failed} lỗi, {skipped} bỏ qua",
        "earlier": "bản của lượt chạy trước",
        "reused": "dùng lại kết quả đã tính (dữ liệu, cấu hình và phần mềm không đổi)",
        "none": "Không có báo cáo nào.",
        "settings": "Cấu hình của lượt chạy",
        "settings_note": "Các giá trị đã dùng, lưu trong tệp {file} của thư mục này. Nguồn: {sources}.",
        "setting": "Tham số",
        "value": "Giá trị",
        "jump": "Đến tỉnh, thành phố",
        "find_hint": "Mở một tỉnh, thành phố để xem phiếu điểm của các đơn vị, hoặc tìm tên hay mã đơn vị "
                     "bằng chức năng tìm trong trang của trình duyệt (Ctrl+F).",
    },
    "en": {
        "title": "SIPAS {year} reports — run {run}",
        "stages": "Analysis stages",
        "scorecards": "Unit scorecards",
        "admin": "Administrative reports (monthly, annual)",
        "report": "Report",
        "unit": "Unit",
        "status": "Status",
        "time": "Run time",
        OK: "ok",
        FAILED: "failed",
        SKIPPED: "skipped",
        "generated": "Generated",
        "total": "Total time",
        "summary": "{ok} ok, {failed} failed, {skipped} skipped",
        "earlier": "from an earlier run",
        "reused": "reused from an earlier run (same data, settings and software)",
        "none": "No reports.",
        "settings": "Configuration of this run",
        "settings_note": "The values used, saved as {file} in this folder. Sources: {sources}.",
        "setting": "Setting",
        "value": "Value",
        "jump": "Go to province",
        "find_hint": "Open a province to see its units' scorecards, or find a unit's name or id with the "
                     "browser's find in page (Ctrl+F).",
    },
}


def _seconds(value: float, lang: str) -> str:
    from sipas_lib.reporting import fmt_num

    return f"{fmt_num(value, 1, lang=lang)} s"


def _unit_type_title(unit_type: str, lang: str) -> str:
    """The group title of a unit type (``Sở, ban, ngành``), or the type itself when no text names it."""
    from sipas_lib.reporting import LABELS

    return LABELS[unit_type][lang] if unit_type in LABELS else unit_type


#: A fan-out template with more units than this shows its groups closed (``<details>`` without
#: ``open``): ~4,000 national scorecards would otherwise make a page one scrolls for minutes. The
#: demo's ~150 scorecards stay open, as a list one reads through.
OPEN_GROUPS_UP_TO = 300


def _collation_key(text: str) -> tuple[str, str]:
    """Sort key of a Vietnamese name: letters without their diacritics first (``Đống Đa`` beside
    ``Dương``, not after ``Z``), the exact text to break ties."""
    import unicodedata

    bare = "".join(c for c in unicodedata.normalize("NFD", text) if not unicodedata.combining(c))
    return bare.replace("Đ", "D").replace("đ", "d").casefold(), text


def _anchor(*parts: str) -> str:
    """An HTML id from ``parts`` (template, province, unit type): letters, digits, ``-`` and ``_`` only."""
    import re

    return re.sub(r"[^A-Za-z0-9_-]+", "_", "-".join(parts))


def _unit_provinces(run_dir: Path, lang: str) -> dict[str, str]:
    """``unit_id -> province name`` (in ``lang``) from the run's units registry
    (``results/units.parquet``, :func:`sipas_lib.units.province_of`); empty without the table."""
    from sipas_lib import schemas
    from sipas_lib.units import province_of

    try:
        units = schemas.read_result(run_dir / "results", "units")
    except schemas.ContractError:  # no registry (a run stopped before intake) or a broken one: the stage
        return {}  # that wrote it failed and says why on this page; the units are then grouped by type
    province = province_of(units).dropna()
    names = units.assign(unit_id=units["unit_id"].astype(str)).set_index("unit_id")[f"name_{lang}"].astype(str)
    return province.map(names).fillna(province).to_dict()


def _fanout_section(name: str, rows: list[NotebookRun], lang: str, provinces: Mapping[str, str]) -> dict:
    """One fan-out template's units, grouped for reading.

    Units of one province (a city's survey): one group per unit type. Units of several provinces
    (the national year: 578 departments and 3,321 communes): one group per province, A–Z, with a
    jump list, each group holding its unit types; units without a province (the provinces
    themselves) form a group of their own type, first. Within a group, units by name. Every group
    carries its count and its number of failed reports; groups are open up to
    :data:`OPEN_GROUPS_UP_TO` units in the template, and a group with a failure is always open.
    """
    from sipas_lib.units import UNIT_TYPES

    def by_type(members: list[NotebookRun]) -> list[dict]:
        present = {r.unit_type or "" for r in members}
        types = [t for t in UNIT_TYPES if t in present] + sorted(present - set(UNIT_TYPES))
        return [{"title": _unit_type_title(t, lang) if t else None, "type": t,
                 "rows": sorted((r for r in members if (r.unit_type or "") == t),
                                key=lambda r: _collation_key(r.unit_name or r.unit_id or ""))} for t in types]

    def group(title: str, anchor: str, members: list[NotebookRun], subgroups: list[dict]) -> dict:
        failed = sum(r.status == FAILED for r in members)
        return {"title": title, "anchor": anchor, "count": len(members), "failed": failed,
                "open": failed > 0 or len(rows) <= OPEN_GROUPS_UP_TO, "subgroups": subgroups}

    def type_groups(members: list[NotebookRun]) -> list[dict]:  # each unit type a group of its own
        return [group(sub["title"] or "", _anchor(name, sub["type"] or "other"), sub["rows"], [{**sub, "title": None}])
                for sub in by_type(members)]

    by_province: dict[str, list[NotebookRun]] = {}
    for r in rows:
        by_province.setdefault(provinces.get(r.unit_id or "", ""), []).append(r)
    named = sorted((p for p in by_province if p), key=_collation_key)
    title = rows[0].section or rows[0].title
    if len(named) <= 1:  # one province (a city's survey): the unit types are the groups
        return {"title": title, "fanout": True, "jump": [], "groups": type_groups(rows)}
    groups = type_groups(by_province.get("", []))  # units in no province (the provinces themselves) first
    groups += [group(p, _anchor(name, "p", p), by_province[p], by_type(by_province[p])) for p in named]
    return {"title": title, "fanout": True, "groups": groups,
            "jump": [(g["anchor"], g["title"], g["count"]) for g in groups]}


def _index_sections(notebooks: Iterable[NotebookRun], labels: dict, lang: str,
                    provinces: Mapping[str, str] | None = None) -> list[dict]:
    """Stages, then each fan-out template (scorecards first; :func:`_fanout_section`: by unit
    type, or by province when the units span several), then the administrative reports.
    ``provinces`` maps a unit id to its province's name (:func:`_unit_provinces`)."""
    notebooks = list(notebooks)
    # last year's results (kind "previous") come first among the stages: the index stage reads them
    stage_rows = [n for n in notebooks if n.kind in ("previous", "stage") and n.section != "admin"]
    admin_rows = [n for n in notebooks if n.kind == "stage" and n.section == "admin"]
    sections = [{"title": labels["stages"], "groups": [{"title": None, "rows": stage_rows}]}]
    templates: list[str] = []
    for nb in notebooks:
        if nb.kind == "fanout" and nb.name not in templates:
            templates.append(nb.name)
    for name in templates:
        rows = [n for n in notebooks if n.kind == "fanout" and n.name == name]
        if len(rows) == 1 and not rows[0].unit_id:  # the template's placeholder: skipped or failed before its units
            sections.append({"title": rows[0].section or rows[0].title, "groups": [{"title": None, "rows": rows}]})
            continue
        sections.append(_fanout_section(name, rows, lang, provinces or {}))
    if admin_rows:
        sections.append({"title": labels["admin"], "groups": [{"title": None, "rows": admin_rows}]})
    return sections


def _show(value: Any) -> str:
    """A setting's value as a reader types it in a configuration file (``true``, ``0.95``, ``""``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value if value else '""'
    return str(value)


def settings_tables(summary: RunSummary) -> list[dict]:
    """``[{"section": "weighting", "rows": [("trim_ratio", "3.5"), …]}, …]``; sections without settings left out."""
    if summary.settings is None:
        return []
    return [
        {"section": name, "rows": [(key, _show(value)) for key, value in values.items()]}
        for name, values in summary.settings.sections.items()
        if values
    ]


def write_index(summary: RunSummary, lang: str | None = None, download_problems: Iterable[str] = ()) -> Path:
    """Render ``index.html`` for a run: every report with its status and run time, and the
    effective configuration (one small table per section), and the downloads of ``downloads/``
    (SPSS, Stata, Excel, PDF, XLSForm; :func:`sipas_lib.exports.list_downloads`) with
    ``download_problems`` (what could not be written) under them.

    The per-unit reports are grouped for reading at any size (:func:`_fanout_section`): by unit
    type for a city's survey, by province (A–Z, closed ``<details>`` with counts and a jump list)
    when the units span several provinces; the page needs no JavaScript.

    Links are relative to the run folder, so the folder can be zipped and opened anywhere.
    All text (unit names, titles, error messages, setting values) is HTML-escaped by the template engine.
    """
    import jinja2

    from sipas_lib.settings import RUN_SETTINGS_FILE

    settings = summary.settings
    lang = lang or (settings.lang if settings is not None else config.DEFAULT_LANG)
    labels = _LABELS.get(lang, _LABELS["en"])
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES_DIR)),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    template = env.get_template("index.html.j2")
    run_dir = Path(summary.run_dir)

    def href(nb: NotebookRun) -> str | None:
        if nb.html is None or not Path(nb.html).exists():
            return None
        return Path(os.path.relpath(nb.html, run_dir)).as_posix()

    counts = summary.counts()
    page = template.render(
        lang=lang,
        labels=labels,
        title=labels["title"].format(year=settings.year if settings is not None else "", run=run_dir.name),
        sections=_index_sections(summary.notebooks, labels, lang, _unit_provinces(run_dir, lang)),
        href=href,
        seconds=lambda s: _seconds(s, lang),
        summary_line=labels["summary"].format(**counts),
        total=_seconds(summary.seconds, lang),
        generated=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        settings_tables=settings_tables(summary),
        settings_note=labels["settings_note"].format(
            file=RUN_SETTINGS_FILE, sources="; ".join(settings.sources) if settings is not None else ""),
        statuses=(OK, FAILED, SKIPPED),
        downloads=_downloads(run_dir, lang),
        download_problems=list(download_problems),
    )
    summary.index.parent.mkdir(parents=True, exist_ok=True)
    summary.index.write_text(page, encoding="utf-8")
    return summary.index


def _downloads(run_dir: Path, lang: str) -> dict:
    """The downloads block of the index page: title, intro, groups of files with sizes, texts."""
    from sipas_lib.exports import DOWNLOADS_DIR, list_downloads
    from sipas_lib.reporting import fmt_num
    from sipas_lib.texts import load_texts

    texts = {key: value[lang] for key, value in load_texts("exports").items() if key.startswith("dl_")}
    groups = list_downloads(run_dir, lang)
    for group in groups:
        for entry in group["files"]:
            size = entry["bytes"]
            entry["size"] = (f"{fmt_num(size / 1e6, 1, lang=lang)} MB" if size >= 1e6 else
                             f"{fmt_num(max(size / 1e3, 0.1), 1, lang=lang)} kB")
    return {"title": texts["dl_title"], "intro": texts["dl_intro"].format(folder=f"{DOWNLOADS_DIR}/"),
            "problems_title": texts["dl_problems"], "groups": groups}
