"""pytorch/pytorch#13246 (repro #20433): DataLoader workers read a Dataset that holds its
samples as a Python list of Python objects. Each read changes the objects' reference counts,
which writes to the pages a forked worker shares copy-on-write with its parent: every worker
copies, page by page, the whole list it reads, and its private memory grows with the work
done. `--storage numpy` holds the same values in one numpy array (no per-sample objects, no
reference counts written): the control.

    PYTHONPATH=corpus python job.py run --out DIR --samples N --batch B --workers W \
        --storage list|numpy
    PYTHONPATH=corpus python job.py fingerprint DIR
"""

import hashlib
import sys

import numpy as np
from _common import cli, write_digest
from torch.utils.data import DataLoader, Dataset


class Samples(Dataset):
    def __init__(self, n: int, storage: str):
        values = np.random.default_rng(1234).standard_normal(n)
        # The defect: a list of n Python float objects (each with its own refcount).
        self.data = values.tolist() if storage == "list" else values

    def __len__(self):
        return len(self.data)

    def __getitem__(self, i):
        return float(self.data[i])


def run(args):
    loader = DataLoader(Samples(args.samples, args.storage), batch_size=args.batch,
                        shuffle=False, num_workers=args.workers)
    total = len(loader)
    acc = hashlib.sha256()
    for step, batch in enumerate(loader, 1):
        acc.update(batch.double().numpy().tobytes())
        print(f"batch {step}/{total}", flush=True)
    write_digest(args.out, acc.hexdigest())


def add_args(r):
    r.add_argument("--samples", type=int, default=2_000_000)
    r.add_argument("--batch", type=int, default=500)
    r.add_argument("--workers", type=int, default=2)
    r.add_argument("--storage", choices=["list", "numpy"], required=True)


if __name__ == "__main__":
    sys.exit(cli(add_args, run, description=__doc__, one_thread=False))
