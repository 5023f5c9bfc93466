"""meta-pytorch/data#1437 (fixed by #1439, released in torchdata 0.11.0): a StatefulDataLoader
state_dict taken at the end of an epoch does not restore: the loader it is loaded into
starts the next epoch from a different sampler state than the uninterrupted loader does
(the issue: "loading a StatefulDataLoader state_dict creates a slightly different one in the
dataloader, potentially dropping an epoch"). A job that checkpoints at every epoch end, the
natural place, resumes on another data order. Same script under torchdata 0.10.1 (defect)
and 0.11.0 (control, the fixed release).

    python job.py run --out DIR --epochs E --samples N --batch B
    python job.py fingerprint DIR
"""

import argparse
import hashlib
import os
import sys

import torch
from torch import nn
from torch.utils.data import TensorDataset
from torchdata.stateful_dataloader import StatefulDataLoader


def save(state, path):
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def run(a):
    os.makedirs(a.out, exist_ok=True)
    path = os.path.join(a.out, "ckpt.pt")
    g = torch.Generator().manual_seed(7)
    x = torch.randn(a.samples, 8, generator=g)
    y = x[:, :2].sum(dim=1, keepdim=True)
    torch.manual_seed(0)  # the sampler's default generator is seeded from here (0.11) or 1 (0.10)
    loader = StatefulDataLoader(TensorDataset(x, y), batch_size=a.batch, shuffle=True)
    model = nn.Linear(8, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    per_epoch = len(loader)
    total = a.epochs * per_epoch
    start, seen = 0, b""
    if os.path.exists(path):
        state = torch.load(path, weights_only=False)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        loader.load_state_dict(state["loader"])
        start, seen = state["epoch"], state["seen"]
    for epoch in range(start, a.epochs):
        for i, (xb, yb) in enumerate(loader, 1):
            opt.zero_grad()
            nn.functional.mse_loss(model(xb), yb).backward()
            opt.step()
            seen = hashlib.sha256(seen + bytes(xb.contiguous().view(torch.uint8).flatten().tolist())).digest()
            print(f"step {epoch * per_epoch + i}/{total}", flush=True)
        # Checkpoint at the end of every epoch: the loader's state_dict after exhaustion.
        save({"model": model.state_dict(), "opt": opt.state_dict(),
              "loader": loader.state_dict(), "epoch": epoch + 1, "seen": seen}, path)


def fingerprint(out):
    state = torch.load(os.path.join(out, "ckpt.pt"), weights_only=False)
    h = hashlib.sha256(state["seen"] + str(state["epoch"]).encode())
    for name, t in sorted(state["model"].items()):
        h.update(name.encode())
        h.update(bytes(t.contiguous().view(torch.uint8).flatten().tolist()))
    print(h.hexdigest())


def main():
    torch.set_num_threads(1)
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--out", required=True)
    r.add_argument("--epochs", type=int, default=8)
    r.add_argument("--samples", type=int, default=128)
    r.add_argument("--batch", type=int, default=16)
    f = sub.add_parser("fingerprint")
    f.add_argument("dir")
    args = p.parse_args()
    if args.cmd == "run":
        run(args)
    else:
        fingerprint(args.dir)


if __name__ == "__main__":
    sys.exit(main())
