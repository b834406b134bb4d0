"""Which step of a run needs which, and running the steps on a few workers as soon as their inputs are ready.

A run is a small graph: the intake (20) feeds the integrity checks (25) and weighting (30), which
feeds reliability (40) and the index stage (50); the annual report (60) reads all of them; the sampling design (10) and the monthly
report (70) need nothing from the others; the scorecards need the intake and the index stage; the
previous year's indices are needed by the index stage only. :data:`STAGE_NEEDS` writes that down (the
test suite checks it against the tables each stage module and notebook reads), and :func:`run_tasks`
runs a graph of :class:`Task` on ``workers`` threads, each thread driving one kernel that it keeps for
its next task (:class:`~sipas_lib.runner.kernels.WarmKernel`): on two cores the independent steps
run beside the long chain 20 → 30 → 50 → 60. A stage notebook releases the stages that need it as
soon as its tables are written (:meth:`Task.release`), so the chain is the stages' computations,
while each notebook's charts are drawn beside the next stage.

A stage the table does not know (a notebook a user or a later issue adds, e.g. ``25_integrity``)
is scheduled safely: after every stage numbered below it and before every stage numbered above it,
as in a plain sequential run, unless its notebook declares what it reads
(``metadata.sipas.needs``: a list of stage names).
"""

from __future__ import annotations

import functools
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

from sipas_lib.runner.kernels import WarmKernel, kernel_manager_class, ready_kernel
from sipas_lib.runner.records import FAILED, OK, SKIPPED

PREVIOUS_YEAR = "previous_year"
"""The task computing (or reusing) last year's result tables (:mod:`sipas_lib.runner.previous`)."""

#: Stage (settings section) -> the stages (and :data:`PREVIOUS_YEAR`) whose result tables it reads, directly
#: or through the library functions it calls. ``tests/test_schedule.py`` checks it against the tables each
#: stage module and notebook names.
STAGE_NEEDS: dict[str, tuple[str, ...]] = {
    "sampling_design": (),
    "intake_quality": (),
    "integrity": ("intake_quality",),  # re-checks, screening, self-surveys of the accepted forms
    "weighting": ("intake_quality", "integrity"),  # the forms integrity set aside (integrity.exclude_flagged)
    "reliability": ("intake_quality", "weighting"),  # the weighted responses (the unweighted without them)
    "index_ranking": ("intake_quality", "weighting", PREVIOUS_YEAR),
    "annual_report": ("intake_quality", "integrity", "weighting", "reliability", "index_ranking"),  # + integrity_units
    "monthly_report": (),
    "annual_survey_report": ("intake_quality",),
    "unit_scorecard": ("intake_quality", "integrity", "index_ranking"),
}


@dataclass
class Task:
    """One step of a run.

    ``work(kernel)`` does it (``kernel`` is the worker's running kernel, ``None`` when ``kernel`` is
    False) and returns ``(ok, new_tasks)``: whether it succeeded and any tasks it found to do (a
    fan-out template's units, known only once the index stage ran). ``skip(reason)`` is called instead
    when a task it needs failed or was skipped, ``fail(reason)`` when ``work`` raised (a bug in the
    runner, reported on the task's own records); a task with ``always`` runs once its needs are done,
    whatever their outcome (the downloads: each is written when its tables are there).
    """

    name: str
    needs: frozenset[str]
    work: Callable[[WarmKernel | None], tuple[bool, list["Task"]]]
    skip: Callable[[str], None] = lambda reason: None
    fail: Callable[[str], None] = lambda reason: None
    cwd: Path | None = None
    kernel: bool = True
    always: bool = False
    weight: float = 1.0  # expected seconds: the longest chain of weights is started first
    status: str = field(default="", init=False)
    _released: Callable[[], None] | None = field(default=None, init=False, repr=False)

    def release(self) -> None:
        """Let the tasks that need this one start before it ends: what they read is complete.

        A stage notebook calls it once its main tables are written (its first cells compute, the rest
        narrate and draw), so the next stage computes while this one is still drawing its charts. If
        the task then fails, the tasks that need it and have not started yet are skipped.
        """
        if self._released is not None:
            self._released()


def declared_needs(stage: str | None, declared: Sequence[str] | None) -> set[str] | None:
    """The stages a stage notebook needs, by stage name: its notebook's ``metadata.sipas.needs`` if
    declared, else :data:`STAGE_NEEDS`; ``None`` when neither knows it (see :func:`order_unknown`)."""
    if declared is not None:
        return set(declared)
    if stage in STAGE_NEEDS:
        return set(STAGE_NEEDS[stage])
    return None


def order_unknown(numbers: Sequence[int], needs: Mapping[int, set[str] | None], names: Mapping[int, str]) -> dict[int, set[str]]:
    """Resolve the stages whose needs are unknown (``None``): such a stage needs every stage numbered
    below it, and every stage numbered above it needs it — the order of a sequential run.

    ``numbers`` are the run's stage numbers and ``names`` their task names; returns the needs per number.
    """
    unknown = [n for n in numbers if needs[n] is None]
    out: dict[int, set[str]] = {}
    for n in numbers:
        wanted = set(needs[n]) if needs[n] is not None else {names[m] for m in numbers if m < n}
        out[n] = wanted | {names[u] for u in unknown if u < n}
    return out


def critical_weights(tasks: Iterable[Task]) -> dict[str, float]:
    """Each task's weight plus the heaviest chain of tasks that need it (what is left of the run after
    it starts, at best): the scheduler starts the ready task with the largest first."""
    tasks = {t.name: t for t in tasks}
    dependents: dict[str, list[str]] = {name: [] for name in tasks}
    for t in tasks.values():
        for need in t.needs:
            if need in dependents:
                dependents[need].append(t.name)
    memo: dict[str, float] = {}

    def chain(name: str, seen: frozenset[str] = frozenset()) -> float:
        if name in memo:
            return memo[name]
        if name in seen:  # a cycle: reported by run_tasks
            return 0.0
        value = tasks[name].weight + max((chain(d, seen | {name}) for d in dependents[name]), default=0.0)
        memo[name] = value
        return value

    return {name: chain(name) for name in tasks}


class KernelStarter:
    """Kernels started in the background while a run is still being planned (reading notebooks,
    importing papermill): a worker takes one (:meth:`take`) instead of starting its own."""

    def __init__(self, count: int, cwd: Path, log_dir: Path) -> None:
        import queue

        self._ready: "queue.Queue[WarmKernel | None]" = queue.Queue()
        self._threads = [threading.Thread(target=self._start, args=(cwd, log_dir / f"kernel-{n}.log"), daemon=True,
                                          name=f"sipas-kernel-start-{n}") for n in range(count)]
        for thread in self._threads:
            thread.start()

    def _start(self, cwd: Path, log: Path) -> None:
        try:
            self._ready.put(WarmKernel(cwd, log))
        except Exception:  # the worker will start its own (and report the problem then)
            self._ready.put(None)

    def take(self) -> WarmKernel | None:
        """A started kernel (waits for one still starting); ``None`` once all were taken."""
        import queue

        try:
            return self._ready.get(timeout=120) if any(t.is_alive() for t in self._threads) or not self._ready.empty() \
                else None
        except queue.Empty:
            return None

    def close(self) -> None:
        """Shut down the kernels no worker took."""
        import queue

        for thread in self._threads:
            thread.join()
        while True:
            try:
                kernel = self._ready.get_nowait()
            except queue.Empty:
                return
            if kernel is not None:
                kernel.shutdown()


def run_tasks(tasks: list[Task], workers: int, *, log_dir: Path, cwd: Path, reuse_kernels: bool = True,
              starter: KernelStarter | None = None) -> None:
    """Run ``tasks`` (and the tasks they add) on ``workers`` threads; sets each task's ``status``.

    A task starts when every task it needs is ``ok`` (or, for ``always`` tasks, finished); a task
    whose need failed or was skipped is skipped (``task.skip(reason)``), and so on down the chain.
    Needs that name no task count as met (a stage left out of this run, whose earlier tables are in
    the run folder). Each thread keeps one kernel (the ``starter``'s when given) and resets it between
    tasks; with ``reuse_kernels`` False every task gets a fresh kernel.
    """
    if not tasks:
        return
    kernel_manager_class()  # build the class once, before the threads need it
    lock = threading.Condition()
    pending: dict[str, Task] = {}
    done: dict[str, str] = {}
    running: set[str] = set()
    priority: dict[str, float] = {}
    order: dict[str, int] = {}
    released: set[str] = set()

    def release(name: str) -> None:
        with lock:
            released.add(name)
            lock.notify_all()

    def add(new: Iterable[Task]) -> None:  # under the lock
        for task in new:
            pending[task.name] = task
            order.setdefault(task.name, len(order))
            task._released = functools.partial(release, task.name)
        known = set(pending) | set(done) | running
        for task in pending.values():
            task.needs = frozenset(n for n in task.needs if n in known)
        priority.update(critical_weights(pending.values()))

    def settle() -> None:  # under the lock: skip what can no longer run, down the chain
        changed = True
        while changed:
            changed = False
            for name, task in list(pending.items()):
                broken = [n for n in sorted(task.needs) if done.get(n) in (FAILED, SKIPPED)]
                if broken and not task.always:
                    pending.pop(name)
                    task.status = done[name] = SKIPPED
                    task.skip(f"{broken[0]} {done[broken[0]]}")
                    changed = True

    def ready() -> Task | None:  # under the lock
        settle()
        def met(task: Task, need: str) -> bool:
            if task.always:
                return need in done
            return done.get(need) == OK or (need in released and need in running)

        candidates = [t for t in pending.values() if all(met(t, n) for n in t.needs)]
        if candidates:
            return max(candidates, key=lambda t: (priority.get(t.name, 0.0), -order[t.name]))
        if pending and not running:  # nothing can ever start: the needs form a cycle
            for name, task in list(pending.items()):
                pending.pop(name)
                task.status = done[name] = FAILED
                task.fail("its needs form a cycle: " + ", ".join(sorted(task.needs)))
        return None

    def worker(number: int) -> None:
        kernel: WarmKernel | None = None
        log = log_dir / f"kernel-{number}.log"
        try:
            while True:
                with lock:
                    while (task := ready()) is None:
                        if not pending and not running:
                            lock.notify_all()
                            return
                        lock.wait()
                    pending.pop(task.name)
                    running.add(task.name)
                ok, new = False, []
                try:
                    if task.kernel:
                        folder = task.cwd or cwd
                        if kernel is None and starter is not None and reuse_kernels:
                            kernel = starter.take()
                        kernel = ready_kernel(kernel, folder, log) if reuse_kernels else WarmKernel(folder, log)
                    ok, new = task.work(kernel if task.kernel else None)
                except Exception as exc:  # a bug in the runner itself: the task's own records say so
                    task.fail(f"{type(exc).__name__}: {exc}")
                    if kernel is not None:
                        kernel.broken = True
                finally:
                    if kernel is not None and (not reuse_kernels or kernel.broken):
                        kernel.shutdown()
                        kernel = None
                with lock:
                    running.discard(task.name)
                    task.status = done[task.name] = OK if ok else FAILED
                    add(new)
                    lock.notify_all()
        finally:
            if kernel is not None:
                kernel.shutdown()

    with lock:
        add(tasks)
    threads = [threading.Thread(target=worker, args=(n,), name=f"sipas-worker-{n}", daemon=True)
               for n in range(max(1, workers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
