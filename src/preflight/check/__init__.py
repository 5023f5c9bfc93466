"""Fault injection for `preflight check` (Jepsen-style: schedule -> history -> checker).

One module per fault kind, each with ``plan(reference, seed) -> [FaultExperiment]`` (pure, from
the seed) and ``execute(ctx, experiment, ...) -> FaultHistory`` (drives the job):

- kill.py         SIGKILL at a time / at progress / in storms / inside a checkpoint write;
                  SIGTERM as preemption
- crashpoints.py  kill at each durable fault point the job passes (PREFLIGHT_FAULTS)
- corrupt.py      damage checkpoint files (pure transforms + hypothesis strategy)
- memory.py       memory cgroup (v2/v1) below the peak, RLIMIT_AS fallback, memoryerror points
- disk.py         small tmpfs workdir (root) or RLIMIT_FSIZE
- rank.py         SIGKILL one rank of a launcher (torchrun); the launcher must restart it

Shared pieces: schedule.py (seeds, FaultExperiment), history.py (the recorded records),
runner.py (one bounded attempt, resume loop, verify/fingerprint), reference.py (the
uninterrupted run), report.py (JSON/Markdown/HTML), pytest_fixtures.py. The verdicts come
from the pure checker in src/preflight/check/checker.py; the command line is
src/preflight/check/command.py.
"""
