"""What a stage notebook needs besides the library's results: one context object.

Report layer. ``ctx = open_stage("weighting", run_dir, data_dir, common, stage)`` replaces the
preamble each notebook used to paste (language switch, number formats, unit names): the notebook
asks ``ctx`` for its paths, settings and texts, and formats numbers the reader's way. Texts come
from ``sipas_lib/texts/<stage>.yaml`` (then the shared ``reporting.yaml``), never from inline
``vi``/``en`` pairs in code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Mapping

import pandas as pd

from sipas_lib import config, reporting
from sipas_lib.settings import Settings, stage_settings
from sipas_lib.texts import TEXTS_DIR, load_texts


@dataclass(frozen=True)
class NotebookContext:
    """Paths, settings, texts and number formats of one stage notebook.

    Attributes
    ----------
    stage
        Stage (settings section and texts file), e.g. ``"weighting"``.
    paths
        The run's :class:`~sipas_lib.config.RunPaths`.
    settings
        The effective :class:`~sipas_lib.settings.Settings` (common + this stage).
    """

    stage: str
    paths: config.RunPaths
    settings: Settings
    _texts: dict = field(default_factory=dict, repr=False)
    _unit_names: dict = field(default_factory=dict, repr=False)

    # settings ---------------------------------------------------------------------------------
    @property
    def lang(self) -> str:
        return self.settings.lang

    @property
    def level(self) -> float:
        return self.settings.level

    @property
    def options(self) -> Mapping[str, Any]:
        """This stage's own settings."""
        return self.settings.section(self.stage)

    # texts ------------------------------------------------------------------------------------
    def _entry(self, key: str) -> dict[str, str]:
        if not self._texts:
            own = load_texts(self.stage) if (TEXTS_DIR / f"{self.stage}.yaml").exists() else {}
            self._texts.update(reporting.LABELS)
            self._texts.update(own)
        try:
            return self._texts[key]
        except KeyError:
            raise KeyError(f"no text {key!r} in sipas_lib/texts/{self.stage}.yaml or reporting.yaml") from None

    def text(self, key: str, **values: Any) -> str:
        """Markdown text ``key`` in the run's language, values escaped (wrap trusted Markdown in ``Raw``)."""
        safe = {k: (v.text if isinstance(v, reporting.Raw) else reporting.md_escape(v)) for k, v in values.items()}
        template = self._entry(key)[self.lang]
        return template.format(**safe) if safe else template

    def label(self, key: str, **values: Any) -> str:
        """Plain text ``key`` (chart titles, axis labels, table headers); values inserted verbatim."""
        template = self._entry(key)[self.lang]
        return template.format(**values) if values else template

    def say(self, key: str, **values: Any) -> None:
        """Display text ``key`` as Markdown."""
        reporting.show(self.text(key, **values))

    # numbers ----------------------------------------------------------------------------------
    def pct(self, share: float | None, decimals: int = 1) -> str:
        return reporting.fmt_pct(share, decimals, self.lang)

    def num(self, value: float | None, decimals: int = 0) -> str:
        return reporting.fmt_num(value, decimals, self.lang)

    def pp(self, change: float | None, decimals: int = 1) -> str:
        return reporting.fmt_pp(change, decimals, self.lang)

    def ci(self, low: float | None, high: float | None, decimals: int = 1) -> str:
        return reporting.fmt_ci(low, high, decimals, self.lang)

    @property
    def level_label(self) -> str:
        """``"95 %"`` at level 0.95 (``"90 %"`` at 0.90): every interval label uses it."""
        return reporting.fmt_pct(self.level, 0, self.lang)

    # units ------------------------------------------------------------------------------------
    @cached_property
    def units(self) -> pd.DataFrame:
        """The year's units (registry): ``unit_id, name_vi, name_en, unit_type, …``."""
        from sipas_lib.units import load_units

        path = self.paths.data_dir / "units.csv"
        return load_units(path if path.exists() else None)

    def unit_name(self, unit_id: str, width: int | None = None) -> str:
        """The unit's name in the report's language (looked up once per unit: charts ask often), shortened
        to ``width``."""
        name = self._unit_names.get(unit_id)
        if name is None:
            name = self._unit_names[unit_id] = reporting.unit_name(self.units, unit_id, self.lang)
        return reporting.shorten(name, width) if width else name

    def unit_type_name(self, unit_type: str) -> str:
        return reporting.label(unit_type, self.lang) if unit_type in reporting.LABELS else str(unit_type)


def open_stage(stage: str, run_dir: str = "", data_dir: str = "", common: Mapping[str, Any] | None = None,
               settings: Mapping[str, Any] | None = None) -> NotebookContext:
    """The context of a stage notebook from its parameters.

    Empty parameters (a notebook opened in JupyterLab) give the demo data, ``reports/interactive``
    and the shipped default settings, so every notebook also runs interactively.
    """
    paths = config.run_paths(data_dir, run_dir)
    effective = stage_settings(stage, common, settings)
    reporting.chart_style()
    return NotebookContext(stage, paths, effective)
