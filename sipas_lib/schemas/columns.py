"""Column builders shared by the table contracts: one definition per kind of column."""

from __future__ import annotations

from typing import Any, Iterable

import pandera.pandas as pa

from sipas_lib.config import FIELDS, SURVEY_MODES

LEVELS = ("item", "element", "overall")
UNIT_TYPES = ("department", "district", "commune", "ward", "province")


def text(description: str, allowed: Iterable[Any] | None = None, *, nullable: bool = False,
         unique: bool = False, pattern: str | None = None) -> pa.Column:
    checks = []
    if allowed is not None:
        checks.append(pa.Check.isin(list(allowed)))
    if pattern is not None:
        checks.append(pa.Check.str_matches(pattern))
    return pa.Column(str, checks=checks, nullable=nullable, unique=unique, description=description)


def share(description: str, *, nullable: bool = True) -> pa.Column:
    """A proportion on the 0–1 scale (never 0–100)."""
    return pa.Column(float, pa.Check.in_range(0.0, 1.0), nullable=nullable, description=description + " (0–1)")


def number(description: str, *, nullable: bool = True, min_value: float | None = None) -> pa.Column:
    checks = [pa.Check.ge(min_value)] if min_value is not None else []
    return pa.Column(float, checks=checks, nullable=nullable, description=description)


def count(description: str, *, nullable: bool = False) -> pa.Column:
    """A non-negative whole number (``Int64`` when it may be missing)."""
    return pa.Column("Int64" if nullable else "int64", pa.Check.ge(0), nullable=nullable, description=description)


def integer(description: str, *, nullable: bool = False) -> pa.Column:
    return pa.Column("Int64" if nullable else "int64", nullable=nullable, description=description)


def flag(description: str, *, nullable: bool = False) -> pa.Column:
    return pa.Column("boolean" if nullable else bool, nullable=nullable, description=description)


def date(description: str, *, nullable: bool = True) -> pa.Column:
    return pa.Column("datetime64[us]", nullable=nullable, description=description)


def unit_id(description: str = "unit id (units registry)", *, nullable: bool = False) -> pa.Column:
    return text(description, nullable=nullable)


def unit_type(description: str = "unit type, from the units registry", *, nullable: bool = False) -> pa.Column:
    return text(description, UNIT_TYPES, nullable=nullable)


def field_code(description: str = "field of procedure (lĩnh vực)", *, nullable: bool = False) -> pa.Column:
    return text(description, FIELDS, nullable=nullable)


def survey_mode(description: str = "how the questionnaire was delivered and returned", *,
                nullable: bool = False) -> pa.Column:
    return text(description, SURVEY_MODES, nullable=nullable)


def index_level(description: str = "item (criterion), element or overall") -> pa.Column:
    return text(description, LEVELS)


def estimate_columns(*, share_scale: bool = True) -> dict[str, pa.Column]:
    """``estimate, se, ci_low, ci_high, n, deff, n_eff`` of a design-based estimate."""
    est = share if share_scale else number
    return {
        "estimate": est("point estimate"),
        "se": number("design-based standard error", min_value=0),
        "ci_low": est("lower confidence limit at the run's level"),
        "ci_high": est("upper confidence limit at the run's level"),
        "n": count("respondents with an answer"),
        "deff": number("design effect against simple random sampling without replacement (R survey's deff)"),
        "n_eff": number("effective sample size n / deff"),
    }
