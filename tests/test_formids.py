"""Form ids: both formats round-trip, and the check digit catches what it promises.

The current format's claims are checked exhaustively on a sample of ids of the largest unit count:
every single mistyped digit and every adjacent transposition is detected (Damm's property);
the legacy 6-digit ids keep parsing.
"""

from __future__ import annotations

import numpy as np
import pytest

from sipas_lib import formids


def _single_digit_typos(form_id: str) -> list[str]:
    return [form_id[:i] + d + form_id[i + 1:] for i in range(len(form_id)) for d in "0123456789" if d != form_id[i]]


def _adjacent_swaps(form_id: str) -> list[str]:
    return [form_id[:i] + form_id[i + 1] + form_id[i] + form_id[i + 2:]
            for i in range(len(form_id) - 1) if form_id[i] != form_id[i + 1]]


def test_damm_matches_the_published_example():
    # Damm (2004) / Wikipedia "Damm algorithm": 572 -> check digit 4; 5724 checks to interim 0
    assert formids.damm_check_digit(np.array([572]), width=3).tolist() == [4]
    assert formids.damm_check_digit(np.array([5724]), width=4).tolist() == [0]


def test_current_ids_round_trip_for_every_unit_of_a_national_survey():
    # 3,321 communes (codes up to 5 digits) plus provinces and departments: the whole code space
    codes = np.arange(1, formids.CURRENT_MAX_UNIT_CODE + 1)
    serials = (codes * 7919) % formids.CURRENT_MAX_SERIAL + 1
    ids = formids.make_form_ids(codes, serials)
    assert all(len(i) == 10 for i in ids[:5]) and len(set(ids)) == len(ids)
    assert formids.check_form_ids(ids).all()
    assert np.array_equal(formids.unit_code_of(ids), codes)
    assert np.array_equal(np.array([int(i[5:9]) for i in ids]), serials)


@pytest.mark.parametrize("legacy", [False, True])
def test_every_single_digit_typo_is_detected(legacy):
    rng = np.random.default_rng(11)
    if legacy:
        codes, serials = rng.integers(10, 100, 300), rng.integers(1, 1000, 300)
    else:
        codes, serials = rng.integers(1, 100_000, 300), rng.integers(1, 10_000, 300)
    ids = formids.make_form_ids(codes, serials, legacy=legacy)
    typos = [t for i in ids for t in _single_digit_typos(str(i))]
    assert not formids.check_form_ids(typos).any()


def test_every_adjacent_swap_is_detected_in_current_ids():
    rng = np.random.default_rng(12)
    ids = formids.make_form_ids(rng.integers(1, 100_000, 2000), rng.integers(1, 10_000, 2000))
    swaps = [t for i in ids for t in _adjacent_swaps(str(i))]
    assert swaps and not formids.check_form_ids(swaps).any()


def test_legacy_luhn_misses_only_09_swaps_and_old_ids_still_parse():
    # every legacy id: Luhn misses exactly the 0<->9 adjacent swaps (why the current format uses Damm)
    codes, serials = np.meshgrid(np.arange(10, 100), np.arange(1, 1000))
    ids = formids.make_form_ids(codes.ravel(), serials.ravel(), legacy=True)
    assert formids.check_form_ids(ids).all()
    sample = ids[::97]
    swaps = [t for i in sample for t in _adjacent_swaps(str(i))]
    ok = formids.check_form_ids(swaps)
    assert ok.any()  # Luhn's known blind spot exists in the sample ...
    assert all({a, b} == {"0", "9"} for t in np.asarray(swaps)[ok] for a, b in [_swapped_pair(t, sample)])  # ... and is the only one
    assert formids.unit_code_of(["100016", "310250"]).tolist() == [10, 31]


def _swapped_pair(t: str, sample) -> tuple[str, str]:
    for i in sample:
        i = str(i)
        for j in range(len(i) - 1):
            if i[:j] + i[j + 1] + i[j] + i[j + 2:] == t:
                return i[j], i[j + 1]
    raise AssertionError(t)


def test_malformed_ids_are_rejected():
    bad = [None, np.nan, "", "12345", "123456789", "12345678901", "000000000" + "0", "0007000019x"]
    assert not formids.check_form_ids(bad).any()
    with pytest.raises(ValueError, match="invalid form id"):
        formids.unit_code_of(["0007000018"])
    with pytest.raises(ValueError, match="1-9999"):
        formids.make_form_ids([70], [10_000])
    with pytest.raises(ValueError, match="5-digit"):
        formids.make_form_ids([100_000], [1])


def test_damm_table_is_a_totally_antisymmetric_quasigroup_and_a_copy():
    """The public table (what the XLSForm constraint is built from): a Latin square with a zero
    diagonal and T[T[c, x], y] = T[T[c, y], x] only when x = y (Damm 2004, def. 2.1)."""
    table = formids.damm_table()
    assert table.shape == (10, 10)
    assert all(sorted(row) == list(range(10)) for row in table)
    assert all(sorted(col) == list(range(10)) for col in table.T)
    assert (np.diag(table) == 0).all()
    c, x, y = np.meshgrid(np.arange(10), np.arange(10), np.arange(10), indexing="ij")
    same = table[table[c, x], y] == table[table[c, y], x]
    assert (same == (x == y)).all()
    table[0, 0] = 9  # a copy: changing it changes no check digit
    assert formids.damm_table()[0, 0] == 0 and formids.check_form_ids(["0007000019"]).all()


def test_luhn_doubled_is_the_digit_sum_of_twice_the_digit():
    assert formids.luhn_doubled().tolist() == [sum(map(int, str(2 * d))) for d in range(10)]
    # the legacy check digit by hand: 10001 -> 1, 0, 0, 0, 1 with the 1st, 3rd, 5th doubled: 2+0+0+0+2 = 4 -> 6
    assert formids.luhn_check_digit(np.array([10001])).tolist() == [6]


def test_formats_describe_both_layouts():
    assert [f.length for f in formids.FORMATS] == [6, 10]
    assert (formids.LEGACY.unit_digits, formids.LEGACY.serial_digits, formids.LEGACY.check) == (2, 3, "luhn")
    assert (formids.CURRENT.unit_digits, formids.CURRENT.serial_digits, formids.CURRENT.check) == (5, 4, "damm")
    ids = formids.make_form_ids([formids.CURRENT.max_unit_code], [formids.CURRENT.max_serial])
    assert ids.tolist() == ["9999999999"[:9] + str(formids.damm_check_digit(np.array([999999999]))[0])]
    assert formids.unit_code_of(ids).tolist() == [99999]
