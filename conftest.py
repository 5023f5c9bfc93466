"""Root conftest: loads the harness plugin for this repository's suites.

The ``pytest11`` entry point already loads it whenever preflight is installed; load it here
only when plugin autoloading is off, so it is never registered twice.
"""

import os

# This repository's own scheduling of wall-clock tests (not part of the installed plugin).
pytest_plugins = ["suites.timing_plugin"]
if os.environ.get("PYTEST_DISABLE_PLUGIN_AUTOLOAD"):
    pytest_plugins.insert(0, "harness.plugin")
