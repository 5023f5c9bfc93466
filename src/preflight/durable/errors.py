"""Exception classes shared by every durable component.

Each carries a message that names the file or field and what was wrong, so the CLIs can
print it as-is and map the class to an exit code (see docs/contract.md "Exit codes").
"""

from __future__ import annotations

# The exit codes of docs/contract.md "Exit codes", for every preflight command and the
# example workloads (gate: READY is EXIT_OK, NOT READY is EXIT_FAILED).
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2  # BadInputError
EXIT_LOCKED = 3  # LockedError
EXIT_REFUSED = 4  # VerifyError: checksum failed, cannot repair
EXIT_STOPPED = 75  # stopped on SIGTERM after a clean checkpoint; a resume is expected


class DurableError(Exception):
    """Base class: something about durable state is wrong."""


class BadInputError(DurableError, ValueError):
    """An argument or input file is invalid (CLIs map this to exit code 2)."""


class LockedError(DurableError):
    """The directory is locked by another live run (CLIs map this to exit code 3)."""

    def __init__(self, path: str, holder: str) -> None:
        super().__init__(f"{path} is locked by another live run: {holder}")
        self.path = path
        self.holder = holder


class VerifyError(DurableError):
    """Committed data failed verification (CLIs map this to exit code 4)."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class ConfigDriftError(BadInputError):
    """A run was resumed with a different configuration than it was started with."""

    def __init__(self, where: str, differing: list[str]) -> None:
        names = ", ".join(differing) if differing else "(config hash differs)"
        super().__init__(
            f"config drift in {where}: parameters differ from the existing run: {names}; "
            "use the same parameters to resume, or --new to start over"
        )
        self.where = where
        self.differing = differing
