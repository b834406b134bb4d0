"""SIPAS Workbench helper library.

One module per pipeline stage (see README): ``config`` (paths), ``instrument`` (questionnaires as
data), ``units`` (the units registry), ``simulate`` (the seeded demo year), ``intake`` (reading and
validating returned questionnaires), ``sampling``, ``weighting``, ``estimation``, ``reliability``,
``index``, ``ranking``, ``reporting`` and ``runner`` (papermill chain and HTML export).
"""

__version__ = "0.1.0"
