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

The layouts are data (:data:`LEGACY`, :data:`CURRENT`, :class:`FormIdFormat`) and the check
digits' tables are public (:func:`damm_table`, :func:`luhn_doubled`), so another implementation of
the same check — the XLSForm constraint that refuses a mistyped id on the device
(:func:`sipas_lib.xlsform.form_id_check_xpath`) — is built from them and cannot disagree with intake.

References
----------
H. M. Damm, "Total anti-symmetrische Quasigruppen", PhD thesis, Philipps-Universität Marburg, 2004.
H. P. Luhn, "Computer for verifying numbers", US patent 2,950,048, 1960.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = [
    "FormIdFormat",
    "LEGACY",
    "CURRENT",
    "FORMATS",
    "damm_table",
    "luhn_doubled",
    "luhn_check_digit",
    "damm_check_digit",
    "make_form_ids",
    "check_form_ids",
    "unit_code_of",
]


@dataclass(frozen=True)
class FormIdFormat:
    """The layout of one form-id format: unit code, serial, one check digit, in that order.

    Attributes
    ----------
    name
        ``"legacy"`` or ``"current"``.
    unit_digits, serial_digits
        Widths of the unit code and the serial (zero-padded).
    min_unit_code, max_unit_code
        The unit codes the format holds.
    check
        The check-digit scheme over the ``unit_digits + serial_digits`` payload: ``"luhn"``
        (:func:`luhn_check_digit`) or ``"damm"`` (:func:`damm_check_digit`).

    Examples
    --------
    >>> CURRENT.length, CURRENT.max_serial, LEGACY.length
    (10, 9999, 6)
    """

    name: str
    unit_digits: int
    serial_digits: int
    min_unit_code: int
    max_unit_code: int
    check: str

    @property
    def payload_digits(self) -> int:
        """Digits before the check digit."""
        return self.unit_digits + self.serial_digits

    @property
    def length(self) -> int:
        """Digits of a whole id."""
        return self.payload_digits + 1

    @property
    def max_serial(self) -> int:
        return 10 ** self.serial_digits - 1


#: Hà Nội 2020–2024 (plan 143/KH-UBND): ``UUSSSC``, Luhn.
LEGACY = FormIdFormat("legacy", unit_digits=2, serial_digits=3, min_unit_code=10, max_unit_code=99, check="luhn")
#: From the 2025 round on: ``UUUUUSSSSC``, Damm.
CURRENT = FormIdFormat("current", unit_digits=5, serial_digits=4, min_unit_code=1, max_unit_code=99_999,
                       check="damm")
#: Both formats, told apart by their length; every reader accepts both.
FORMATS = (LEGACY, CURRENT)

LEGACY_LENGTH = LEGACY.length
CURRENT_LENGTH = CURRENT.length
LEGACY_MAX_SERIAL = LEGACY.max_serial
CURRENT_MAX_SERIAL = CURRENT.max_serial
CURRENT_MAX_UNIT_CODE = CURRENT.max_unit_code

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
_DAMM.setflags(write=False)
# 2d with its digits summed, for d = 0..9 (Luhn's doubling)
_LUHN_DOUBLED = np.array([(2 * d) // 10 + (2 * d) % 10 for d in range(10)], dtype=np.int64)
_LUHN_DOUBLED.setflags(write=False)


def damm_table() -> np.ndarray:
    """Damm's quasigroup of order 10 (a copy): ``T[interim, digit]`` is the next interim digit.

    The check digit of a payload is the interim digit after its last digit, starting from 0; a
    whole id checks when the interim digit after its check digit is 0. Other implementations of the
    same check (the XLSForm constraint of :mod:`sipas_lib.xlsform`, evaluated on the device) take
    the table from here, so the device and intake cannot disagree.

    .. math:: c = T[\\ldots T[T[0, d_1], d_2] \\ldots, d_n]

    References
    ----------
    H. M. Damm, "Total anti-symmetrische Quasigruppen", PhD thesis, Marburg, 2004, table 5.2.

    Examples
    --------
    >>> int(damm_table()[damm_table()[damm_table()[0, 5], 7], 2])  # Damm's worked example 572 -> 4
    4
    """
    return _DAMM.astype(np.int64)


def luhn_doubled() -> np.ndarray:
    """Luhn's doubling as a table (a copy): entry ``d`` is the digit sum of ``2 d``.

    In the Luhn check the payload digits at odd distance from the check digit (the rightmost payload
    digit, then every second one to its left) are replaced by this table's entry; the check digit
    makes the sum ≡ 0 (mod 10).

    .. math:: c = \\Bigl(10 - \\bigl(\\textstyle\\sum_{j\\ \\mathrm{doubled}} D(d_j)
              + \\sum_{j\\ \\mathrm{other}} d_j\\bigr) \\bmod 10\\Bigr) \\bmod 10

    References
    ----------
    H. P. Luhn, "Computer for verifying numbers", US patent 2,950,048, 1960.

    Examples
    --------
    >>> luhn_doubled().tolist()
    [0, 2, 4, 6, 8, 1, 3, 5, 7, 9]
    """
    return _LUHN_DOUBLED.copy()


def _digits(payload: np.ndarray, width: int) -> np.ndarray:
    return (payload[:, None] // 10 ** np.arange(width - 1, -1, -1)) % 10


def luhn_check_digit(payload: np.ndarray, width: int = LEGACY.payload_digits) -> np.ndarray:
    """Luhn check digit of ``width``-digit payloads (legacy ids: 5 digits); see :func:`luhn_doubled`.

    Examples
    --------
    >>> luhn_check_digit(np.array([10001])).tolist()  # legacy id 100016
    [6]
    """
    digits = _digits(np.asarray(payload, dtype=np.int64), width)
    doubled = (width - 1 - np.arange(width)) % 2 == 0  # the rightmost payload digit, then every second one
    terms = np.where(doubled, _LUHN_DOUBLED[digits], digits)
    return (10 - terms.sum(axis=1) % 10) % 10


def damm_check_digit(payload: np.ndarray, width: int = CURRENT.payload_digits) -> np.ndarray:
    """Damm check digit of ``width``-digit payloads: the interim digit after the last one (:func:`damm_table`).

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


_CHECK_DIGIT = {"luhn": luhn_check_digit, "damm": damm_check_digit}


def _check_digit(fmt: FormIdFormat, payload: np.ndarray) -> np.ndarray:
    return _CHECK_DIGIT[fmt.check](payload, fmt.payload_digits)


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
    fmt = LEGACY if legacy else CURRENT
    codes = _as_int_array(unit_codes, "unit_codes")
    ser = _as_int_array(serials, "serials")
    codes, ser = np.broadcast_arrays(codes, ser)
    low, high = fmt.min_unit_code, fmt.max_unit_code
    bad = (codes < low) | (codes > high)
    if bad.any():
        width = f"{fmt.unit_digits}-digit" if legacy else f"at most {fmt.unit_digits}-digit"
        raise ValueError(f"unit codes must be {width} numbers {low}-{high}, got {codes[bad][:5].tolist()}")
    bad = (ser < 1) | (ser > fmt.max_serial)
    if bad.any():
        raise ValueError(f"serials must be 1-{fmt.max_serial} within a unit, got {ser[bad][:5].tolist()}")
    payload = codes * 10 ** fmt.serial_digits + ser
    ids = payload * 10 + _check_digit(fmt, payload)
    text = ids.astype(f"U{fmt.length}")
    return np.char.zfill(text, fmt.length) if text.size else text  # zfill cannot take an empty array


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
    for fmt in FORMATS:
        rows = text.str.fullmatch(f"[0-9]{{{fmt.length}}}").fillna(False).to_numpy(dtype=bool)
        if not rows.any():
            continue
        v = text[rows].astype(np.int64).to_numpy()
        payload, check = v // 10, v % 10
        unit, serial = payload // 10 ** fmt.serial_digits, payload % 10 ** fmt.serial_digits
        out[rows] = (_check_digit(fmt, payload) == check) & (unit >= fmt.min_unit_code) & (serial >= 1)
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
    out = np.zeros(len(text), dtype=np.int64)
    length = text.str.len().to_numpy()
    for fmt in FORMATS:
        rows = length == fmt.length
        out[rows] = text[rows].str.slice(0, fmt.unit_digits).astype(np.int64).to_numpy()
    return out
