"""The Lightning job the two Lightning cases share (lightning_stateful_dl: #20550,
lightning_resume_rng: #17543): a small LightningModule trained on a stateful iterable of
in-memory batches, a ModelCheckpoint every K steps, resumed from the newest checkpoint.
Imported only from the lightning venv (corpus/venvs.toml).

Checkpoints are written through a CheckpointIO that writes temp + fsync + rename in the
checkpoint's own directory (a kill inside a save is not a defect under test here).

The two knobs the cases turn:
- total_steps "estimated": configure_optimizers sizes OneCycleLR with
  trainer.estimated_stepping_batches (#20550); "given": the same total computed by hand.
- dropout > 0 draws from torch's global RNG every step; rng "restore" saves
  torch.get_rng_state() into each checkpoint and sets it back on load (a callback), "none"
  leaves it to Lightning, which saves no RNG state (#17543).
"""

from __future__ import annotations

import glob
import os
import re
import warnings

import lightning as L
import torch
from _common import atomic_torch_save, hash_tensors, write_digest
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO
from torch import nn


class AtomicIO(TorchCheckpointIO):
    def save_checkpoint(self, checkpoint, path, storage_options=None):
        atomic_torch_save(checkpoint, path)


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
        # Lightning stops after len(self) batches without asking for one more: the position
        # is left at the end, and the next epoch starts over here.
        if self.pos >= self.n:
            self.pos = 0
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
    def __init__(self, total_steps, mode, dropout):
        super().__init__()
        self.lin = nn.Linear(8, 1)
        self.drop = nn.Dropout(dropout) if dropout else nn.Identity()
        self.total_steps, self.mode = total_steps, mode
        self.register_buffer("seen", torch.zeros(32, dtype=torch.float64))

    def training_step(self, batch, i):
        x, y = batch
        self.seen.mul_(1.0001).add_(x.double().sum(dim=1).repeat(4)[:32])
        return nn.functional.mse_loss(self.lin(self.drop(x)), y)

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


class RestoreRng(Callback):
    """The control of #17543: torch's RNG state travels in the checkpoint."""

    def on_save_checkpoint(self, trainer, pl_module, checkpoint):
        checkpoint["torch_rng_state"] = torch.get_rng_state()

    def on_load_checkpoint(self, trainer, pl_module, checkpoint):
        torch.set_rng_state(checkpoint["torch_rng_state"])


def add_args(r, epochs=3, batches=20, ckpt_every=7):
    r.add_argument("--epochs", type=int, default=epochs)
    r.add_argument("--batches", type=int, default=batches)
    r.add_argument("--ckpt-every", type=int, default=ckpt_every)


def run(a, total_steps="given", dropout=0.0, rng="none"):
    warnings.filterwarnings("ignore")
    ckdir = os.path.join(a.out, "ckpt")
    os.makedirs(ckdir, exist_ok=True)
    total = a.epochs * a.batches
    done = glob.glob(os.path.join(ckdir, "step=*.ckpt"))
    last = max(done, key=lambda p: int(re.search(r"step=(\d+)", p).group(1)), default=None)
    L.seed_everything(0, verbose=False)
    model = Net(total, total_steps, dropout)
    callbacks = [ModelCheckpoint(dirpath=ckdir, filename="{step}",
                                 every_n_train_steps=a.ckpt_every, save_top_k=-1),
                 Progress(total)]
    if rng == "restore":
        callbacks.append(RestoreRng())
    trainer = L.Trainer(
        max_epochs=a.epochs, accelerator="cpu", devices=1, logger=False,
        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
        plugins=[AtomicIO()], callbacks=callbacks,
    )
    trainer.fit(model, train_dataloaders=Batches(a.batches), ckpt_path=last)
    write_digest(a.out, hash_tensors(model.state_dict().items()).hexdigest())
