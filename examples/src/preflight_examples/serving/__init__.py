"""Serving the trainer's models: export a finished run as a verified bundle, evaluate it,
predict, bench-infer, serve it over HTTP, promote and roll back deployments.

It imports ``preflight_examples.trainer`` (the model, the run directory, the dataset), never
the reverse; its subcommands are part of the ``trainer`` command line (``serving.cli``).
"""
