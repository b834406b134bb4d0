"""Contracts of stage annual_survey_report."""

from __future__ import annotations
