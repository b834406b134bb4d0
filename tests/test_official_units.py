"""The official post-reform units (vietnam-provinces) as registry rows."""

from __future__ import annotations

import pandas as pd
import pytest

from sipas_lib import official_units as ou

pytest.importorskip("vietnam_provinces")


def test_all_3321_communes_and_34_provinces_load_with_unique_ids_and_codes():
    communes, provinces = ou.communes(), ou.provinces()
    assert len(communes) == 3321 and len(provinces) == 34
    both = pd.concat([communes, provinces])
    assert both["unit_id"].is_unique and both["code"].is_unique
    assert set(communes["unit_type"]) == {"commune", "ward"}
    assert communes["parent_id"].isin(provinces["unit_id"]).all()
    assert both["code"].between(1, 99999).all()  # fits the current form id (sipas_lib.formids)


def test_ha_noi_has_126_communes_51_wards():
    reg = ou.starting_registry("Hà Nội")
    local = reg[reg["unit_type"].isin(["commune", "ward"])]
    assert len(local) == 126 and (local["unit_type"] == "ward").sum() == 51
    assert reg.loc[reg["unit_type"] == "province", "name_vi"].tolist() == ["Thành phố Hà Nội"]
    assert "Phường Hoàn Kiếm" in set(local["name_vi"])


def test_unknown_province_and_unknown_codes_are_clear_errors():
    with pytest.raises(ValueError, match="unknown province 'Atlantis'.*Thành phố Hà Nội"):
        ou.province_code("Atlantis")
    reg = ou.starting_registry(1)
    ou.check_official(reg)
    bad = reg.copy()
    bad.loc[bad.index[-1], "code"] = 99998
    with pytest.raises(ValueError, match="not in the official post-2025 list"):
        ou.check_official(bad)
    renamed = reg.copy()
    renamed.loc[renamed.index[-1], "name_vi"] = "Phường Không Có"
    with pytest.raises(ValueError, match="the official name is"):
        ou.check_official(renamed)
