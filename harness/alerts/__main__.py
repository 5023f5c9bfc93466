"""`python -m harness.alerts [production|small]` prints the Prometheus rules file."""

import sys

from harness.alerts.rules import main

sys.exit(main())
