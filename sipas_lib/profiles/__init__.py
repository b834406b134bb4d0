"""Run profiles: a data folder, the stages that apply and settings, under one name.

``sipas report --profile national`` reads ``sipas_lib/profiles/national.yaml``. A profile's
``settings`` are any subset of ``sipas_lib/settings.yaml``; the CLI applies them over the shipped
defaults and ``--config`` (``--year``/``--lang``/``-p`` still win).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from sipas_lib.config import PROJECT_DIR

PROFILES_DIR = Path(__file__).resolve().parent


class ProfileError(ValueError):
    """An unknown profile or a profile file that does not have the expected shape."""


@dataclass(frozen=True)
class Profile:
    """One profile (see ``sipas_lib/profiles/*.yaml``)."""

    name: str
    description: str
    data_dir: Path
    demo: str
    run: str
    stages: tuple[int, ...] | None
    settings: dict[str, dict[str, Any]] = field(default_factory=dict)

    def overrides(self) -> list[tuple[str, Any]]:
        """The profile's settings as ``(section.name, value)`` pairs for :func:`sipas_lib.settings.load_settings`."""
        return [(f"{section}.{key}", value) for section, values in self.settings.items()
                for key, value in (values or {}).items()]

    def run_name(self, year: int) -> str:
        return self.run.format(year=year)


def available() -> list[str]:
    """Names of the shipped profiles."""
    return sorted(p.stem for p in PROFILES_DIR.glob("*.yaml"))


def load_profile(name: str) -> Profile:
    """The shipped profile ``name``.

    Raises
    ------
    ProfileError
        Unknown name (the known ones are listed) or a key the profile format does not have.
    """
    path = PROFILES_DIR / f"{name}.yaml"
    if not name.isidentifier() or not path.is_file():
        raise ProfileError(f"no profile {name!r}; profiles: {', '.join(available())}")
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    known = {"description", "data_dir", "demo", "run", "stages", "settings"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ProfileError(f"{path}: unknown key(s) {unknown}; a profile has {', '.join(sorted(known))}")
    stages = data.get("stages")
    return Profile(name=name, description=str(data.get("description", "")),
                   data_dir=PROJECT_DIR / data.get("data_dir", "data/demo"), demo=str(data.get("demo", "")),
                   run=str(data.get("run", "{year}-" + name)),
                   stages=None if stages is None else tuple(int(s) for s in stages),
                   settings={k: dict(v or {}) for k, v in (data.get("settings") or {}).items()})
