"""A seeded national-scale year: every commune and provincial department of the 34 provinces rated.

The benchmark year of ``make bench-scale`` (issue 16 §1): the city design of :mod:`sipas_lib.simulate`
run province by province over the whole country, so every commune is a surveyed unit with its own
index, rank confidence set and scorecard. Nothing here is committed: ``bench/bench_scale.py``
writes it under ``bench/.data/`` (git-ignored). Everything is drawn from one
``numpy.random.Generator`` seeded by ``(seed, year)``, in a fixed order, with the demo's own
functions (:func:`sipas_lib.simulate.simulate_frame`, :func:`~sipas_lib.simulate.draw_sample`,
:func:`~sipas_lib.simulate.simulate_answers`, :func:`~sipas_lib.simulate.spoil`,
:func:`~sipas_lib.simulate.simulate_dossiers`), so the same ``(year, seed)`` gives the same tables.

The model
---------
*Units.* The 34 provinces and their 3,321 communes, wards and special zones with their official
names and codes (:func:`sipas_lib.official_units.provinces` / :func:`~sipas_lib.official_units.communes`),
and :data:`DEPARTMENTS` (17) provincial departments in each province — 578 in all — with the codes of
:func:`sipas_lib.official_units.department_code`. The department list is the usual set of a province's
specialised agencies after the 2025 restructuring (Decree 45/2025/NĐ-CP) plus two bodies that handle
many procedures; it is not each province's real list. Every unit is valid from the reform
(1 July 2025), so the year's frame starts then.

*Frame.* :func:`sipas_lib.simulate.simulate_frame` (log-normal yearly sizes, median 2,500 for a commune,
7,000 for a department) times :data:`FRAME_SCALE` = 0.25: the frame covers the ~66 days between the
reform and the fieldwork (1 July – 5 September) of a yearly volume, about 3.7 million transactions.

*Sample.* :data:`FORMS_PER_UNIT` questionnaires issued per unit on average (120 per department, 133
per commune: ~500,000 in all), equal over departments and by power allocation with a minimum over
communes (:data:`sipas_lib.simulate.LOCAL_ALLOCATION`); about 80 % come back, ~400,000 forms.

*Answers, non-response, broken records.* As in the city demo (:func:`sipas_lib.simulate.simulate_answers`):
the latent-variable model with unit and element effects drawn for every unit of the registry, the
department form for departments and the commune form for communes and wards; the same eight spoiled
records.

*Fieldwork integrity* (stage 25), as in the demo (:func:`sipas_lib.simulate_integrity.plant_integrity_cases`,
its own random stream ``(seed, year, 13)``, so the other tables do not change with it): every returned
form's collection point and return date, two planted fabrication blocks (a department and a commune),
every unit's own survey (``self_survey.csv``, Phụ lục 2: 10–30 forms a month from July, ~470,000 forms),
the re-check of the forms flagged in the sample (``recheck.csv``, ~5 %) and ``planted_cases.csv``. All of
it is drawn for every unit at once (one loop per planted unit only).

*Administrative tables.* :func:`sipas_lib.simulate.simulate_dossiers`: a year of dossiers (1.3 per
frame transaction, ~4.8 million), procedures, feedback, apology letters and opinions per unit, which
follow each unit's satisfaction as in the demo (:func:`sipas_lib.simulate.admin_quality`), so the
small-area model has covariates to borrow from. The 100-million-dossier case is
``bench/bench_dossiers_scale.py``.

Run ``python -m sipas_lib.simulate_scale --out DIR`` (``--provinces 2`` for a small year).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd

from sipas_lib import official_units
from sipas_lib import simulate, simulate_integrity
from sipas_lib.config import DEFAULT_SEED, DEFAULT_YEAR
from sipas_lib.units import REQUIRED_COLUMNS, survey_tier, surveyed_units, validate_units

__all__ = ["DEPARTMENTS", "FORMS_PER_UNIT", "FRAME_SCALE", "SCALE_FILES", "scale_units", "scale_tables",
           "scale_year", "write_scale_year"]

#: A province's departments (Vietnamese, English), in the order of their form-id codes (+1 … +17).
DEPARTMENTS = (
    ("Sở Nội vụ", "Department of Home Affairs"),
    ("Sở Tư pháp", "Department of Justice"),
    ("Sở Tài chính", "Department of Finance"),
    ("Sở Công Thương", "Department of Industry and Trade"),
    ("Sở Nông nghiệp và Môi trường", "Department of Agriculture and Environment"),
    ("Sở Xây dựng", "Department of Construction"),
    ("Sở Khoa học và Công nghệ", "Department of Science and Technology"),
    ("Sở Văn hóa, Thể thao và Du lịch", "Department of Culture, Sports and Tourism"),
    ("Sở Giáo dục và Đào tạo", "Department of Education and Training"),
    ("Sở Y tế", "Department of Health"),
    ("Sở Dân tộc và Tôn giáo", "Department of Ethnic Minority and Religious Affairs"),
    ("Sở Ngoại vụ", "Department of Foreign Affairs"),
    ("Thanh tra", "Inspectorate"),
    ("Văn phòng Ủy ban nhân dân", "Office of the People's Committee"),
    ("Ban Quản lý các khu công nghiệp", "Industrial Parks Authority"),
    ("Văn phòng Đăng ký đất đai", "Land Registration Office"),
    ("Trung tâm Phục vụ hành chính công", "Public Administrative Service Centre"),
)
#: The frame's share of a yearly volume: the ~66 days from the reform (1 July) to the fieldwork.
FRAME_SCALE = 0.25
#: Questionnaires issued per unit on average, by tier (:func:`sipas_lib.units.survey_tier`).
FORMS_PER_UNIT = {"department": 120, "local": 133}
#: The files of a scale year: a two-tier demo year's survey, fieldwork-integrity (stage 25: own surveys,
#: re-check results, the planted cases' log) and administrative tables.
SCALE_FILES = ("units.csv", "frame_counts.csv", "frame.parquet", "sample.csv", "responses_departments.xlsx",
               "responses_communes.csv", "spoiled_records.csv", *simulate_integrity.FILES, "dossiers.parquet",
               "procedures.csv", "feedback.parquet", "apologies.parquet", "opinions.parquet")


def scale_units(provinces: int | None = None) -> pd.DataFrame:
    """The scale year's units registry: provinces, their departments, then every commune (validated).

    Parameters
    ----------
    provinces
        Keep the first few provinces of the official list (small test years); ``None`` = all 34.

    Returns
    -------
    DataFrame
        Registry rows (:func:`sipas_lib.units.validate_units`): ``unit_id, code, name_vi, name_en,
        unit_type, parent_id, valid_from, valid_to``, all valid from 1 July 2025. A department is
        ``S<code>`` with code :func:`sipas_lib.official_units.department_code` and is named with its
        province (``Sở Tư pháp thành phố Hà Nội``, ``Sở Tư pháp tỉnh Cao Bằng``, ``Department of Justice, Ha Noi
        City``).

    Examples
    --------
    >>> scale_units(2)["unit_type"].value_counts().to_dict()
    {'commune': 128, 'ward': 54, 'department': 34, 'province': 2}
    """
    prov = official_units.provinces()
    if provinces is not None:
        prov = prov.head(provinces)
    number = np.arange(1, len(DEPARTMENTS) + 1)
    reps = prov.loc[prov.index.repeat(len(DEPARTMENTS))].reset_index(drop=True)
    k = np.tile(number, len(prov))
    province_code = reps["unit_id"].str[1:].astype(int).to_numpy()
    codes = np.array([official_units.department_code(p, n) for p, n in zip(province_code, k)])
    dept_vi = pd.Series([vi for vi, _ in DEPARTMENTS] * len(prov))
    dept_en = pd.Series([en for _, en in DEPARTMENTS] * len(prov))
    # the province as it follows a department's name: "thành phố Hà Nội", "tỉnh Cao Bằng"
    city = reps["name_vi"].str.startswith("Thành phố ")
    of_province = ("thành phố " + reps["name_vi"].str.removeprefix("Thành phố ")).where(city, "tỉnh " + reps["name_vi"])
    departments = pd.DataFrame({
        "unit_id": "S" + pd.Series(codes).astype(str),
        "code": codes,
        "name_vi": dept_vi + " " + of_province,
        "name_en": dept_en + ", " + reps["name_en"],
        "unit_type": "department",
        "parent_id": reps["unit_id"],
        "valid_from": official_units.REFORM_DATE.isoformat(),
        "valid_to": pd.NA,
    })
    communes = official_units.communes()
    communes = communes.loc[communes["parent_id"].isin(prov["unit_id"])]
    registry = pd.concat([prov, departments, communes], ignore_index=True)
    return validate_units(registry, source="scale year units")


def scale_tables(year: int = DEFAULT_YEAR, seed: int = DEFAULT_SEED, provinces: int | None = None,
                 forms_per_unit: dict[str, int] | None = None,
                 frame_scale: float = FRAME_SCALE) -> Iterator[tuple[str, pd.DataFrame]]:
    """The national-scale year's tables, one ``(file name, table)`` at a time.

    One at a time so that a writer can let go of the 3.7-million-row frame before the 4.8 million
    dossiers are drawn (peak memory); :func:`scale_year` collects them.

    Parameters
    ----------
    year, seed
        The same pair always gives the same tables (one generator seeded by ``(seed, year, 16)``).
    provinces
        Keep the first few provinces (small test years); ``None`` = all 34.
    forms_per_unit
        Questionnaires issued per unit on average, by tier (default :data:`FORMS_PER_UNIT`).
    frame_scale
        The frame's share of a unit's yearly transactions (default :data:`FRAME_SCALE`); the
        dossiers follow the frame's size.

    Yields
    ------
    tuple
        The files :data:`SCALE_FILES`, in this order: ``units.csv``,
        ``frame_counts.csv``, ``frame.parquet``, ``sample.csv``, ``responses_departments.xlsx``
        (Vietnamese headers), ``responses_communes.csv``, ``spoiled_records.csv``, the integrity files
        ``self_survey.csv``, ``recheck.csv``, ``planted_cases.csv``, then the administrative tables ``dossiers.parquet``, ``procedures.csv``, ``feedback.parquet``,
        ``apologies.parquet``, ``opinions.parquet``.
    """
    rng = np.random.default_rng([seed, year, 16])
    registry = scale_units(provinces)
    units = registry[list(REQUIRED_COLUMNS)]
    yield "units.csv", units.assign(code=units["code"].astype("Int64"))
    surveyed = surveyed_units(units)
    tier = pd.Series(survey_tier(surveyed).to_numpy(), index=surveyed["unit_id"])
    per_unit = FORMS_PER_UNIT if forms_per_unit is None else forms_per_unit
    totals = {t: int(per_unit[t]) * int((tier == t).sum()) for t in ("department", "local")}
    frame = simulate.simulate_frame(surveyed, year, rng, frame_scale, since=official_units.REFORM_DATE.isoformat())
    sample = simulate.draw_sample(frame, surveyed, rng, totals, local=simulate.LOCAL_ALLOCATION)
    frame_sizes = frame.groupby("unit_id").size()
    yield "frame_counts.csv", frame.groupby(["unit_id", "field", "channel"]).size().rename("N").reset_index()
    yield "frame.parquet", frame
    del frame
    yield "sample.csv", sample
    answers = simulate.simulate_answers(sample, surveyed, rng, year, seed, registry)
    # the tier is looked up before spoiling (as in the demo): the record made "unknown unit" and the
    # duplicated copies stay in the file of their real unit's form
    answers.insert(0, "_tier", answers["unit_id"].map(tier))
    answers, spoiled = simulate.spoil(answers, rng, answers["_tier"].map(
        simulate._unknown_unit_ids(registry, two_tier=True)))
    answers, integrity = simulate_integrity.plant_integrity_cases(answers, sample, spoiled, surveyed, registry, year,
                                                                  seed)
    is_department = (answers.pop("_tier") == "department").to_numpy()
    departments = answers.loc[is_department].drop(columns=[c for c in answers if c.startswith("lg")])
    yield simulate.RESPONSE_FILES["department"], simulate.to_vietnamese_headers(departments)
    yield simulate.RESPONSE_FILES["commune"], answers.loc[~is_department]
    yield "spoiled_records.csv", spoiled
    yield from integrity.items()
    del answers, departments, integrity
    quality = simulate.admin_quality(units, seed, year, registry)  # records follow satisfaction, as in the demo
    for name, table in simulate.simulate_dossiers(units, frame_sizes, year, rng, quality=quality).items():
        yield (f"{name}.csv" if name == "procedures" else f"{name}.parquet"), table


def scale_year(year: int = DEFAULT_YEAR, seed: int = DEFAULT_SEED, **options) -> dict[str, pd.DataFrame]:
    """Every table of :func:`scale_tables` at once (file name -> table); ``options`` as there."""
    return dict(scale_tables(year, seed, **options))


def write_scale_year(folder: str | os.PathLike, year: int = DEFAULT_YEAR, seed: int = DEFAULT_SEED,
                     **options) -> dict[str, Path]:
    """Write :func:`scale_year` to ``folder`` (created if needed; existing files are overwritten).

    CSV with ``\\n`` line ends, Parquet, and the departments' workbook through
    :func:`sipas_lib.simulate.write_reproducible_xlsx` (no clock in the file), each table written as
    soon as it is drawn. ``options`` go to :func:`scale_tables`. Returns file name -> path.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for name, table in scale_tables(year, seed, **options):
        path = folder / name
        if name.endswith(".csv"):
            table.to_csv(path, index=False, encoding="utf-8", lineterminator="\n")
        elif name.endswith(".parquet"):
            table.to_parquet(path, index=False)
        else:
            simulate.write_reproducible_xlsx(table, path, sheet_name="Phieu", year=year)
        written[name] = path
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write the seeded national-scale SIPAS year (issue 16).")
    parser.add_argument("--out", required=True, help="folder to write (not committed: e.g. bench/.data/scale)")
    parser.add_argument("--year", type=int, default=DEFAULT_YEAR)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--provinces", type=int, default=None, help="only the first few provinces")
    args = parser.parse_args(argv)
    for name, path in write_scale_year(args.out, args.year, args.seed, provinces=args.provinces).items():
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
