"""meta-pytorch/data#1437 (fixed by #1439, released in torchdata 0.11.0): a StatefulDataLoader
state_dict taken at the end of an epoch does not restore: the loader it is loaded into
starts the next epoch from a different sampler state than the uninterrupted loader does
(the issue: "loading a StatefulDataLoader state_dict creates a slightly different one in the
dataloader, potentially dropping an epoch"). A job that checkpoints at every epoch end, the
natural place, resumes on another data order. Same script under torchdata 0.10.1 (defect)
and 0.11.0 (control, the fixed release).

    PYTHONPATH=corpus python job.py run --out DIR --epochs E --samples N --batch B
    PYTHONPATH=corpus python job.py fingerprint DIR
"""

import hashlib
import os
import sys

import torch
from _common import atomic_torch_save, cli, hash_tensors, tensor_bytes
from torch import nn
from torch.utils.data import TensorDataset
from torchdata.stateful_dataloader import StatefulDataLoader


def run(a):
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
            seen = hashlib.sha256(seen + tensor_bytes(xb)).digest()
            print(f"step {epoch * per_epoch + i}/{total}", flush=True)
        # Checkpoint at the end of every epoch: the loader's state_dict after exhaustion.
        atomic_torch_save({"model": model.state_dict(), "opt": opt.state_dict(),
                           "loader": loader.state_dict(), "epoch": epoch + 1, "seen": seen}, path)


def fingerprint(out):
    """The digest of the last checkpoint: batches seen (in order), epoch, weights."""
    state = torch.load(os.path.join(out, "ckpt.pt"), weights_only=False)
    h = hashlib.sha256(state["seen"] + str(state["epoch"]).encode())
    print(hash_tensors(state["model"].items(), h).hexdigest())


def add_args(r):
    r.add_argument("--epochs", type=int, default=8)
    r.add_argument("--samples", type=int, default=128)
    r.add_argument("--batch", type=int, default=16)


if __name__ == "__main__":
    sys.exit(cli(add_args, run, fingerprint, description=__doc__))
