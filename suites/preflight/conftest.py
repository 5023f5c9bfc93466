"""pytester drives the plugin in inner pytest sessions. `pytest_plugins` is only honoured
in the rootdir conftest and this one is found during collection, so pytester is
registered here when the conftest loads instead."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    if not config.pluginmanager.has_plugin("pytester"):
        config.pluginmanager.import_plugin("pytester")
