"""What a job's stderr says: the exception it died of, the data file it names, and whether
it reported a memory or disk error (pure text functions for the checker)."""

from __future__ import annotations

import re

MEMORY_MESSAGE_RE = re.compile(
    r"MemoryError|out of memory|cannot allocate memory|can't allocate memory|ENOMEM|bad_alloc"
    r"|memory allocation|failed to allocate|allocation failed|failed to map segment",
    re.IGNORECASE,
)
DISK_MESSAGE_RE = re.compile(
    r"no space left|ENOSPC|errno 28|disk full|file too large|EFBIG|errno 27|quota"
    r"|free disk|disk space|not enough space",
    re.IGNORECASE,
)


def tail_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return f": {lines[-1].strip()[:200]}" if lines else ""


_EXCEPTION_RE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Interrupt|Exit)\b.*$", re.MULTILINE)
_PATH_RE = re.compile(r"""['"]?(/[^\s'":,]+)['"]?""")


def cause(stderr: str) -> str:
    """ ": <exception line> (file <path>)" from a stderr tail: the last exception raised and
    the last data file a message names (not the code files of the traceback) (pure)."""
    line = ""
    for match in _EXCEPTION_RE.finditer(stderr):
        line = match.group(0).strip()
    if not line:
        return tail_line(stderr)
    data_paths = [
        m.group(1)
        for text in stderr.splitlines()
        if not text.lstrip().startswith("File ")
        for m in _PATH_RE.finditer(text)
    ]
    where = f" (file {data_paths[-1]})" if data_paths else ""
    return f": {line[:200]}{where}"
