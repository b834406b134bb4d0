"""Contracts of the tables written by stage ``sampling_design`` (:mod:`sipas_lib.stages.sampling_design`).

Neither table holds personal data: the frame's ``transaction_id`` (which links a form to an
applicant's case record) and contact details stay in ``data/``; only the post office's mailing list
joins them back, under ``data/raw/private/`` (:attr:`sipas_lib.config.RunPaths.private`).
"""

from __future__ import annotations

import pandera.pandas as pa

from sipas_lib.config import CHANNELS
from sipas_lib.schemas import register
from sipas_lib.schemas import columns as C

ROLES = ("main", "reserve")
#: ``method`` of the allocation: the method name, power allocation with its exponent, e.g. ``power(0.5)``.
METHOD_PATTERN = r"^(equal|proportional|neyman|power\([0-9.e+-]+\))$"
STRATUM_PATTERN = r"^[^|]+\|[^|]+$"
#: 6-digit legacy (``UUSSSC``) or 10-digit current (``UUUUUSSSSC``) form ids, see sipas_lib.formids.
FORM_ID_PATTERN = r"^([0-9]{6}|[0-9]{10})$"

register("sampling_allocation", "sampling_design",
         "One row per stratum (unit × field of procedure) of the surveyed units: the frame size and the "
         "questionnaires allocated to the stratum, with its unit's allocation and expected margin of error "
         "repeated on each of the unit's rows.", {
             "unit_id": C.unit_id(),
             "field": C.field_code(),
             "stratum": C.text("stratum label `<unit_id>|<field>`", pattern=STRATUM_PATTERN),
             "N_h": pa.Column("int64", pa.Check.gt(0), description="transactions in the stratum's frame (N_h)"),
             "n_h": C.count("questionnaires allocated to the stratum (main sample, n_h ≤ N_h)"),
             "f_h": C.share("sampling fraction n_h / N_h", nullable=False),
             "unit_type": C.unit_type(),
             "N_unit": pa.Column("int64", pa.Check.gt(0), description="transactions in the unit's frame"),
             "n_unit": C.count("questionnaires allocated to the unit (sum of its n_h)"),
             "f_unit": C.share("unit's sampling fraction n_unit / N_unit", nullable=False),
             "moe_unit": C.share("expected margin of error of the unit's share satisfied at p = 0.5, the run's "
                                 "level and the expected response rate (half-width of the interval)"),
             "n_needed": C.count("questionnaires the unit would need for the target margin (with finite-"
                                 "population correction and response-rate inflation)"),
             "meets_target": C.flag("the unit's expected margin is within the target margin"),
             "method": C.text("allocation method over units (equal, proportional, neyman, power(a))",
                              pattern=METHOD_PATTERN),
         },
         keys=("stratum",),
         checks=[pa.Check(lambda df: df["n_h"] <= df["N_h"], error="n_h ≤ N_h"),
                 pa.Check(lambda df: df["n_unit"] <= df["N_unit"], error="n_unit ≤ N_unit")])

register("sample_design", "sampling_design",
         "One row per issued form (main sample and reserves): its form id, stratum, inclusion probability, "
         "design weight, reserve order and re-check flag. No transaction id or contact details. Written only "
         "when the year has the frame's rows (frame.parquet); with frame_counts.csv alone the stage plans "
         "the allocation but draws nothing.", {
             "form_id": C.text("form id (Mã số phiếu): unit code, serial, check digit; 6 or 10 digits",
                               pattern=FORM_ID_PATTERN, unique=True),
             "unit_id": C.unit_id(),
             "field": C.field_code(),
             "channel": C.text("how the dossier was submitted (one-stop shop, online level 3/4, postal)", CHANNELS),
             "stratum": C.text("stratum label `<unit_id>|<field>`", pattern=STRATUM_PATTERN),
             "N_h": pa.Column("int64", pa.Check.gt(0), description="transactions in the stratum's frame (N_h)"),
             "n_h": pa.Column("int64", pa.Check.gt(0), description="main-sample size of the stratum (n_h)"),
             "incl_prob": pa.Column(float, [pa.Check.gt(0), pa.Check.le(1)],
                                    description="first-order inclusion probability π (n_h / N_h for SRS and "
                                                "systematic selection)"),
             "design_weight": pa.Column(float, pa.Check.ge(1), description="design weight 1 / π"),
             "role": C.text("main sample or reserve (replacement list)", ROLES),
             "reserve_rank": C.count("replacement order within the stratum (0 for the main sample)"),
             "recheck": C.flag("flagged for the re-check (phúc tra) subsample; main sample only"),
             "unit_type": C.unit_type(),
         },
         keys=("form_id",), optional=True,
         checks=[pa.Check(lambda df: (df["role"] == "main") == (df["reserve_rank"] == 0),
                          error="reserve_rank is 0 exactly for the main sample"),
                 pa.Check(lambda df: ~df["recheck"] | (df["role"] == "main"),
                          error="only main-sample forms are re-checked")])
