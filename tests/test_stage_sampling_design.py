"""Stage ``sampling_design`` on the tiny year, without a kernel."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest

from sipas_lib import config, schemas
from sipas_lib.settings import load_settings
from sipas_lib.stages import StageError
from sipas_lib.stages import sampling_design as stage


def _settings(tiny_settings, **overrides):
    """The tiny year's settings with ``sampling_design`` values (``level``/``seed`` go to common)."""
    common = {k: overrides.pop(k) for k in ("level", "seed") if k in overrides}
    return tiny_settings.replace(**common, **{f"sampling_design__{k}": v for k, v in overrides.items()})


def _paths(data_dir, tmp_path, name=""):
    # a run name of its own per test: the private mailing list goes to RAW_DIR/private/<run name>
    return config.run_paths(data_dir, tmp_path / f"{tmp_path.name}{name}")


@pytest.fixture(scope="module")
def design(tiny_demo, tiny_settings, tmp_path_factory):
    paths = _paths(tiny_demo, tmp_path_factory.mktemp("sd"))
    return paths, stage.run(paths, _settings(tiny_settings))


def test_writes_both_tables_that_meet_their_contracts(design, tiny_settings):
    paths, out = design
    allocation = schemas.read_result(paths, "sampling_allocation")
    sample = schemas.read_result(paths, "sample_design")
    assert len(allocation) == len(out.allocation) and len(sample) == len(out.sample)
    # every planned questionnaire allocated, exactly, per unit type
    n_by_type = allocation.groupby("unit_type")["n_h"].sum().to_dict()
    options = tiny_settings.section("sampling_design")
    assert n_by_type == {"department": options["total_departments"], "district": options["total_districts"]}
    main = sample.loc[sample["role"] == "main"]
    assert main.groupby("stratum").size().to_dict() == allocation.set_index("stratum")["n_h"][
        lambda s: s > 0].to_dict()
    assert np.allclose(sample["incl_prob"] * sample["design_weight"], 1.0)
    assert (allocation.groupby("unit_id")["n_h"].sum() == allocation.groupby("unit_id")["n_unit"].first()).all()


def test_unit_type_comes_from_the_registry(design, tiny_demo):
    _, out = design
    registry = pd.read_csv(tiny_demo / "units.csv", dtype=str).set_index("unit_id")["unit_type"]
    assert (out.sample["unit_type"] == out.sample["unit_id"].map(registry)).all()
    assert (out.allocation["unit_type"] == out.allocation["unit_id"].map(registry)).all()


def test_no_transaction_id_or_contacts_in_results_mailing_list_only_in_private(design):
    paths, out = design
    table = pd.read_parquet(schemas.result_path(paths, "sample_design"))
    assert not set(table.columns) & (schemas.PERSONAL_COLUMNS | {"transaction_id"})
    assert out.mailing_list is not None and out.mailing_list.is_relative_to(config.RAW_DIR)
    assert not out.mailing_list.is_relative_to(paths.run_dir)
    mailing = pd.read_csv(out.mailing_list, dtype=str, encoding="utf-8-sig")
    assert set(mailing["form_id"]) == set(out.sample["form_id"])
    assert mailing[["applicant_name", "address", "phone"]].notna().all().all()
    # nothing under the run folder carries a transaction id or a phone number
    for path in paths.run_dir.rglob("*"):
        if path.is_file() and path.suffix in (".csv", ".parquet"):
            data = path.read_bytes()
            assert mailing["transaction_id"].iloc[0].encode() not in data, path
            assert mailing["phone"].iloc[0].encode() not in data, path


def test_mailing_list_neutralises_formula_cells(tiny_demo, tiny_settings, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(tiny_demo, data, ignore=shutil.ignore_patterns("previous_year"))
    frame = pd.read_parquet(data / "frame.parquet")
    frame["applicant_name"] = "=HYPERLINK(\"http://evil\",\"x\")"
    frame["address"] = "@SUM(1+1)"
    frame.to_parquet(data / "frame.parquet", index=False)
    out = stage.run(_paths(data, tmp_path), _settings(tiny_settings))
    mailing = pd.read_csv(out.mailing_list, dtype=str, encoding="utf-8-sig")
    assert mailing["applicant_name"].str.startswith("'=").all()
    assert mailing["address"].str.startswith("'@").all()


def test_same_seed_same_sample_other_seed_other_sample(design, tiny_demo, tiny_settings, tmp_path):
    _, out = design
    again = stage.run(_paths(tiny_demo, tmp_path, "a"), _settings(tiny_settings))
    other = stage.run(_paths(tiny_demo, tmp_path, "b"), _settings(tiny_settings, seed=11))
    pd.testing.assert_frame_equal(out.sample, again.sample)
    drawn = [pd.read_csv(r.mailing_list, dtype=str, encoding="utf-8-sig") for r in (out, again, other)]
    assert drawn[0]["transaction_id"].equals(drawn[1]["transaction_id"])
    assert not drawn[0]["transaction_id"].equals(drawn[2]["transaction_id"])


def test_level_drives_the_sample_size_needed_and_the_margins(design, tiny_demo, tiny_settings, tmp_path):
    _, at95 = design
    at90 = stage.run(_paths(tiny_demo, tmp_path), _settings(tiny_settings, level=0.90))
    u95, u90 = at95.units.set_index("unit_id"), at90.units.set_index("unit_id")
    assert (u90["n_needed"] < u95["n_needed"]).all()
    assert (u90["moe"] < u95["moe"]).all()
    assert (u90["n"] == u95["n"]).all()  # the allocation itself does not depend on the level


def test_plan_above_the_frame_becomes_a_census_of_that_group(tiny_demo, tiny_settings, tmp_path):
    out = stage.run(_paths(tiny_demo, tmp_path), _settings(tiny_settings, total_districts=10**7, reserve_share=0.0))
    planned, capacity = out.capped["district"]
    assert planned == 10**7 and capacity == out.totals["district"]
    districts = out.units.loc[out.units["unit_type"] == "district"]
    assert (districts["n"] == districts["N"]).all() and districts["meets_target"].all()
    assert "department" not in out.capped


def test_frame_counts_alone_plan_the_allocation_but_draw_nothing(tiny_demo, tiny_settings, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(tiny_demo, data, ignore=shutil.ignore_patterns("previous_year", "frame.parquet"))
    paths = _paths(data, tmp_path)
    out = stage.run(paths, _settings(tiny_settings))
    assert out.sample is None and out.mailing_list is None
    assert schemas.read_result(paths, "sample_design", required=False) is None
    full = stage.run(_paths(tiny_demo, tmp_path, "full"), _settings(tiny_settings))
    pd.testing.assert_frame_equal(out.allocation, full.allocation)
    (data / "frame_counts.csv").unlink()
    with pytest.raises(StageError, match="frame.parquet nor frame_counts.csv"):
        stage.run(paths, _settings(tiny_settings))


def test_comparisons_include_the_configured_allocation(tiny_demo, tiny_settings, tmp_path):
    out = stage.run(_paths(tiny_demo, tmp_path), _settings(tiny_settings, power_exponent=0.7))
    methods = set(zip(out.comparisons["method"], out.comparisons["exponent"].fillna(0)))
    assert methods == {("equal", 0), ("proportional", 0), ("power", 0.5), ("power", 0.7)}
    assert set(out.comparisons["unit_type"]) == {"department", "district"}
    # equal allocation gives the smallest spread of unit sample sizes
    dept = out.comparisons.loc[out.comparisons["unit_type"] == "department"].set_index("method")
    assert dept.loc["equal", "n_max"] - dept.loc["equal", "n_min"] <= 1
    assert dept.loc["proportional", "n_max"] - dept.loc["proportional", "n_min"] > 1


def test_sample_design_contract_refuses_a_transaction_id():
    with pytest.raises(ValueError, match="personal"):
        schemas.register("bad_design", "sampling_design", "x", {"transaction_id": schemas.contract(
            "sample_design").schema.columns["form_id"]})


# --------------------------------------------------------------------------------------------
# Wording that follows the year's units (issue 15/12: the 2025 demo has communes, not districts)
# --------------------------------------------------------------------------------------------

def test_texts_name_the_unit_groups_only_through_the_group_labels():
    """No text of notebook 10 assumes districts: the groups are named by ``sd_group_<group>`` (both languages),
    one for every plan group the stage can form from a registry."""
    from sipas_lib.texts import load_texts

    texts = load_texts("sampling_design")
    groups = {"department", "district", "commune"}  # planned_totals: total_districts goes to the communes after 2025
    assert set(stage.GROUP_LABELS) == groups
    assert all(stage.GROUP_LABELS[g] in texts for g in groups)
    for key, value in texts.items():
        if key == stage.GROUP_LABELS["district"]:
            continue
        for lang, word in (("vi", "quận"), ("vi", "huyện"), ("en", "district")):
            assert word not in value[lang].lower(), (key, lang)
    assert stage.planned_totals({"total_departments": 5, "total_districts": 9},
                                pd.DataFrame({"unit_type": ["department", "ward", "commune"]})) == {
        "department": 5, "commune": 9}


def test_two_tier_year_plans_communes_and_wards_with_current_form_ids(tiny_two_tier_demo, tiny_two_tier_settings,
                                                                      tmp_path):
    from sipas_lib import formids
    from sipas_lib.notebook import open_stage

    out = stage.run(_paths(tiny_two_tier_demo, tmp_path), tiny_two_tier_settings)
    assert set(out.planned) == {"department", "commune"}  # the registry has wards and no district
    assert set(out.units["unit_type"]) == {"department", "commune"}
    assert out.id_formats == [formids.CURRENT] and out.sample["form_id"].str.len().eq(10).all()
    # what the notebook says: the groups by their registry names, in both languages
    ctx = open_stage("sampling_design", str(tmp_path / "nb"), str(tiny_two_tier_demo))
    intro = {}
    for lang in ("vi", "en"):
        ctx = ctx.__class__(ctx.stage, ctx.paths, ctx.settings.replace(lang=lang))
        intro[lang] = "; ".join(ctx.label(stage.GROUP_LABELS[t]) for t in out.planned)
    assert intro == {"vi": "các sở, ban, ngành; các xã, phường", "en": "departments; communes and wards"}


def test_legacy_year_keeps_districts_and_six_digit_ids(design):
    from sipas_lib import formids

    _, out = design
    assert set(out.planned) == {"department", "district"} and out.id_formats == [formids.LEGACY]
