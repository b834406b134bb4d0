"""Phone numbers and e-mail addresses are scrubbed from free text (issue 11, item 5)."""

import pandas as pd
import pytest

from sipas_lib.privacy import EMAIL_MARK, PHONE_MARK, scrub_contacts, scrub_text

PHONES = [
    "0912345678",            # mobile, 10 digits
    "0912 345 678",          # spaces
    "0912.345.678",          # dots
    "091-234-5678",          # dashes
    "098 765 4321",
    "0362345678",            # 03x mobile (2018 numbering)
    "+84912345678",          # international
    "+84 912 345 678",
    "+84-91-234-5678",
    "84912345678",           # international without '+'
    "(+84) 912.345.678",
    "024 3825 1234",         # Hà Nội landline with area code (11 digits)
    "(024) 3825-1234",
    "024.3825.1234",
    "+84 24 3825 1234",
    "028-3829-5678",         # Hồ Chí Minh City landline
]

NOT_PHONES = [
    "Trung cấp lý luận chính trị",
    "tốt nghiệp 01.02.2015",          # a date
    "học phí 1.000.000 đồng",          # an amount
    "CCCD 001203004567",               # 12 digits: not a phone number
    "lớp 12, năm 2020",
    "mã 12345",
    "Chứng chỉ <nghề> & 'ngắn hạn'",
]


@pytest.mark.parametrize("phone", PHONES)
def test_vietnamese_phone_formats_are_scrubbed(phone):
    text = f"Nguyễn Văn An, ĐT {phone}, cảm ơn"
    assert scrub_text(text) == f"Nguyễn Văn An, ĐT {PHONE_MARK}, cảm ơn"


@pytest.mark.parametrize("text", NOT_PHONES)
def test_other_numbers_and_text_are_left_alone(text):
    assert scrub_text(text) == text


@pytest.mark.parametrize("email", ["lan.nguyen@gmail.com", "an_tran+sipas@hanoi.gov.vn", "X-Y@mail.co"])
def test_email_addresses_are_scrubbed(email):
    assert scrub_text(f"liên hệ {email}.") == f"liên hệ {EMAIL_MARK}."


def test_several_contacts_in_one_answer():
    text = "Hoa 0912.345.678 / hoa@yahoo.com / (024) 3825 1234"
    assert scrub_text(text) == f"Hoa {PHONE_MARK} / {EMAIL_MARK} / {PHONE_MARK}"


def test_scrub_contacts_keeps_missing_values_index_and_name():
    values = pd.Series(["gọi 0987654321", None, "Bổ túc văn hóa"], index=[5, 7, 9], name="education_other",
                       dtype=object)
    out = scrub_contacts(values)
    assert out.index.tolist() == [5, 7, 9] and out.name == "education_other"
    assert out.iloc[0] == f"gọi {PHONE_MARK}" and pd.isna(out.iloc[1]) and out.iloc[2] == "Bổ túc văn hóa"
    assert values.iloc[0] == "gọi 0987654321"  # the input is not modified
