"""pytorch/pytorch#13246 (repro #20433): DataLoader workers read a Dataset that holds its
samples as a Python list of Python objects. Each read changes the objects' reference counts,
which writes to the pages a forked worker shares copy-on-write with its parent: every worker
copies, page by page, the whole list it reads, and its private memory grows with the work
done. `--storage numpy` holds the same values in one numpy array (no per-sample objects, no
reference counts written): the control.

    python job.py run --out DIR --samples N --batch B --workers W --storage list|numpy
    python job.py fingerprint DIR
"""

import argparse
import hashlib
import json
import os
import sys

import numpy as np
import torch
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
    os.makedirs(args.out, exist_ok=True)
    loader = DataLoader(Samples(args.samples, args.storage), batch_size=args.batch,
                        shuffle=False, num_workers=args.workers)
    total = len(loader)
    acc = hashlib.sha256()
    for step, batch in enumerate(loader, 1):
        acc.update(batch.double().numpy().tobytes())
        print(f"batch {step}/{total}", flush=True)
    tmp = os.path.join(args.out, "result.json.tmp")
    with open(tmp, "w") as f:
        json.dump({"batches": total, "sha256": acc.hexdigest()}, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, os.path.join(args.out, "result.json"))


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--out", required=True)
    r.add_argument("--samples", type=int, default=2_000_000)
    r.add_argument("--batch", type=int, default=500)
    r.add_argument("--workers", type=int, default=2)
    r.add_argument("--storage", choices=["list", "numpy"], required=True)
    f = sub.add_parser("fingerprint")
    f.add_argument("dir")
    args = p.parse_args()
    if args.cmd == "run":
        run(args)
    else:
        with open(os.path.join(args.dir, "result.json")) as fh:
            print(json.load(fh)["sha256"])


if __name__ == "__main__":
    sys.exit(main())
