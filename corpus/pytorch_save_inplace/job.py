"""pytorch/pytorch#48243: `torch.save(obj, path)` opens `path` for writing, truncating it, and
writes the archive into it in place. A process killed during the save leaves a truncated
file where the last good checkpoint was; the resume's `torch.load` then fails
("PytorchStreamReader failed reading zip archive") and the job cannot continue.
`--save atomic` writes the same archive to a temp file in the same directory, fsyncs it and
renames it over the checkpoint (then fsyncs the directory): the control.

A small MLP trained with Adam on synthetic batches drawn from the step number (no data state
to restore); checkpoint = model + optimizer + step every --ckpt-every steps.

    PYTHONPATH=corpus python job.py run --out DIR --steps N --ckpt-every K --save inplace|atomic
    PYTHONPATH=corpus python job.py fingerprint DIR
"""

import os
import sys

import torch
from _common import atomic_torch_save, cli, hash_tensors
from torch import nn

WIDTH = 1024


def model_and_opt():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, WIDTH), nn.ReLU(), nn.Linear(WIDTH, WIDTH), nn.ReLU(),
                          nn.Linear(WIDTH, WIDTH), nn.ReLU(), nn.Linear(WIDTH, 1))
    return model, torch.optim.Adam(model.parameters(), lr=1e-3)


def batch(step):
    g = torch.Generator().manual_seed(1000 + step)
    x = torch.randn(32, 64, generator=g)
    return x, x.sum(dim=1, keepdim=True).sin()


def save(state, path, how):
    if how == "inplace":
        torch.save(state, path)  # the defect: truncate + write in place
    else:
        atomic_torch_save(state, path)


def run(args):
    ckdir = os.path.join(args.out, "ckpt")
    os.makedirs(ckdir, exist_ok=True)
    path = os.path.join(ckdir, "state.pt")
    model, opt = model_and_opt()
    start = 0
    if os.path.exists(path):
        state = torch.load(path, weights_only=True)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        start = state["step"]
    for step in range(start + 1, args.steps + 1):
        x, y = batch(step)
        opt.zero_grad()
        nn.functional.mse_loss(model(x), y).backward()
        opt.step()
        if step % args.ckpt_every == 0 or step == args.steps:
            save({"model": model.state_dict(), "opt": opt.state_dict(), "step": step}, path,
                 args.save)
        print(f"step {step}/{args.steps}", flush=True)


def fingerprint(out):
    """The digest of the last checkpoint (the job writes no other result)."""
    state = torch.load(os.path.join(out, "ckpt", "state.pt"), weights_only=True)
    h = hash_tensors(state["model"].items())
    h.update(str(state["step"]).encode())
    print(h.hexdigest())


def add_args(r):
    r.add_argument("--steps", type=int, default=40)
    r.add_argument("--ckpt-every", type=int, default=5)
    r.add_argument("--save", choices=["inplace", "atomic"], required=True)


if __name__ == "__main__":
    sys.exit(cli(add_args, run, fingerprint, description=__doc__))
