"""The run configuration (sipas_lib.settings): defaults, a user's file, -p overrides, the saved copy."""

from __future__ import annotations

import pytest
import yaml

from sipas_lib import settings as S
from sipas_lib.settings import SettingsError, load_run_settings, load_settings, stage_settings
from sipas_lib.stages import STAGE_OF_NOTEBOOK


def _shipped() -> dict:
    return yaml.safe_load(S.DEFAULTS_FILE.read_text(encoding="utf-8"))


def test_defaults_load_every_section_of_the_shipped_file():
    s = load_settings()
    shipped = _shipped()
    assert list(s.sections) == list(shipped)
    for name, values in shipped.items():
        assert dict(s.section(name)) == (values or {}), name
    assert (s.year, s.lang, s.level, s.seed, s.min_publish_n) == (
        shipped["common"]["year"], shipped["common"]["lang"], shipped["common"]["level"],
        shipped["common"]["seed"], shipped["common"]["min_publish_n"])
    # every stage notebook has a section named after its stage module
    assert set(STAGE_OF_NOTEBOOK.values()) <= set(s.sections)
    with pytest.raises(TypeError):
        s.section("weighting")["trim_ratio"] = 1.0  # read-only


def test_config_file_merges_over_the_defaults(tmp_path):
    path = tmp_path / "hanoi.yaml"
    path.write_text("common:\n  lang: en\nweighting:\n  trim_ratio: 2\n  calibration: rake\n", encoding="utf-8")
    s = load_settings(path)
    assert s.lang == "en"
    assert s.section("weighting")["trim_ratio"] == 2.0 and isinstance(s.section("weighting")["trim_ratio"], float)
    assert s.section("weighting")["calibration"] == "rake"
    assert s.section("weighting")["min_cell"] == _shipped()["weighting"]["min_cell"]  # untouched key kept
    assert s.section("reliability") == load_settings().section("reliability")
    assert str(path) in s.sources
    # keywords and -p come after the file
    later = load_settings(path, overrides=["weighting.trim_ratio=4.5"], lang="vi")
    assert later.lang == "vi" and later.section("weighting")["trim_ratio"] == 4.5


@pytest.mark.parametrize(
    "override, section, key, expected",
    [
        ("weighting.trim_ratio=3", "weighting", "trim_ratio", 3.0),
        ("reliability.n_boot=200", "reliability", "n_boot", 200),
        ("intake_quality.keep_free_text=True", "intake_quality", "keep_free_text", True),
        ("intake_quality.keep_free_text=false", "intake_quality", "keep_free_text", False),
        ("monthly_report.unit_id=S01", "monthly_report", "unit_id", "S01"),
        ("annual_survey_report.publication=Số 12/BC", "annual_survey_report", "publication", "Số 12/BC"),
        ("year=2024", "common", "year", 2024),
        ("common.level=0.9", "common", "level", 0.9),
    ],
)
def test_override_values_take_the_type_of_the_default(override, section, key, expected):
    value = load_settings(overrides=[override]).section(section)[key]
    assert value == expected and type(value) is type(expected)


@pytest.mark.parametrize(
    "override, message",
    [
        ("reliability.n_boot=2.5", "-p reliability.n_boot: expected int"),
        ("weighting.trim_ratio=high", "-p weighting.trim_ratio: expected float"),
        ("intake_quality.keep_free_text=1", "expected bool"),
        ("weighting", "expected SECTION.NAME=VALUE"),
        ("a.b.c=1", "expected SECTION.NAME=VALUE"),
    ],
)
def test_override_of_the_wrong_type_or_shape_is_refused(override, message):
    with pytest.raises(SettingsError, match=message.replace(".", r"\.")):
        load_settings(overrides=[override])


def test_unknown_section_or_key_names_the_file_and_the_key(tmp_path):
    typo = tmp_path / "typo.yaml"
    typo.write_text("weigthing:\n  trim_ratio: 2\n", encoding="utf-8")
    with pytest.raises(SettingsError) as err:
        load_settings(typo)
    assert str(typo) in str(err.value) and "'weigthing'" in str(err.value) and "weighting" in str(err.value)
    key = tmp_path / "key.yaml"
    key.write_text("weighting:\n  trim: 2\n", encoding="utf-8")
    with pytest.raises(SettingsError) as err:
        load_settings(key)
    assert str(key) in str(err.value) and "weighting.trim" in str(err.value) and "trim_ratio" in str(err.value)
    with pytest.raises(SettingsError, match=r"-p weighting\.trim: unknown setting"):
        load_settings(overrides=["weighting.trim=2"])
    with pytest.raises(SettingsError, match="unknown section 'nowhere'"):
        load_settings(overrides=["nowhere.x=1"])
    with pytest.raises(SettingsError, match="configuration file not found"):
        load_settings(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("weighting: [1, 2\n", encoding="utf-8")
    with pytest.raises(SettingsError, match="not valid YAML"):
        load_settings(bad)


def test_bare_name_outside_common_names_the_sections_that_hold_it():
    with pytest.raises(SettingsError) as err:
        load_settings(overrides=["trim_ratio=2.5"])
    assert "trim_ratio is a setting of weighting" in str(err.value)
    with pytest.raises(SettingsError, match="no section has a setting n_bootstrap"):
        load_settings(overrides=["n_bootstrap=5"])


@pytest.mark.parametrize("level", [1.0, 1.5, 0.4, 0])
def test_level_must_be_a_confidence_level(level):
    with pytest.raises(SettingsError, match="common.level must be a confidence level"):
        load_settings(level=level)


def test_common_values_are_checked():
    assert load_settings(level=0.9).level == 0.9
    with pytest.raises(SettingsError, match="common.lang must be one of vi, en"):
        load_settings(lang="fr")
    with pytest.raises(SettingsError, match="min_publish_n must be at least 1"):
        load_settings(overrides=["min_publish_n=0"])


def test_for_stage_gives_common_and_only_its_own_section():
    s = load_settings(overrides=["weighting.trim_ratio=2.5", "reliability.n_boot=50"])
    given = s.for_stage("weighting")
    assert set(given) == {"common", "stage"}
    assert given["common"] == dict(s.common)
    assert given["stage"] == dict(s.section("weighting"))
    assert "n_boot" not in given["stage"] and given["stage"]["trim_ratio"] == 2.5
    assert type(given["stage"]) is dict and type(given["common"]) is dict  # papermill needs plain dicts
    with pytest.raises(SettingsError, match="no settings section 'nope'"):
        s.for_stage("nope")
    # what a notebook rebuilds from its parameters is the same configuration for that stage
    rebuilt = stage_settings("weighting", given["common"], given["stage"])
    assert rebuilt.section("weighting") == s.section("weighting") and rebuilt.common == s.common


def test_saved_file_round_trips_with_load_run_settings(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("common:\n  lang: en\n", encoding="utf-8")
    s = load_settings(config, overrides=["weighting.calibration=rake", "annual_survey_report.publication=<b>x</b>"],
                      year=2024, level=0.9)
    path = s.save(tmp_path / "run")
    assert path == tmp_path / "run" / S.RUN_SETTINGS_FILE
    assert "Sources:" in path.read_text(encoding="utf-8").splitlines()[0]
    again = load_run_settings(tmp_path / "run")
    assert again.to_dict() == s.to_dict()
    assert load_run_settings(tmp_path / "no-run").to_dict() == load_settings().to_dict()


def test_replace_changes_one_value_and_says_so():
    s = load_settings()
    later = s.replace(year=s.year - 1, index_ranking__previous_results="/r/results")
    assert later.year == s.year - 1 and later.section("index_ranking")["previous_results"] == "/r/results"
    assert s.year == load_settings().year  # the original is unchanged
    assert any("common.year" in source for source in later.sources)
