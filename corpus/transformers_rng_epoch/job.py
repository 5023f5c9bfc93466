"""huggingface/transformers#17032 (fixed by #17055, released in 4.19.0): Trainer saves the RNG
states in every checkpoint (rng_state.pth) but 4.18 reloads them only while skipping the
batches of a partly trained epoch; a resume from a checkpoint taken at the end of an epoch
skips no batch and so never reloads them. The resumed process then draws other random
numbers than the uninterrupted run: here the dropout masks of every later step, so the
weights differ. The job saves at the end of every epoch (save_strategy="epoch", the common
setting), so every resume is from an epoch end. Same script under transformers 4.18.0
(defect) and 4.19.0 (control, the fixed release).

A Trainer on synthetic tensors: a 2-layer MLP with dropout, a torch Dataset of dicts, no
tokenizer, no download. A callback prints `step N/M` and marks each checkpoint complete
(`complete`, written after Trainer's on_save): the Trainer writes checkpoint-N/ in place, so
the job resumes only from a checkpoint marked complete (a kill inside a save is not the
defect under test here).

Two workarounds for running 2022 transformers on this stack, neither on the resume path:
- transformers 4.18/4.19 want tokenizers<0.13, which has no CPython 3.11 wheel; installed
  --no-deps without tokenizers, `transformers.data` still imports the name BertTokenizerFast
  (for an isinstance check in a collator this job does not use), so a placeholder class is
  set on transformers.models.bert before Trainer is imported.
- torch >= 2.6 loads with weights_only=True by default, which refuses rng_state.pth (numpy
  and Python RNG states): TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1, as torch documents for old code.

    PYTHONPATH=corpus python job.py run --out DIR --epochs E --samples N --batch B
    PYTHONPATH=corpus python job.py fingerprint DIR
"""

import os
import sys

os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
import transformers.models.bert as bert  # noqa: E402
from _common import atomic_write, cli, hash_tensors, write_digest  # noqa: E402
from torch import nn  # noqa: E402

try:
    bert.BertTokenizerFast  # noqa: B018
except (AttributeError, ImportError, RuntimeError):
    bert.BertTokenizerFast = type("BertTokenizerFast", (), {})

from transformers import (  # noqa: E402
    Trainer,
    TrainerCallback,
    TrainingArguments,
    set_seed,
)


class Rows(torch.utils.data.Dataset):
    def __init__(self, n):
        g = torch.Generator().manual_seed(7)
        self.x = torch.randn(n, 16, generator=g)
        self.y = self.x[:, :3].sum(dim=1, keepdim=True)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {"x": self.x[i], "labels": self.y[i]}


class Mlp(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Dropout(0.3), nn.Linear(32, 1))

    def forward(self, x, labels=None):
        out = self.net(x)
        return {"loss": nn.functional.mse_loss(out, labels), "logits": out}


class Marks(TrainerCallback):
    def on_step_end(self, args, state, control, **kw):
        print(f"step {state.global_step}/{state.max_steps}", flush=True)

    def on_save(self, args, state, control, **kw):
        ck = os.path.join(args.output_dir, f"checkpoint-{state.global_step}")
        atomic_write(os.path.join(ck, "complete"), b"ok\n")


def last_complete(ckdir):
    done = [d for d in os.listdir(ckdir) if d.startswith("checkpoint-")
            and os.path.isfile(os.path.join(ckdir, d, "complete"))]
    done.sort(key=lambda d: int(d.split("-")[1]))
    return os.path.join(ckdir, done[-1]) if done else None


def run(a):
    ckdir = os.path.join(a.out, "ckpt")
    os.makedirs(ckdir, exist_ok=True)
    set_seed(0)
    model = Mlp()
    args = TrainingArguments(
        output_dir=ckdir, num_train_epochs=a.epochs, per_device_train_batch_size=a.batch,
        learning_rate=0.05, save_strategy="epoch", logging_strategy="no", report_to=[],
        disable_tqdm=True, no_cuda=True, seed=0, dataloader_num_workers=0,
    )
    trainer = Trainer(model=model, args=args, train_dataset=Rows(a.samples), callbacks=[Marks()])
    trainer.train(resume_from_checkpoint=last_complete(ckdir))
    write_digest(a.out, hash_tensors(model.state_dict().items()).hexdigest())


def add_args(r):
    r.add_argument("--epochs", type=int, default=5)
    r.add_argument("--samples", type=int, default=96)
    r.add_argument("--batch", type=int, default=8)


if __name__ == "__main__":
    sys.exit(cli(add_args, run, description=__doc__))
