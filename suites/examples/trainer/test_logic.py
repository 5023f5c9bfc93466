"""Pure pieces: sampler, schedule, options, drift, fingerprint, metrics cut, optimizer state."""

from __future__ import annotations

import copy
import io
import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from preflight_examples.trainer.checkpoint import serialize
from preflight_examples.trainer.config import FitConfig, drifted, hyper_params, validate
from preflight_examples.trainer.fingerprint import fingerprint
from preflight_examples.trainer.optim import AdamW
from preflight_examples.trainer.rundir import MetricsLog
from preflight_examples.trainer.sampler import EpochSampler, SamplerState
from preflight_examples.trainer.schedule import lr_at

from preflight.durable import BadInputError

BASE = FitConfig(data="d", out="o", steps=100)


@settings(max_examples=40, deadline=None)
@given(
    samples=st.integers(1, 50),
    seed=st.integers(0, 2**32),
    before=st.lists(st.integers(1, 70), max_size=5),
    after=st.lists(st.integers(1, 70), min_size=1, max_size=5),
)
def test_sampler_resumed_from_its_state_continues_identically(samples, seed, before, after):
    straight = EpochSampler(samples, SamplerState(seed, 0, 0))
    for count in before:
        straight.next_indices(count)
    resumed = EpochSampler(samples, straight.state)
    for count in after:
        expected = straight.next_indices(count)
        assert np.array_equal(resumed.next_indices(count), expected)
        assert len(expected) == count
    assert resumed.state == straight.state


@settings(max_examples=30, deadline=None)
@given(samples=st.integers(1, 40), seed=st.integers(0, 1000), batch=st.integers(1, 13))
def test_sampler_visits_every_sample_once_per_epoch(samples, seed, batch):
    sampler = EpochSampler(samples, SamplerState(seed, 0, 0))
    drawn = np.concatenate([sampler.next_indices(batch) for _ in range(-(-3 * samples // batch))])
    for epoch in range(3):
        assert sorted(drawn[epoch * samples : (epoch + 1) * samples]) == list(range(samples))


def test_sampler_refuses_a_state_outside_the_dataset():
    with pytest.raises(BadInputError, match="position"):
        EpochSampler(10, SamplerState(0, 0, 10))


def test_schedule_warms_up_linearly_then_decays_to_min_lr():
    lrs = [lr_at(step, 1.0, 10, 100, 0.1) for step in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a < b for a, b in zip(lrs[:10], lrs[1:10], strict=False))
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:], strict=False))
    assert lr_at(100, 1.0, 10, 100, 0.1) == pytest.approx(0.1)


@pytest.mark.parametrize(
    ("change", "option"),
    [
        ({"steps": 0}, "--steps"),
        ({"lr": float("nan")}, "--lr"),
        ({"accum": 0}, "--accum"),
        ({"keep": 0}, "--keep"),
        ({"dropout": 1.0}, "--dropout"),
        ({"warmup_steps": 101}, "--warmup-steps"),
        ({"device": "tpu"}, "--device"),
    ],
)
def test_validate_names_the_bad_option(change, option):
    with pytest.raises(BadInputError, match=option):
        validate(replace(BASE, **change))


def test_hyper_params_cover_results_not_operations():
    base = hyper_params(BASE, "data-a")
    operational = replace(BASE, threads=4, ckpt_every=7, keep=5, skip_nonfinite=True, out="x")
    assert hyper_params(operational, "data-a") == base
    assert drifted(base, hyper_params(replace(BASE, lr=0.5), "data-a")) == ["lr"]
    assert drifted(base, hyper_params(BASE, "data-b")) == ["data_sha256"]
    assert base["warmup_steps"] == 5  # -1 resolves to 5% of the steps


def test_fingerprint_sees_one_flipped_bit_and_ignores_key_order():
    torch.manual_seed(0)
    model = {"a": torch.randn(3, 4), "b": torch.randn(2)}
    optim = {"step": 3, "exp_avg": [torch.randn(3, 4)]}
    digest = fingerprint(model, optim)
    assert fingerprint(dict(reversed(list(model.items()))), copy.deepcopy(optim)) == digest
    flipped = copy.deepcopy(model)
    flipped["a"].view(torch.int32)[1, 2] ^= 1
    assert fingerprint(flipped, optim) != digest
    assert fingerprint(model, {**optim, "step": 4}) != digest


def test_metrics_cut_drops_lines_past_the_step_and_a_torn_tail(tmp_path):
    path = tmp_path / "metrics.jsonl"
    lines = [json.dumps({"step": s, "loss": 1.0}) + "\n" for s in (1, 2, 3, 4)]
    path.write_text("".join(lines) + '{"step": 5, "lo')
    log = MetricsLog(path)
    assert log.truncate_after(3) == 3
    assert path.read_text() == "".join(lines[:3])
    log.append({"step": 4, "loss": 0.5})
    log.close()
    assert [json.loads(x)["step"] for x in path.read_text().splitlines()] == [1, 2, 3, 4]


def test_snapshot_bytes_are_independent_of_later_in_place_updates():
    live = {"w": torch.zeros(3), "nested": [torch.ones(2)]}
    snapshot = serialize(live)
    live["w"].add_(1)
    live["nested"][0].mul_(5)
    restored = torch.load(io.BytesIO(snapshot), weights_only=True)
    assert restored["w"].sum() == 0 and restored["nested"][0].sum() == 2


def test_adamw_state_round_trip_continues_identically():
    torch.manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(4, 3)) for _ in range(2)]
    optim = AdamW(params, lr=0.1, weight_decay=0.01)

    def update(opt: AdamW, ps: list[torch.nn.Parameter], seed: int) -> None:
        for p in ps:
            p.grad = torch.randn(p.shape, generator=torch.Generator().manual_seed(seed))
        opt.step()

    for seed in range(3):
        update(optim, params, seed)
    saved, saved_params = copy.deepcopy(optim.state_dict()), [p.detach().clone() for p in params]
    copies = [torch.nn.Parameter(p) for p in saved_params]
    restored = AdamW(copies, lr=1.0, weight_decay=0.0)
    restored.load_state_dict(saved)
    update(optim, params, 9)
    update(restored, copies, 9)
    assert all(torch.equal(a, b) for a, b in zip(params, copies, strict=True))
    with pytest.raises(ValueError, match="moment"):
        AdamW([torch.nn.Parameter(torch.zeros(2))], 0.1, 0.0).load_state_dict(saved)
