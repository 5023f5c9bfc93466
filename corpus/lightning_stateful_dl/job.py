"""Lightning-AI/pytorch-lightning#20550 (open): a stateful training dataloader (one with
state_dict/load_state_dict) does not get its state back on resume when configure_optimizers
reads `self.trainer.estimated_stepping_batches` (as OneCycleLR's total_steps needs): the first
setup of the data runs before the checkpoint is restored, the second returns early, and the
saved loader state is dropped. A mid-epoch resume then starts the loader from the beginning
of the epoch while the loop counts on from the checkpoint: other batches than an
uninterrupted run's. `--total-steps given` computes the same total by hand and never calls
estimated_stepping_batches: the control (same job, the defect cannot occur).

The job itself is corpus/_lightning.py (shared with lightning_resume_rng), without dropout.

    PYTHONPATH=corpus python job.py run --out DIR --epochs E --batches B --ckpt-every K \
        --total-steps estimated|given
    PYTHONPATH=corpus python job.py fingerprint DIR
"""

import sys

import _lightning
from _common import cli


def add_args(r):
    _lightning.add_args(r)
    r.add_argument("--total-steps", choices=["estimated", "given"], required=True)


def run(a):
    _lightning.run(a, total_steps=a.total_steps)


if __name__ == "__main__":
    sys.exit(cli(add_args, run, description=__doc__))
