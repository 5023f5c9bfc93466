"""`python -m preflight.alerts [production|small]` prints the Prometheus rules file."""

import sys

from preflight.alerts.rules import main

sys.exit(main())
