"""The streaming writer hashes exactly what it writes, direct I/O or not."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from preflight_examples.datagen.streamio import ENV_NO_DIRECT, HashingWriter, hash_file

CHUNK = 8192


@pytest.mark.parametrize("direct", [True, False])
@pytest.mark.parametrize("pieces", [[1], [4096, 4096], [5000, 9000, 3, 20000], [8192 * 3]])
def test_writer_output_and_digest_match(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, direct: bool, pieces: list[int]
) -> None:
    if not direct:
        monkeypatch.setenv(ENV_NO_DIRECT, "1")
    payload = os.urandom(sum(pieces))
    path = tmp_path / "out.bin"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    try:
        writer = HashingWriter(fd, chunk_bytes=CHUNK)
        position = 0
        for size in pieces:
            writer.write(payload[position : position + size])
            position += size
        size, digest = writer.close()
    finally:
        os.close(fd)
    assert path.read_bytes() == payload
    assert (size, digest) == (len(payload), hashlib.sha256(payload).hexdigest())


def test_hash_file_feeds_the_content_hash_after_the_header(tmp_path: Path) -> None:
    payload = os.urandom(3 * CHUNK + 17)
    path = tmp_path / "f"
    path.write_bytes(payload)
    content = hashlib.sha256()
    assert hash_file(path, skip_bytes=100, content=content, chunk_bytes=CHUNK) == (
        hashlib.sha256(payload).hexdigest()
    )
    assert content.hexdigest() == hashlib.sha256(payload[100:]).hexdigest()


def test_writer_rejects_writes_after_close(tmp_path: Path) -> None:
    fd = os.open(tmp_path / "g", os.O_WRONLY | os.O_CREAT)
    try:
        writer = HashingWriter(fd, chunk_bytes=CHUNK)
        writer.close()
        with pytest.raises(ValueError):
            writer.write(b"x")
    finally:
        os.close(fd)
