"""Form ids (*Mã số phiếu*): the unit and serial of a questionnaire, with a check digit.

Contracts layer. Two formats, told apart by their length, both read everywhere:

* **legacy, 6 digits** ``UUSSSC`` (Hà Nội 2020–2024, plan 143/KH-UBND): 2-digit unit code
  (10–99), 3-digit serial, **Luhn** check digit. Luhn catches every single mistyped digit and
  every adjacent swap except ``09`` ↔ ``90``. Old files keep working.
* **current, 10 digits** ``UUUUUSSSSC`` (from the 2025 round on): 5-digit unit code
  (1–99999: the statistical office's commune/ward codes run to 5 digits; the registry gives
  provinces and departments codes in the same space), 4-digit serial (1–9999 per unit), **Damm**
  check digit. Damm's quasigroup catches *every* single-digit error and *every* adjacent
  transposition, so no swap escapes, and the format holds every unit of a national survey
  (3,321 communes, 34 provinces, several hundred departments) with room to spare.

References
----------
H. M. Damm, "Total anti-symmetrische Quasigruppen", PhD thesis, Philipps-Universität Marburg, 2004.
H. P. Luhn, "Computer for verifying numbers", US patent 2,950,048, 1960.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

LEGACY_LENGTH = 6
CURRENT_LENGTH = 10
LEGACY_MAX_SERIAL = 999
CURRENT_MAX_SERIAL = 9999
CURRENT_MAX_UNIT_CODE = 99999

# Damm's totally anti-symmetric quasigroup of order 10 (Damm 2004, table 5.2).
_DAMM = np.array([
    [0, 3, 1, 7, 5, 9, 8, 6, 4, 2],
    [7, 0, 9, 2, 1, 5, 4, 8, 6, 3],
    [4, 2, 0, 6, 8, 7, 1, 3, 5, 9],
    [1, 7, 5, 0, 9, 8, 3, 4, 2, 6],
    [6, 1, 2, 3, 0, 4, 5, 9, 7, 8],
    [3, 6, 7, 4, 2, 0, 9, 5, 8, 1],
    [5, 8, 6, 9, 7, 2, 0, 1, 3, 4],
    [8, 9, 4, 5, 3, 6, 2, 0, 1, 7],
    [9, 4, 3, 8, 6, 1, 7, 2, 0, 5],
    [2, 5, 8, 1, 4, 3, 6, 7, 9, 0],
], dtype=np.int8)
_LUHN_DOUBLE = np.array([True, False, True, False, True])  # legacy payload d1..d5; d5 (rightmost) doubled


def _digits(payload: np.ndarray, width: int) -> np.ndarray:
    return (payload[:, None] // 10 ** np.arange(width - 1, -1, -1)) % 10


def luhn_check_digit(payload: np.ndarray) -> np.ndarray:
    """Luhn check digit of 5-digit payloads (legacy ids)."""
    digits = _digits(np.asarray(payload, dtype=np.int64), 5)
    doubled = np.where(_LUHN_DOUBLE, digits * 2, digits)
    doubled = np.where(doubled > 9, doubled - 9, doubled)
    return (10 - doubled.sum(axis=1) % 10) % 10


def damm_check_digit(payload: np.ndarray, width: int = CURRENT_LENGTH - 1) -> np.ndarray:
    """Damm check digit of ``width``-digit payloads: the interim digit after the last one.

    A number with its Damm digit appended has interim digit 0, which is how it is checked.

    Examples
    --------
    >>> damm_check_digit(np.array([572]), width=3).tolist()  # Damm's worked example: 5724
    [4]
    """
    digits = _digits(np.asarray(payload, dtype=np.int64), width)
    interim = np.zeros(len(digits), dtype=np.int8)
    for j in range(width):  # a loop over digit positions (≤ 9), vectorized over ids
        interim = _DAMM[interim, digits[:, j]]
    return interim.astype(np.int64)


def _as_int_array(values, name: str) -> np.ndarray:
    arr = pd.to_numeric(pd.Series(np.ravel(np.asarray(values, dtype=object))), errors="coerce").to_numpy(dtype=float)
    if np.any(np.isnan(arr)):
        raise ValueError(f"{name} has missing or non-numeric values")
    if np.any(arr != np.round(arr)):
        raise ValueError(f"{name} must be whole numbers")
    return arr.astype(np.int64)


def make_form_ids(unit_codes, serials, *, legacy: bool = False) -> np.ndarray:
    """Form ids for unit codes and serials (broadcast against each other).

    Parameters
    ----------
    unit_codes
        Unit codes: 1–99999 (current format) or 10–99 (``legacy=True``).
    serials
        Serial numbers within the unit: 1–9999 (current) or 1–999 (legacy).
    legacy
        Write the 6-digit Luhn format of the 2020–2024 rounds.

    Returns
    -------
    numpy.ndarray of str

    Examples
    --------
    >>> make_form_ids([10, 31], [1, 25], legacy=True).tolist()
    ['100016', '310250']
    >>> make_form_ids([70], [1]).tolist()
    ['0007000019']
    """
    codes = _as_int_array(unit_codes, "unit_codes")
    ser = _as_int_array(serials, "serials")
    codes, ser = np.broadcast_arrays(codes, ser)
    low, high, max_serial = (10, 99, LEGACY_MAX_SERIAL) if legacy else (1, CURRENT_MAX_UNIT_CODE, CURRENT_MAX_SERIAL)
    bad = (codes < low) | (codes > high)
    if bad.any():
        width = "2-digit" if legacy else "at most 5-digit"
        raise ValueError(f"unit codes must be {width} numbers {low}-{high}, got {codes[bad][:5].tolist()}")
    bad = (ser < 1) | (ser > max_serial)
    if bad.any():
        raise ValueError(f"serials must be 1-{max_serial} within a unit, got {ser[bad][:5].tolist()}")
    if legacy:
        payload = codes * 1000 + ser
        return (payload * 10 + luhn_check_digit(payload)).astype(f"U{LEGACY_LENGTH}")
    payload = codes * 10_000 + ser
    ids = payload * 10 + damm_check_digit(payload)
    return np.char.zfill(ids.astype(f"U{CURRENT_LENGTH}"), CURRENT_LENGTH)


def _text(ids) -> pd.Series:
    s = pd.Series(np.ravel(np.asarray(ids, dtype=object)), dtype=object)
    return s.where(s.isna(), s.astype(str))


def check_form_ids(ids) -> np.ndarray:
    """True where a form id is well formed in either format (length, digits, ranges, check digit).

    Missing values and anything else give False.

    Examples
    --------
    >>> check_form_ids(["100016", "100015", "0007000019", "0007000018", None]).tolist()
    [True, False, True, False, False]
    """
    text = _text(ids)
    out = np.zeros(len(text), dtype=bool)
    legacy = text.str.fullmatch(r"[0-9]{6}").fillna(False).to_numpy(dtype=bool)
    if legacy.any():
        v = text[legacy].astype(np.int64).to_numpy()
        payload, check = v // 10, v % 10
        out[legacy] = (luhn_check_digit(payload) == check) & (payload // 1000 >= 10) & (payload % 1000 >= 1)
    current = text.str.fullmatch(r"[0-9]{10}").fillna(False).to_numpy(dtype=bool)
    if current.any():
        v = text[current].astype(np.int64).to_numpy()
        payload, check = v // 10, v % 10
        out[current] = (damm_check_digit(payload) == check) & (payload // 10_000 >= 1) & (payload % 10_000 >= 1)
    return out


def unit_code_of(ids) -> np.ndarray:
    """The unit code read from form ids of either format (int array); invalid ids raise ``ValueError``.

    Examples
    --------
    >>> unit_code_of(["310250", "0007000019"]).tolist()
    [31, 70]
    """
    text = _text(ids)
    ok = check_form_ids(text)
    if not ok.all():
        raise ValueError(f"invalid form id(s) (wrong length, digits or check digit): {text[~ok].tolist()[:5]}")
    legacy = (text.str.len() == LEGACY_LENGTH).to_numpy()
    return np.where(legacy, text.str.slice(0, 2).astype(np.int64), text.str.slice(0, 5).astype(np.int64))
