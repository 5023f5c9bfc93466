"""Lightning-AI/pytorch-lightning#17543 (closed as won't fix): a Lightning checkpoint holds
no RNG state, so a job resumed from one draws other random numbers than the uninterrupted
run did from that step on: here the dropout masks of every step after the resume, so the
weights differ (seed_everything at start-up seeds the resumed process as it seeded the
first one, not as the first one stood at the checkpoint). `--rng restore` adds a callback
that saves torch.get_rng_state() in each checkpoint (on_save_checkpoint) and sets it back
(on_load_checkpoint): the control, the same job with the RNG made part of its state.

The job itself is corpus/_lightning.py (shared with lightning_stateful_dl), with dropout 0.5,
the total steps given by hand (so #20550 cannot occur) and a stateful batch iterable (so the
data position is restored exactly).

    PYTHONPATH=corpus python job.py run --out DIR --epochs E --batches B --ckpt-every K \
        --rng none|restore
    PYTHONPATH=corpus python job.py fingerprint DIR
"""

import sys

import _lightning
from _common import cli


def add_args(r):
    _lightning.add_args(r)
    r.add_argument("--dropout", type=float, default=0.5)
    r.add_argument("--rng", choices=["none", "restore"], required=True)


def run(a):
    _lightning.run(a, total_steps="given", dropout=a.dropout, rng=a.rng)


if __name__ == "__main__":
    sys.exit(cli(add_args, run, description=__doc__))
