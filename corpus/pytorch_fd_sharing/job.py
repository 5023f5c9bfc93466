"""pytorch/pytorch#11201 (and #973): with the `file_descriptor` sharing strategy (Linux's
default), every tensor a DataLoader worker sends is rebuilt in the main process on a shared
memory segment whose file descriptor stays open as long as the tensor lives. A job that keeps
what its workers send (here: the batch's sample ids, kept for a later pass) holds one fd
per batch, until `RuntimeError: received 0 items of ancdata` / "Too many open files" at the
fd limit. `--strategy file_system` shares by file name and holds no fd: the control.

    PYTHONPATH=corpus python job.py run --out DIR --batches N --batch B --workers W \
        --strategy file_descriptor|file_system
    PYTHONPATH=corpus python job.py fingerprint DIR
"""

import hashlib
import sys

import torch
import torch.multiprocessing as mp
from _common import cli, tensor_bytes, write_digest
from torch.utils.data import DataLoader, Dataset


class Rows(Dataset):
    def __init__(self, n: int):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        g = torch.Generator().manual_seed(i)
        return {"x": torch.randn(16, generator=g), "id": i}


def run(args):
    mp.set_sharing_strategy(args.strategy)
    loader = DataLoader(Rows(args.batches * args.batch), batch_size=args.batch,
                        num_workers=args.workers)
    total = args.batches * args.batch
    kept = []  # per-batch ids, kept for a later pass (their data is not read until the end)
    acc = hashlib.sha256()
    for step, batch in enumerate(loader, 1):
        acc.update(tensor_bytes(batch["x"]))
        kept.append(batch["id"])
        print(f"sample {step * args.batch}/{total}", flush=True)
    acc.update(tensor_bytes(torch.cat(kept)))
    write_digest(args.out, acc.hexdigest())


def add_args(r):
    r.add_argument("--batches", type=int, default=3000)
    r.add_argument("--batch", type=int, default=32)
    r.add_argument("--workers", type=int, default=2)
    r.add_argument("--strategy", choices=["file_descriptor", "file_system"], required=True)


if __name__ == "__main__":
    sys.exit(cli(add_args, run, description=__doc__, one_thread=False))
