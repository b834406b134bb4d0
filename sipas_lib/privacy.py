"""Personal data in free text: find and blank out phone numbers and e-mail addresses.

Contracts layer. Respondents sometimes write their name and phone number into a free-text answer
(e.g. ``education_other``, "other, please specify"). Free-text columns
(:data:`sipas_lib.schemas.FREE_TEXT_COLUMNS`) are kept out of the result tables unless the run's
configuration asks for them (``intake_quality.keep_free_text``); when they are kept, every value
goes through :func:`scrub_contacts` first.

What counts as a phone number (Vietnam's numbering plan since the 2018 move to 10-digit mobiles
and the 2017 landline area codes):

* a national number: ``0`` followed by 9 digits (mobile ``09x``/``03x``/``07x``/``08x``/``05x``,
  e.g. ``0912 345 678``) or by 10 digits (landline with area code, e.g. ``024 3825 1234``);
* an international number: ``+84``, ``84`` or ``(+84)`` followed by the same 9 or 10 digits
  without the leading ``0`` (``+84 912 345 678``, ``+84-24-3825-1234``);
* the digits may be grouped with single spaces, dots or dashes, and the prefix or area code put
  in parentheses (``(024) 3825.1234``, ``(+84) 912.345.678``).

A run of digits that is longer (an identity card number, 12 digits) or shorter (a date
``01.02.2025``, an amount) is not a phone number and is left alone. E-mail addresses are
``local@domain.tld``. Each match is replaced by a marker, so a reader sees that something was
removed: :data:`PHONE_MARK`, :data:`EMAIL_MARK`.
"""

from __future__ import annotations

import re

import pandas as pd

PHONE_MARK = "[phone]"
EMAIL_MARK = "[e-mail]"

_SEP = r"[ .\-]?"
# prefix: +84 / 84 / (+84) / (84) / 0 / (0…) — not glued to a preceding letter, digit or '+'
_PREFIX = r"(?:\(\+?84\)|\+\s?84|(?<![\w+])84|(?<![\w+(])0|\(0)"
# 9 or 10 further digits, each optionally preceded by one separator (or the closing parenthesis of
# an area code); no further digit may follow, even after one separator
PHONE_PATTERN = re.compile(
    _PREFIX + r"(?:" + _SEP + r"\)?" + _SEP + r"\d){9,10}" + r"(?!" + _SEP + r"\d)"
)
EMAIL_PATTERN = re.compile(r"(?<![\w.+-])[\w.+-]+@[\w-]+(?:\.[\w-]+)*\.[A-Za-z]{2,}\b")


def scrub_text(text: str) -> str:
    """``text`` with every e-mail address and Vietnamese phone number replaced by a marker.

    Examples
    --------
    >>> scrub_text("Lan, ĐT 0912.345.678, lan.nguyen@gmail.com")
    'Lan, ĐT [phone], [e-mail]'
    >>> scrub_text("+84 24 3825 1234 hoặc (024) 3825-1234")
    '[phone] hoặc [phone]'
    >>> scrub_text("Trung cấp, tốt nghiệp 01.02.2015, CCCD 001203004567")
    'Trung cấp, tốt nghiệp 01.02.2015, CCCD 001203004567'
    """
    text = EMAIL_PATTERN.sub(EMAIL_MARK, text)
    return PHONE_PATTERN.sub(PHONE_MARK, text)


def scrub_contacts(values: pd.Series) -> pd.Series:
    """A copy of a text column with phone numbers and e-mail addresses replaced by markers.

    Missing values stay missing; the index and the name are kept; non-text values are left alone.

    Examples
    --------
    >>> scrub_contacts(pd.Series(["Bổ túc", "gọi 0987654321"])).tolist()
    ['Bổ túc', 'gọi [phone]']
    """
    return values.map(lambda v: scrub_text(v) if isinstance(v, str) else v, na_action="ignore")
