"""Moved to ``rest`` (the HTTP adapter) and ``dataplane``; kept while server.py is being edited."""

from __future__ import annotations

from collections.abc import Mapping

from housing_runtime.serving.dataplane import DataPlane
from housing_runtime.serving.messages import Limits, Model
from housing_runtime.serving.rest import RestAdapter


def Protocol(models: Mapping[str, Model] | None = None, limits: Limits | None = None) -> RestAdapter:  # noqa: N802
    return RestAdapter(DataPlane(models, limits))
