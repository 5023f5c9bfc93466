"""What the corpus jobs share (issue 18): the command line (`run --out DIR ...` and
`fingerprint DIR`), atomic writes, and the digest a job's fingerprint prints.

Each job runs in its own case's venv; its workloads.toml puts corpus/ on PYTHONPATH
(`PYTHONPATH = "{spec_dir}/.."`), so this module imports only the standard library and torch,
which every corpus venv has (numpy is not in all of them: see tensor_bytes).
By hand: `PYTHONPATH=corpus corpus/.venvs/torch/bin/python corpus/CASE/job.py run --out DIR`.
"""

from __future__ import annotations

import argparse
import hashlib
import os
from collections.abc import Callable, Iterable

import torch

RESULT = "result.sha256"


def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: str, data: bytes) -> None:
    """Temp file in the same directory, fsync, rename over path, fsync the directory."""
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(os.path.dirname(os.path.abspath(path)))


def atomic_torch_save(obj: object, path: str) -> None:
    """torch.save through a temp file + fsync + rename (what torch.save(obj, path) is not)."""
    tmp = str(path) + ".tmp"
    with open(tmp, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(os.path.dirname(os.path.abspath(path)))


def tensor_bytes(t: torch.Tensor) -> bytes:
    """A tensor's raw bytes, with or without numpy in the venv (the same bytes either way)."""
    t = t.detach().cpu().contiguous()
    try:
        return t.numpy().tobytes()
    except (RuntimeError, TypeError):  # "Numpy is not available"
        return bytes(t.reshape(-1).view(torch.uint8).tolist())


def hash_tensors(items: Iterable[tuple[str, torch.Tensor]], h=None):
    """sha256 over (name, bytes) in name order: a model's state_dict().items()."""
    h = h if h is not None else hashlib.sha256()
    for name, t in sorted(items, key=lambda kv: kv[0]):
        h.update(name.encode())
        h.update(tensor_bytes(t))
    return h


def write_digest(out: str, hexdigest: str) -> None:
    """The job's result: one digest in OUT/result.sha256, written atomically at the end."""
    atomic_write(os.path.join(out, RESULT), (hexdigest + "\n").encode())


def print_digest(out: str) -> None:
    with open(os.path.join(out, RESULT)) as f:
        print(f.read().strip())


def cli(add_run_args: Callable[[argparse.ArgumentParser], None],
        run: Callable[[argparse.Namespace], None],
        fingerprint: Callable[[str], None] = print_digest, *, description: str = "",
        one_thread: bool = True) -> int:
    """`job.py run --out DIR [case args]` and `job.py fingerprint DIR`."""
    if one_thread:
        torch.set_num_threads(1)
    p = argparse.ArgumentParser(description=description,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--out", required=True)
    add_run_args(r)
    f = sub.add_parser("fingerprint")
    f.add_argument("dir")
    args = p.parse_args()
    if args.cmd == "run":
        os.makedirs(args.out, exist_ok=True)
        run(args)
    else:
        fingerprint(args.dir)
    return 0
