"""Contracts of the input files of a year."""

from __future__ import annotations
