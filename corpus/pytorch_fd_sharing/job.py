"""pytorch/pytorch#11201 (and #973): with the `file_descriptor` sharing strategy (Linux's
default), every tensor a DataLoader worker sends is rebuilt in the main process on a shared
memory segment whose file descriptor stays open as long as the tensor lives. A job that keeps
what its workers send (here: the batch's sample ids, kept for a later pass) holds one fd
per batch, until `RuntimeError: received 0 items of ancdata` / "Too many open files" at the
fd limit. `--strategy file_system` shares by file name and holds no fd: the control.

    python job.py run --out DIR --batches N --batch B --workers W --strategy file_descriptor|file_system
    python job.py fingerprint DIR
"""

import argparse
import hashlib
import json
import os
import sys

import torch
import torch.multiprocessing as mp
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
    os.makedirs(args.out, exist_ok=True)
    loader = DataLoader(Rows(args.batches * args.batch), batch_size=args.batch,
                        num_workers=args.workers)
    total = args.batches * args.batch
    kept = []  # per-batch ids, kept for a later pass (their data is not read until the end)
    acc = hashlib.sha256()
    for step, batch in enumerate(loader, 1):
        acc.update(batch["x"].numpy().tobytes())
        kept.append(batch["id"])
        print(f"sample {step * args.batch}/{total}", flush=True)
    ids = torch.cat(kept)
    acc.update(ids.numpy().tobytes())
    tmp = os.path.join(args.out, "result.json.tmp")
    with open(tmp, "w") as f:
        json.dump({"batches": args.batches, "sha256": acc.hexdigest()}, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, os.path.join(args.out, "result.json"))


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--out", required=True)
    r.add_argument("--batches", type=int, default=3000)
    r.add_argument("--batch", type=int, default=32)
    r.add_argument("--workers", type=int, default=2)
    r.add_argument("--strategy", choices=["file_descriptor", "file_system"], required=True)
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
