"""Report prose as data: ``sipas_lib/texts/<name>.yaml`` holds key -> ``{"vi": ..., "en": ...}``.

Contracts layer: prose lives in YAML, not in code, so a translator or an editor changes wording
without touching the library. Every entry must carry exactly the languages of
:data:`sipas_lib.config.LANGUAGES`; the loader refuses a file that does not.
"""

from __future__ import annotations

from functools import lru_cache

from sipas_lib.config import LANGUAGES, PACKAGE_DIR

TEXTS_DIR = PACKAGE_DIR / "texts"


@lru_cache(maxsize=None)
def _load(name: str) -> dict[str, dict[str, str]]:
    import yaml

    path = TEXTS_DIR / f"{name}.yaml"
    texts = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    missing = [key for key, value in texts.items() if not isinstance(value, dict) or set(value) != set(LANGUAGES)]
    if missing:
        raise ValueError(f"{path}: texts without exactly the languages {LANGUAGES}: {missing[:5]}")
    return texts


def load_texts(name: str) -> dict[str, dict[str, str]]:
    """The texts of ``sipas_lib/texts/<name>.yaml``: key -> ``{"vi": ..., "en": ...}`` (a fresh copy).

    Examples
    --------
    >>> load_texts("reporting")["unit"]["en"]
    'Unit'
    """
    return {key: dict(value) for key, value in _load(name).items()}
