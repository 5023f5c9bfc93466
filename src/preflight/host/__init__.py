"""The host's condition while a job runs, and what it means for a wall-clock verdict.

- ``load``: the measurements: CPU steal and other processes' share from /proc/stat, the
  FreezeMeter (the share of the time the harness could not run), the CPU-share probe and
  the dilation the alert experiments stretch their durations by;
- ``watch``: ``HostWatch``, started by every ``preflight.run.job.Run`` with its job;
  ``run.host`` is its ``HostFigures`` (steal, frozen, neighbours);
- ``rule``: the pure host rule: ``disturbed``, ``excused``, the host texts, the thresholds.
"""
