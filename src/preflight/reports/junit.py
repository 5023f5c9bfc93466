"""JUnit XML for CI from `preflight gate`, `check` and `soak` (`--junit PATH`;
docs/contract.md "Command lines"): one testcase per experiment.

Pure: typed rows in (:class:`preflight.evidence.Row`, the gate's report entries; `check` and
`soak` make theirs), a junitparser tree out; :func:`write` puts it on disk atomically
(preflight.durable). The mapping, the same for every command:

- passed: a passing testcase;
- failed: ``<failure message="REASON — replay: COMMAND">`` (pytest's ``error``: ``<error>``),
  the replay command whole, never cut; the full reason, host figures and traceback in the body;
- not applicable: ``<skipped message="not applicable: REASON">``;
- inconclusive: ``<skipped message="fault not injected: REASON">`` when no fault was injected,
  else ``<skipped message="inconclusive: REASON">`` (the host took the machine).

An inconclusive result is a skip here because it is neither a pass nor the job's failure;
the command's exit code (the gate policy) is what decides the launch.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from junitparser import Error, Failure, JUnitXml, Skipped, TestCase, TestSuite

from preflight.durable.atomic import atomic_write
from preflight.durable.errors import BadInputError
from preflight.evidence import Row, Status
from preflight.reports.readiness_model import replay_for

REASON_CHARS_MAX = 4000  # of a message's reason; the replay command after it is never cut
TEXT_CHARS_MAX = 64_000  # of a failure's body (reason, host, traceback)
NOT_APPLICABLE, NOT_INJECTED, INCONCLUSIVE = "not applicable", "fault not injected", "inconclusive"
# Characters XML 1.0 cannot hold (a job's stderr may carry them): replaced, so that every
# reader parses the file.
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_PYTEST_SKIPS = ("skipped", "xfailed")


def clean(text: str) -> str:
    return _NOT_XML.sub("\ufffd", text)


def skip_kind(row: Row) -> str:
    """Which kind of skip a row that neither passed nor failed is (pure)."""
    if row.status is Status.INCONCLUSIVE:
        return NOT_INJECTED if row.injected is False else INCONCLUSIVE
    if row.experiment is None and row.outcome in _PYTEST_SKIPS:
        return row.outcome  # a project suite's own skip, as pytest said it
    return NOT_APPLICABLE


def names(row: Row) -> tuple[str, str]:
    """(classname, name): the workload and the experiment; for a project suite's pytest
    test, its module (dotted, as pytest's own JUnit writes it) and the rest of its id."""
    if row.experiment is not None:
        return row.workload or "", row.experiment
    path, sep, rest = row.nodeid.partition("::")
    if not sep:
        return "", row.nodeid
    module = path.removesuffix(".py").replace("/", ".")
    return module, rest


def replay(row: Row) -> str:
    """The row's replay command; a project suite's pytest test: pytest on its id (as the
    readiness report gives it)."""
    return replay_for(row) if row.experiment is None else row.replay


def _reason(row: Row) -> str:
    why = row.reason.strip()
    if not why and row.longrepr:
        lines = [line for line in row.longrepr.strip().splitlines() if line.strip()]
        why = lines[-1].strip() if lines else ""
    return " ".join(why.split()) or "(no reason recorded)"


def message(row: Row) -> str:
    """A failure's or skip's one-line message: the reason, then (for a failure) the full
    replay command."""
    reason = _reason(row)
    if len(reason) > REASON_CHARS_MAX:
        reason = reason[:REASON_CHARS_MAX] + " [...]"
    if row.status is Status.FAILED:
        command = replay(row)
        return f"{reason} — replay: {command}" if command else reason
    kind = skip_kind(row)
    host = f" (host: {' '.join(row.host.split())})" if row.host and kind == INCONCLUSIVE else ""
    return f"{kind}: {reason}{host}"


def _body(row: Row) -> str:
    parts = [row.reason.strip() or _reason(row)]
    if replay(row):
        parts.append(f"replay: {replay(row)}")
    if row.host:
        parts.append(f"host: {row.host}")
    if row.longrepr:
        parts.append(row.longrepr)
    return "\n".join(parts)[:TEXT_CHARS_MAX]


def testcase(row: Row) -> TestCase:
    classname, name = names(row)
    case = TestCase(clean(name), clean(classname), row.wall_s)
    if row.status is Status.FAILED:
        result = (Error if row.outcome == "error" else Failure)(clean(message(row)), row.outcome)
        result.text = clean(_body(row))
        case.result = [result]
    elif row.status is not Status.PASSED:
        case.result = [Skipped(clean(message(row)))]
    return case


def to_junit(suite_name: str, rows: Iterable[Row],
             properties: Mapping[str, object] | None = None,
             time_s: float | None = None) -> JUnitXml:
    """One ``<testsuite>`` named ``suite_name`` holding a testcase per row, in order, with
    its counts filled in (pure). ``properties`` (run id, scale, verdict ...) go on the suite;
    ``time_s`` overrides the sum of the rows' wall times."""
    suite = TestSuite(clean(suite_name))
    for key, value in (properties or {}).items():
        if value is not None:
            suite.add_property(clean(str(key)), clean(str(value)))
    suite.add_testcases([testcase(row) for row in rows])
    xml = JUnitXml()
    xml.add_testsuite(suite)
    xml.update_statistics()  # tests, failures, errors, skipped; time = the rows' sum
    if time_s is not None:
        suite.time = xml.time = round(time_s, 3)
    return xml


def to_bytes(xml: JUnitXml) -> bytes:
    buffer = io.BytesIO()
    xml.write(buffer)  # UTF-8, with the XML declaration
    return buffer.getvalue()


def check_path(path: Path) -> Path:
    """Refuse, before anything runs, a --junit PATH that cannot be a file."""
    if path.name in ("", ".", "..") or path.is_dir():
        raise BadInputError(f"--junit {path}: is a directory, not a file path")
    return path


def write(path: Path, xml: JUnitXml) -> Path:
    """Atomically replace ``path`` with the XML (its folder is made when missing, as
    pytest's --junitxml does)."""
    check_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, to_bytes(xml))
    return path


def write_rows(path: Path, suite_name: str, rows: Sequence[Row],
               properties: Mapping[str, object] | None = None,
               time_s: float | None = None) -> Path:
    """:func:`to_junit`, then :func:`write`: what `preflight check --junit` is handed by the
    `preflight` command (the check room sits beside this one and does not import it)."""
    return write(path, to_junit(suite_name, rows, properties, time_s))
