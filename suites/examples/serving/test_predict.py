"""Batch predict (JSON, CSV), request validation, and bench-infer's report."""

from __future__ import annotations

import base64
import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
from preflight_examples.serving.request import RequestError, encode_request, parse_request

from suites.examples.serving.conftest import Cli

SHAPE = (4, 1, 16, 16)


def clips(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, *SHAPE), dtype=np.uint8)


def test_predict_dataset_json_and_csv_agree(
    bundle4: Path, data4: Path, cli: Cli, tmp_path: Path
) -> None:
    out = tmp_path / "p.json"
    assert cli(["predict", str(bundle4), "--data", str(data4), "--out", str(out)]).code == 0
    doc = json.loads(out.read_text())
    rows = doc["predictions"]
    assert len(rows) == 64 and doc["class_names"] == ["class0", "class1", "class2", "class3"]
    for row in rows:
        assert sum(row["probs"]) == pytest.approx(1.0)
        assert row["score"] == max(row["probs"]) and row["class"] == int(np.argmax(row["probs"]))
    result = cli(["predict", str(bundle4), "--data", str(data4), "--format", "csv", "--limit", "5",
                  "--batch-size", "2"])  # fmt: skip
    assert result.code == 0, result.err
    table = list(csv.DictReader(io.StringIO(result.out)))
    assert list(table[0]) == ["index", "label", "class", "class_name", "score",
                              "p_class0", "p_class1", "p_class2", "p_class3"]  # fmt: skip
    assert [int(r["class"]) for r in table] == [r["class"] for r in rows[:5]]
    assert [float(r["score"]) for r in table] == [r["score"] for r in rows[:5]]


def test_predict_input_files_npy_json_and_base64_agree(
    bundle4: Path, cli: Cli, tmp_path: Path
) -> None:
    videos = clips(3)
    np.save(tmp_path / "v.npy", videos)
    (tmp_path / "v.json").write_text(json.dumps({"videos": videos.tolist()}))
    (tmp_path / "b.json").write_text(json.dumps(encode_request(videos)))
    outputs = []
    for name in ("v.npy", "v.json", "b.json"):
        result = cli(["predict", str(bundle4), "--input", str(tmp_path / name)])
        assert result.code == 0, result.err
        outputs.append([r["probs"] for r in json.loads(result.out)["predictions"]])
    assert outputs[0] == outputs[1] == outputs[2]
    np.save(tmp_path / "bad.npy", videos.astype(np.float32))
    bad = cli(["predict", str(bundle4), "--input", str(tmp_path / "bad.npy")])
    assert bad.code == 2 and "integers" in bad.err


def test_predict_with_onnx_engine_matches_torchscript(bundle4: Path, data4: Path, cli: Cli) -> None:
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    probs = {}
    for engine in ("torchscript", "onnx"):
        result = cli(["predict", str(bundle4), "--data", str(data4), "--engine", engine])
        assert result.code == 0, result.err
        probs[engine] = np.array([r["probs"] for r in json.loads(result.out)["predictions"]])
    np.testing.assert_allclose(probs["onnx"], probs["torchscript"], atol=1e-4)


def body(value: object) -> bytes:
    return json.dumps(value).encode()


@pytest.mark.parametrize(
    ("payload", "status", "fragment"),
    [
        (b"{not json", 400, "invalid JSON"),
        (body([1, 2]), 400, "field 'videos'"),
        (body({"video": []}), 400, "field 'videos'"),
        (body({"videos": clips(1)[:, :2].tolist()}), 400, "shape [1, 2, 1, 16, 16]"),
        (body({"videos": clips(1)[0].tolist()}), 400, "is not [N, 4, 1, 16, 16]"),
        (body({"videos": (clips(1) / 2).tolist()}), 400, "not floats"),
        (body({"videos": (clips(1).astype(int) + 1000).tolist()}), 400, "0..255"),
        (body({"videos": [[1, 2], [3]]}), 400, "ragged"),
        (body({"videos": [[True]]}), 400, "integers"),
        (body({"videos": "%%%", "shape": [1, *SHAPE]}), 400, "base64"),
        (body({"videos": base64.b64encode(b"12").decode(), "shape": [1, *SHAPE]}), 400, "fill"),
        (body({"videos": "", "shape": [1, *SHAPE], "dtype": "float32"}), 400, "'dtype'"),
        (body({"videos": ""}), 400, "'shape'"),
        (body(encode_request(clips(3))), 413, "at most 2"),
        (b" " * 4097, 413, "exceeds the limit of 4096"),
        (b'{"videos": NaN}', 400, "non-finite"),
        (b'{"videos": [' + b"1" * 50 + b"]}", 400, "too large"),
        (b"[" * 70 + b"]" * 70, 400, "nested deeper"),
        (b'{"videos": "\xff"}', 400, "not UTF-8"),
    ],
)
def test_bad_requests_are_refused_naming_the_field(
    payload: bytes, status: int, fragment: str
) -> None:
    limit = 4096 if payload.startswith(b" ") else 1 << 20
    with pytest.raises(RequestError) as caught:
        parse_request(payload, SHAPE, batch_max=2, body_bytes_max=limit)
    assert caught.value.status == status
    assert fragment in caught.value.message


def test_good_requests_parse_to_uint8() -> None:
    videos = clips(2)
    for payload in (encode_request(videos), {"videos": videos.tolist()}):
        parsed = parse_request(body(payload), SHAPE, batch_max=2)
        assert parsed.dtype == np.uint8 and np.array_equal(parsed, videos)


def test_bench_infer_reports_percentiles_per_batch_size(
    bundle4: Path, cli: Cli, tmp_path: Path
) -> None:
    out = tmp_path / "reports" / "bench-infer.json"
    result = cli(["bench-infer", str(bundle4), "--batch-sizes", "1,3", "--iterations", "5",
                  "--warmup", "1", "--out", str(out)])  # fmt: skip
    assert result.code == 0, result.err
    report = json.loads(out.read_text())
    assert [r["batch_size"] for r in report["results"]] == [1, 3]
    for row in report["results"]:
        assert row["iterations"] == 5
        assert row["latency_ms_p50"] <= row["latency_ms_p95"] <= row["latency_ms_p99"]
        assert row["throughput_samples_per_s"] > 0
    assert report["target"]["name"] == "single_sample_latency_ms_p99"
    assert report["pass"] == (report["target"]["measured"] <= 10.0)
    assert cli(["bench-infer", str(bundle4), "--batch-sizes", "0"]).code == 2
