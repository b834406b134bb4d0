"""One run configuration: shipped defaults, a user's YAML file, and ``section.name=value`` overrides.

Contracts layer. The configuration has a ``common`` section (year, language, confidence level, seed,
publication minimum) and one section per stage, named after the stage module
(:mod:`sipas_lib.stages`). A stage (and its notebook) receives ``common`` plus its own section only,
so no two stages share a setting by accident. Every value is checked against the type of its
shipped default; an unknown section or key is an error, never silently ignored.

Examples
--------
>>> s = load_settings(overrides=["weighting.trim_ratio=2.5", "common.level=0.9"])
>>> s.section("weighting")["trim_ratio"], s.level
(2.5, 0.9)
"""

from __future__ import annotations

import ast
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Iterable, Mapping

import yaml

from sipas_lib.config import LANGUAGES, PACKAGE_DIR

DEFAULTS_FILE = PACKAGE_DIR / "settings.yaml"
#: File name of the effective configuration inside a run folder.
RUN_SETTINGS_FILE = "settings.yaml"
COMMON = "common"


class SettingsError(ValueError):
    """A configuration file or override that does not fit the shipped settings."""


def _freeze(mapping: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(mapping))


def _coerce(where: str, value: Any, default: Any) -> Any:
    """Check ``value`` against the type of ``default``; ints are accepted where floats are expected."""
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
    elif isinstance(default, int):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif isinstance(default, float):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif isinstance(default, str):
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
    else:  # lists / dicts
        if isinstance(value, type(default)):
            return value
    raise SettingsError(f"{where}: expected {type(default).__name__} like {default!r}, got {value!r}")


def _check_common(common: Mapping[str, Any], where: str) -> None:
    if common["lang"] not in LANGUAGES:
        raise SettingsError(f"{where}: common.lang must be one of {', '.join(LANGUAGES)}, got {common['lang']!r}")
    if not 0.5 <= common["level"] < 1:
        raise SettingsError(f"{where}: common.level must be a confidence level in [0.5, 1), got {common['level']!r}")
    if common["min_publish_n"] < 1:
        raise SettingsError(f"{where}: common.min_publish_n must be at least 1, got {common['min_publish_n']!r}")


@dataclass(frozen=True)
class Settings:
    """The effective configuration of a run (read-only).

    Attributes
    ----------
    sections
        ``{"common": {...}, "weighting": {...}, ...}``, each a read-only mapping.
    sources
        Where the values came from, in order (defaults file, config file, overrides).
    """

    sections: Mapping[str, Mapping[str, Any]]
    sources: tuple[str, ...] = field(default=())

    # the common settings every stage reads
    @property
    def common(self) -> Mapping[str, Any]:
        return self.sections[COMMON]

    @property
    def year(self) -> int:
        return self.common["year"]

    @property
    def lang(self) -> str:
        return self.common["lang"]

    @property
    def level(self) -> float:
        return self.common["level"]

    @property
    def seed(self) -> int:
        return self.common["seed"]

    @property
    def min_publish_n(self) -> int:
        return self.common["min_publish_n"]

    def section(self, stage: str) -> Mapping[str, Any]:
        """One stage's own settings (without ``common``)."""
        try:
            return self.sections[stage]
        except KeyError:
            raise SettingsError(f"no settings section {stage!r}; sections: {', '.join(self.sections)}") from None

    def for_stage(self, stage: str) -> dict[str, dict[str, Any]]:
        """What one stage receives: ``{"common": {...}, "stage": {...}}`` (plain dicts, for papermill)."""
        return {"common": dict(self.common), "stage": dict(self.section(stage))}

    def to_dict(self) -> dict[str, dict[str, Any]]:
        return {name: dict(values) for name, values in self.sections.items()}

    def to_yaml(self) -> str:
        head = "# Effective configuration of this run (sipas_lib.settings). Sources: " + "; ".join(self.sources) + "\n"
        return head + yaml.safe_dump(self.to_dict(), allow_unicode=True, sort_keys=False)

    def save(self, run_dir: str | os.PathLike) -> Path:
        """Write the effective configuration to ``<run_dir>/settings.yaml``."""
        path = Path(run_dir) / RUN_SETTINGS_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.to_yaml(), encoding="utf-8")
        return path

    def replace(self, **overrides: Any) -> "Settings":
        """A copy with ``section__name=value`` or common ``name=value`` changes (for tests and notebooks)."""
        items = [(k.replace("__", ".", 1) if "__" in k else f"{COMMON}.{k}", v) for k, v in overrides.items()]
        changed = "changed: " + ", ".join(f"{k}={v!r}" for k, v in items)
        return _apply(self.to_dict(), items, list(self.sources) + [changed])


def _defaults() -> dict[str, dict[str, Any]]:
    data = yaml.safe_load(DEFAULTS_FILE.read_text(encoding="utf-8"))
    return {name: dict(values or {}) for name, values in data.items()}


def _merge_file(base: dict[str, dict[str, Any]], path: Path) -> None:
    where = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SettingsError(f"{where}: configuration file not found") from None
    except UnicodeDecodeError as err:
        raise SettingsError(f"{where}: not UTF-8 text (byte {err.start})") from None
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as err:
        raise SettingsError(f"{where}: not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise SettingsError(f"{where}: expected sections (common:, weighting:, …) at the top level")
    for name, values in data.items():
        if name not in base:
            raise SettingsError(f"{where}: unknown section {name!r}; sections: {', '.join(base)}")
        for key, value in (values or {}).items():
            _set(base, name, key, value, f"{where}: {name}.{key}")


#: Settings that moved (old ``section.name`` -> new): older configuration files and run folders still
#: load, with a warning that names the new setting.
RENAMED = {"monthly_report.engine": "common.dossier_engine",
           "monthly_report.duckdb_memory_limit": "common.duckdb_memory_limit"}


def _set(base: dict[str, dict[str, Any]], section: str, key: str, value: Any, where: str) -> None:
    moved = RENAMED.get(f"{section}.{key}")
    if moved:
        warnings.warn(f"{where}: this setting is now {moved} (one setting for every stage that aggregates "
                      f"dossiers); read as {moved}={value!r}", FutureWarning, stacklevel=4)
        section, key = moved.split(".")
    if section not in base:
        raise SettingsError(f"{where}: unknown section {section!r}; sections: {', '.join(base)}")
    if key not in base[section]:
        known = ", ".join(base[section]) or "(none)"
        holders = [name for name, values in base.items() if key in values]
        hint = (f"; {key} is a setting of {' and '.join(holders)}: write {holders[0]}.{key}=…" if holders
                else f"; no section has a setting {key}")
        raise SettingsError(f"{where}: unknown setting {section}.{key}; {section} has: {known}{hint}")
    base[section][key] = _coerce(where, value, base[section][key])


def parse_override(text: str) -> tuple[str, Any]:
    """``"weighting.trim_ratio=2.5"`` -> ``("weighting.trim_ratio", 2.5)`` (Python literal, else text).

    A name without a section (``level=0.9``) means the common section.
    """
    name, sep, raw = text.partition("=")
    name = name.strip()
    if not sep or not all(part.isidentifier() for part in name.split(".")) or name.count(".") > 1:
        raise SettingsError(f"-p {text!r}: expected SECTION.NAME=VALUE, e.g. -p weighting.trim_ratio=2.5")
    try:
        value: Any = ast.literal_eval(raw.strip())
    except (ValueError, SyntaxError):
        value = raw.strip()
    return (name if "." in name else f"{COMMON}.{name}"), value


def _apply(base: dict[str, dict[str, Any]], items: Iterable[tuple[str, Any]], sources: list[str]) -> Settings:
    for dotted, value in items:
        section, key = dotted.split(".", 1)
        _set(base, section, key, value, f"-p {dotted}")
    _check_common(base[COMMON], "; ".join(sources))
    return Settings({name: _freeze(values) for name, values in base.items()}, tuple(sources))


def load_settings(config_file: str | os.PathLike | None = None,
                  overrides: Iterable[str | tuple[str, Any]] = (), **common: Any) -> Settings:
    """The effective configuration: shipped defaults < ``config_file`` < ``common`` keywords < ``overrides``.

    Parameters
    ----------
    config_file
        A YAML file with any subset of the sections of ``sipas_lib/settings.yaml``.
    overrides
        ``"section.name=value"`` strings (as ``sipas report -p``) or ``(dotted, value)`` pairs.
    **common
        Values of the common section (``year=2026, lang="en"``); ``None`` values are ignored.

    Raises
    ------
    SettingsError
        Unknown section or key, a value of the wrong type, or an invalid common value, with the file
        or override named.
    """
    base = _defaults()
    sources = [str(DEFAULTS_FILE.relative_to(PACKAGE_DIR.parent))]
    if config_file:
        _merge_file(base, Path(config_file))
        sources.append(str(config_file))
    items = [(f"{COMMON}.{k}", v) for k, v in common.items() if v is not None]
    for item in overrides:
        items.append(parse_override(item) if isinstance(item, str) else item)
    if len(items) > len([v for v in common.values() if v is not None]):
        sources.append("overrides: " + ", ".join(f"{k}={v!r}" for k, v in items))
    return _apply(base, items, sources)


def load_run_settings(run_dir: str | os.PathLike) -> Settings:
    """The effective configuration saved in a run folder (defaults when the run saved none)."""
    path = Path(run_dir) / RUN_SETTINGS_FILE
    return load_settings(path if path.exists() else None)


def stage_settings(stage: str, common: Mapping[str, Any] | None = None,
                   values: Mapping[str, Any] | None = None) -> Settings:
    """Settings rebuilt from what a notebook received (``common`` and its ``stage`` section).

    Empty mappings (a notebook opened in JupyterLab without parameters) give the shipped defaults.
    """
    items = [(f"{COMMON}.{k}", v) for k, v in (common or {}).items()]
    items += [(f"{stage}.{k}", v) for k, v in (values or {}).items()]
    base = _defaults()
    if stage not in base:
        raise SettingsError(f"no settings section {stage!r}; sections: {', '.join(base)}")
    return _apply(base, items, ["notebook parameters"])
