"""The run's graph (sipas_lib.runner.schedule): what each stage needs, and the workers that follow it.

The needs table is checked against the source: every result table a stage module or its notebook
names, written by another stage, must come from a stage it needs (directly or down the chain), so
two stages that run side by side never read each other's half-written tables. The worker pool is
tested with tasks that need no kernel (fast).
"""

from __future__ import annotations

import ast
import threading
import time
from pathlib import Path

import nbformat
import pytest

from sipas_lib import config, schemas
from sipas_lib.runner import schedule
from sipas_lib.runner.records import FAILED, OK, SKIPPED
from sipas_lib.runner.schedule import PREVIOUS_YEAR, STAGE_NEEDS, Task, critical_weights, order_unknown, run_tasks
from sipas_lib.stages import STAGE_OF_NOTEBOOK

STAGES_DIR = config.PACKAGE_DIR / "stages"


def _read_names(source: str) -> set[str]:
    """String arguments of every call to a reader (``read_result``, ``read_cached``, ``_read`` …) in
    ``source``, and ``design.json`` where the saved design is loaded (``load_design``/``load_design_spec``)."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        func = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
        if "read" in func:
            names |= {a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)}
        if func.startswith("load_design"):
            names.add("design.json")
    return names


def _producers() -> dict[str, str]:
    """Result table -> the stage that writes it (the contracts)."""
    schemas.stage_outputs("weighting")  # loads every contract
    return {name: c.stage for name, c in schemas.REGISTRY.items() if c.stage != "input" and not c.personal}


def _reads(stage: str) -> set[str]:
    """Result tables a stage's module and its notebook read by name, and ``design.json``."""
    names = _read_names((STAGES_DIR / f"{stage}.py").read_text(encoding="utf-8"))
    notebook = next((config.NOTEBOOKS_DIR / f"{nb}.ipynb" for nb, st in STAGE_OF_NOTEBOOK.items() if st == stage), None)
    for path in [notebook, config.FANOUT_DIR / f"{stage}.ipynb"]:
        if path is not None and path.exists():
            nb = nbformat.read(path, as_version=4)
            names |= _read_names("\n".join(c.source for c in nb.cells if c.cell_type == "code"
                                            and "parameters" not in c.metadata.get("tags", [])))
    return names


def _closure(stage: str) -> set[str]:
    seen, todo = set(), list(STAGE_NEEDS.get(stage, ()))
    while todo:
        need = todo.pop()
        if need not in seen:
            seen.add(need)
            todo.extend(STAGE_NEEDS.get(need, ()))
    return seen


@pytest.mark.parametrize("stage", sorted(STAGE_NEEDS))
def test_every_table_a_stage_reads_comes_from_a_stage_it_needs(stage):
    producers = _producers()
    extra = {"design.json": "weighting"}  # the saved design (stages.weighting.load_design_spec)
    needed = _closure(stage) | {stage}
    number = {st: int(nb[:2]) for nb, st in STAGE_OF_NOTEBOOK.items() if nb[:2].isdigit()}
    for name in _reads(stage):
        writer = producers.get(name) or extra.get(name)
        if writer is None or writer == stage:
            continue
        if writer not in STAGE_NEEDS and number.get(writer, 99) < number.get(stage, 100):
            continue  # a stage the table does not know runs before every later stage (order_unknown)
        assert writer in needed, f"stage {stage} names the table {name!r} of stage {writer}, which it does not need"


def test_the_needs_name_known_stages_and_form_no_cycle():
    for stage, needs in STAGE_NEEDS.items():
        assert stage in set(STAGE_OF_NOTEBOOK.values()), stage
        assert set(needs) <= set(STAGE_NEEDS) | {PREVIOUS_YEAR}, stage
        assert stage not in _closure(stage), f"{stage} needs itself"
    # the index stage is the only reader of last year's results; the scorecards need the index stage
    assert [s for s, needs in STAGE_NEEDS.items() if PREVIOUS_YEAR in needs] == ["index_ranking"]
    assert "index_ranking" in STAGE_NEEDS["unit_scorecard"]


def test_stages_the_table_does_not_know_keep_the_sequential_order():
    # 25 is unknown: it waits for 10 and 20, and 30 and 50 wait for it
    numbers = [10, 20, 25, 30, 50]
    names = {10: "a", 20: "b", 25: "u", 30: "c", 50: "d"}
    out = order_unknown(numbers, {10: set(), 20: set(), 25: None, 30: {"b"}, 50: {"c"}}, names)
    assert out == {10: set(), 20: set(), 25: {"a", "b"}, 30: {"b", "u"}, 50: {"c", "u"}}


def test_declared_needs_prefers_the_notebook_metadata():
    assert schedule.declared_needs("weighting", None) == {"intake_quality", "integrity"}
    assert schedule.declared_needs("weighting", ["sampling_design"]) == {"sampling_design"}
    assert schedule.declared_needs(None, None) is None


def test_critical_weights_count_the_heaviest_chain_after_a_task():
    def t(name, needs, weight):
        return Task(name, frozenset(needs), lambda k: (True, []), weight=weight)

    weights = critical_weights([t("a", [], 1), t("b", ["a"], 5), t("c", ["a"], 2), t("d", ["b", "c"], 1)])
    assert weights == {"a": 7, "b": 6, "c": 3, "d": 1}


def _task(name, needs=(), log=None, ok=True, new=(), delay=0.0, always=False, weight=1.0):
    def work(kernel):
        assert kernel is None
        log.append(("start", name))
        time.sleep(delay)
        log.append(("end", name))
        return ok, list(new)

    skipped = []
    task = Task(name, frozenset(needs), work, skip=skipped.append, kernel=False, always=always, weight=weight)
    task.skipped = skipped
    return task


def test_run_tasks_follows_the_needs_skips_down_the_chain_and_runs_always_tasks(tmp_path):
    log: list = []
    tasks = [
        _task("intake", log=log, delay=0.05),
        _task("weights", ["intake"], log=log, ok=False),
        _task("index", ["weights"], log=log),
        _task("report", ["index", "intake"], log=log),
        _task("monthly", log=log),
        _task("downloads", ["weights", "monthly"], log=log, always=True),
        _task("elsewhere", ["not-in-this-run"], log=log),  # a need that names no task is met
    ]
    run_tasks(tasks, 2, log_dir=tmp_path, cwd=tmp_path)
    status = {t.name: t.status for t in tasks}
    assert status == {"intake": OK, "weights": FAILED, "index": SKIPPED, "report": SKIPPED, "monthly": OK,
                      "downloads": OK, "elsewhere": OK}
    assert tasks[2].skipped == ["weights failed"] and tasks[3].skipped == ["index skipped"]
    order = [name for event, name in log if event == "start"]
    assert order.index("weights") > order.index("intake")
    assert log.index(("start", "downloads")) > log.index(("end", "weights"))


def test_run_tasks_uses_the_workers_side_by_side_and_takes_tasks_added_on_the_way(tmp_path):
    log: list = []
    seen_threads = set()
    later = [_task(f"unit{i}", log=log, delay=0.05) for i in range(4)]

    def plan(kernel):
        seen_threads.add(threading.current_thread().name)
        return True, later

    tasks = [_task("long", log=log, delay=0.3, weight=10.0), Task("plan", frozenset(), plan, kernel=False, weight=0.0)]
    started = time.perf_counter()
    run_tasks(tasks, 2, log_dir=tmp_path, cwd=tmp_path)
    took = time.perf_counter() - started
    assert all(t.status == OK for t in tasks + later)
    assert log[0] == ("start", "long")  # the heaviest chain starts first
    # the added units ran on the other worker while "long" was running
    assert log.index(("end", "unit3")) < log.index(("end", "long"))
    assert took < 0.3 + 4 * 0.05


def test_a_cycle_of_needs_fails_its_tasks_instead_of_hanging(tmp_path):
    failed = []
    a = Task("a", frozenset({"b"}), lambda k: (True, []), fail=failed.append, kernel=False)
    b = Task("b", frozenset({"a"}), lambda k: (True, []), fail=failed.append, kernel=False)
    run_tasks([a, b], 2, log_dir=tmp_path, cwd=tmp_path)
    assert a.status == b.status == FAILED and len(failed) == 2 and "cycle" in failed[0]


def test_a_task_that_raises_is_failed_and_its_dependents_skipped(tmp_path):
    failed = []

    def boom(kernel):
        raise RuntimeError("runner bug")

    a = Task("a", frozenset(), boom, fail=failed.append, kernel=False)
    b = _task("b", ["a"], log=[])
    run_tasks([a, b], 1, log_dir=tmp_path, cwd=Path(tmp_path))
    assert (a.status, b.status) == (FAILED, SKIPPED) and failed == ["RuntimeError: runner bug"]


def test_the_scorecards_need_the_stages_of_the_tables_they_read():
    from sipas_lib.stages.unit_scorecard import SCORECARD_TABLES

    producers = _producers()
    assert {producers[name] for name in SCORECARD_TABLES} <= _closure("unit_scorecard")


def test_a_released_task_lets_its_dependents_start_and_a_later_failure_skips_the_rest(tmp_path):
    log: list = []

    def stage(kernel):
        log.append(("start", "stage"))
        stage_task.release()  # its tables are written; it goes on drawing, then fails
        time.sleep(0.2)
        log.append(("end", "stage"))
        return False, []

    stage_task = Task("stage", frozenset(), stage, kernel=False, weight=5.0)
    report = _task("report", ["stage"], log=log, delay=0.3, weight=10.0)
    later = _task("later", ["stage"], log=log, weight=1.0)
    run_tasks([stage_task, report, later], 2, log_dir=tmp_path, cwd=tmp_path)
    assert (stage_task.status, report.status, later.status) == (FAILED, OK, SKIPPED)
    assert log.index(("start", "report")) < log.index(("end", "stage"))  # started on the released tables
    assert later.skipped == ["stage failed"]
