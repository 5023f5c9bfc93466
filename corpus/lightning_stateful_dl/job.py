"""Lightning-AI/pytorch-lightning#20550 (open): a stateful training dataloader (one with
state_dict/load_state_dict) does not get its state back on resume when configure_optimizers
reads `self.trainer.estimated_stepping_batches` (as OneCycleLR's total_steps needs): the first
setup of the data runs before the checkpoint is restored, the second returns early, and the
saved loader state is dropped. A mid-epoch resume then starts the loader from the beginning
of the epoch while the loop counts on from the checkpoint: other batches than an
uninterrupted run's. `--total-steps given` computes the same total by hand and never calls
estimated_stepping_batches: the control (same job, the defect cannot occur).

Checkpoints every K steps through a CheckpointIO that writes temp + fsync + rename (so a kill
inside a save is not the defect under test here).

    python job.py run --out DIR --epochs E --batches B --ckpt-every K --total-steps estimated|given
    python job.py fingerprint DIR
"""

import argparse
import glob
import hashlib
import os
import re
import sys
import warnings

import torch
from torch import nn

import lightning as L
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO


class AtomicIO(TorchCheckpointIO):
    def save_checkpoint(self, checkpoint, path, storage_options=None):
        tmp = str(path) + ".tmp"
        with open(tmp, "wb") as f:
            torch.save(checkpoint, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)


class Batches:
    """A stateful iterable of batches: its position is its state."""

    def __init__(self, n):
        g = torch.Generator().manual_seed(7)
        self.x = torch.randn(n, 16, 8, generator=g)
        self.y = self.x[:, :, :2].sum(dim=2, keepdim=True)
        self.n, self.pos = n, 0

    def __len__(self):
        return self.n

    def __iter__(self):
        while self.pos < self.n:
            i = self.pos
            self.pos += 1
            yield self.x[i], self.y[i]
        self.pos = 0

    def state_dict(self):
        return {"pos": self.pos}

    def load_state_dict(self, state):
        self.pos = state["pos"]


class Net(L.LightningModule):
    def __init__(self, total_steps, mode):
        super().__init__()
        self.lin = nn.Linear(8, 1)
        self.total_steps, self.mode = total_steps, mode
        self.register_buffer("seen", torch.zeros(32, dtype=torch.float64))

    def training_step(self, batch, i):
        x, y = batch
        self.seen.mul_(1.0001).add_(x.double().sum(dim=1).repeat(4)[:32])
        return nn.functional.mse_loss(self.lin(x), y)

    def configure_optimizers(self):
        total = (self.trainer.estimated_stepping_batches if self.mode == "estimated"
                 else self.total_steps)
        opt = torch.optim.SGD(self.parameters(), lr=0.05)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=int(total))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


class Progress(Callback):
    def __init__(self, total):
        self.total = total

    def on_train_batch_end(self, trainer, *a, **k):
        print(f"step {trainer.global_step}/{self.total}", flush=True)


def run(a):
    ckdir = os.path.join(a.out, "ckpt")
    os.makedirs(ckdir, exist_ok=True)
    total = a.epochs * a.batches
    done = glob.glob(os.path.join(ckdir, "step=*.ckpt"))
    last = max(done, key=lambda p: int(re.search(r"step=(\d+)", p).group(1)), default=None)
    L.seed_everything(0, verbose=False)
    model = Net(total, a.total_steps)
    trainer = L.Trainer(
        max_epochs=a.epochs, accelerator="cpu", devices=1, logger=False,
        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
        plugins=[AtomicIO()],
        callbacks=[ModelCheckpoint(dirpath=ckdir, filename="{step}", every_n_train_steps=a.ckpt_every,
                                   save_top_k=-1), Progress(total)],
    )
    trainer.fit(model, train_dataloaders=Batches(a.batches), ckpt_path=last)
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.contiguous().numpy().tobytes())
    tmp = os.path.join(a.out, "result.sha256.tmp")
    with open(tmp, "w") as f:
        f.write(h.hexdigest() + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, os.path.join(a.out, "result.sha256"))


def main():
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--out", required=True)
    r.add_argument("--epochs", type=int, default=3)
    r.add_argument("--batches", type=int, default=20)
    r.add_argument("--ckpt-every", type=int, default=7)
    r.add_argument("--total-steps", choices=["estimated", "given"], required=True)
    f = sub.add_parser("fingerprint")
    f.add_argument("dir")
    args = p.parse_args()
    if args.cmd == "run":
        run(args)
    else:
        print(open(os.path.join(args.dir, "result.sha256")).read().strip())


if __name__ == "__main__":
    sys.exit(main())
