"""pytest plugin for preflight (placeholder until the harness core lands)."""
