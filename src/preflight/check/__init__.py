"""Fault injection for `preflight check` (Jepsen-style: schedule -> history -> checker).

The room:

- command.py (the CLI), options.py (CheckOptions and their checks), battery.py (the
  battery API: ``run_battery(options) -> BatteryResult`` with typed rows, used by the CLI
  and the gate's fault experiments), live.py (progress), interrupt.py (signals);
- checker.py (pure: a recorded history -> verdicts), verdicts.py (statuses, CheckVerdict),
  fault_exit.py (how a faulted attempt must end), messages.py; history.py (the recorded
  records: FaultHistory, Attempt, Reference); report.py (rows, JSON/Markdown/HTML);
- kind.py (the FaultKind contract) and registry.py (the kinds by name); kinds/: one module
  per fault kind, each with ``plan(reference, seed) -> [FaultExperiment]`` (pure, from the
  seed), ``execute(ctx, experiment, ...) -> FaultHistory`` (drives the job) and its
  ``KIND`` (a FaultKind):

  - kill.py         SIGKILL at a time / at progress / in storms / inside a checkpoint write;
                    SIGTERM as preemption
  - crashpoints.py  kill at each durable fault point the job passes (PREFLIGHT_FAULTS)
  - corrupt.py      damage checkpoint files (pure transforms + hypothesis strategy)
  - memory.py       memory cgroup (v2/v1) below the peak, RLIMIT_AS fallback, memoryerror points
  - disk.py         small tmpfs workdir (root) or RLIMIT_FSIZE
  - rank.py         SIGKILL one rank of a launcher (torchrun); the launcher must restart it
  - powerloss/      cut the power at a durability boundary (docs/powerloss.md)

- drive/: schedule.py (seeds, FaultExperiment), runner.py (one bounded attempt,
  DriveContext), sequence.py (resume loop, verify/fingerprint, the history), reference.py
  (the uninterrupted run), watch.py / windows.py (what the harness sees of a job);
- pytest_fixtures.py (fault_check, fault_battery).
"""
