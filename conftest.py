"""Root conftest: loads the harness plugin for this repository's suites.

The ``pytest11`` entry point already loads it whenever preflight is installed; load it here
only when plugin autoloading is off, so it is never registered twice.
"""

import os

# This repository's own scheduling of wall-clock tests (not part of the installed plugin).
pytest_plugins = ["suites.timing_plugin"]
if os.environ.get("PYTEST_DISABLE_PLUGIN_AUTOLOAD"):
    pytest_plugins.insert(0, "preflight.plugin")

# Hypothesis's per-example deadline is a wall-clock assertion: under host steal a 0.3 ms
# example once took 1.5 s and failed `make test`. No deadline, and a fixed seed per test,
# so the suite is deterministic (TigerBeetle-style: time is injected, never measured).
from hypothesis import settings as _hypothesis_settings  # noqa: E402

_hypothesis_settings.register_profile("preflight", deadline=None, derandomize=True)
_hypothesis_settings.load_profile("preflight")
