"""huggingface/accelerate#4071 (fixed in 1.15.0): `skip_first_batches(dataloader, n)` builds a
new DataLoaderShard whose `iteration` starts at 0, and its `__iter__` calls `set_epoch(0)`:
resuming mid-epoch in epoch k >= 1 with a seedable sampler (use_seedable_sampler=True) walks
the permutation of epoch 0 instead of epoch k, so the rest of that epoch trains on the wrong
samples. The loop below is accelerate's documented checkpointing pattern
(examples/by_feature/checkpointing.py): set_epoch, save_state/load_state,
skip_first_batches. Same script under accelerate 1.14.0 (defect) and 1.15.0 (control).

Checkpoints: accelerator.save_state into ckpt/step-N.tmp, renamed to ckpt/step-N when
complete (the job's own atomicity: a kill inside a save is not the defect under test).

    PYTHONPATH=corpus python job.py run --out DIR --epochs E --samples N --batch B --ckpt-every K
    PYTHONPATH=corpus python job.py fingerprint DIR
"""

import glob
import hashlib
import json
import os
import shutil
import sys

import torch
from _common import atomic_write, cli, hash_tensors, tensor_bytes, write_digest
from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration, set_seed
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


def run(a):
    ckdir = os.path.join(a.out, "ckpt")
    os.makedirs(ckdir, exist_ok=True)
    accelerator = Accelerator(cpu=True, dataloader_config=DataLoaderConfiguration(
        use_seedable_sampler=True))
    set_seed(42)
    g = torch.Generator().manual_seed(7)
    x = torch.randn(a.samples, 16, generator=g)
    y = x[:, :3].sum(dim=1, keepdim=True)
    loader = DataLoader(TensorDataset(x, y), batch_size=a.batch, shuffle=True)
    model = nn.Linear(16, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    model, opt, loader = accelerator.prepare(model, opt, loader)
    per_epoch = len(loader)
    total = a.epochs * per_epoch
    done = sorted(glob.glob(os.path.join(ckdir, "step-*[0-9]")),
                  key=lambda d: int(d.rsplit("-", 1)[1]))
    step = 0
    seen = b""  # hash chain over every batch trained on, in order
    if done:
        accelerator.load_state(done[-1])
        with open(os.path.join(done[-1], "progress.json")) as f:
            progress = json.load(f)
        step, seen = progress["step"], bytes.fromhex(progress["seen"])
    for epoch in range(step // per_epoch, a.epochs):
        loader.set_epoch(epoch)
        skip = step - epoch * per_epoch
        active = accelerator.skip_first_batches(loader, skip) if skip > 0 else loader
        for xb, yb in active:
            opt.zero_grad()
            loss = nn.functional.mse_loss(model(xb), yb)
            accelerator.backward(loss)
            opt.step()
            step += 1
            seen = hashlib.sha256(seen + tensor_bytes(xb)).digest()
            if step % a.ckpt_every == 0 and step < total:
                tmp = os.path.join(ckdir, f"step-{step}.tmp")
                shutil.rmtree(tmp, ignore_errors=True)
                accelerator.save_state(tmp)
                atomic_write(os.path.join(tmp, "progress.json"),
                             json.dumps({"step": step, "seen": seen.hex()}).encode())
                os.replace(tmp, os.path.join(ckdir, f"step-{step}"))
            print(f"step {step}/{total}", flush=True)
    h = hash_tensors(accelerator.unwrap_model(model).state_dict().items(), hashlib.sha256(seen))
    write_digest(a.out, h.hexdigest())


def add_args(r):
    r.add_argument("--epochs", type=int, default=4)
    r.add_argument("--samples", type=int, default=192)
    r.add_argument("--batch", type=int, default=16)
    r.add_argument("--ckpt-every", type=int, default=5)


if __name__ == "__main__":
    sys.exit(cli(add_args, run, description=__doc__))
