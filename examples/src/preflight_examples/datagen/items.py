"""``python -m preflight_examples.datagen.items DIR``: the committed samples of a finished
dataset, for the
gate's accounting experiment: one JSON object ``{"total": N, "items": [i, ...]}``, each
sample index once per shard that holds it (a duplicate appears twice). Exit 2 when DIR holds
no finished dataset."""

from __future__ import annotations

import json
import sys
from pathlib import Path

META_BYTES_MAX = 64 << 20


def items(directory: Path) -> dict[str, object]:
    path = directory / "dataset.json"
    if path.is_symlink() or not path.is_file() or path.stat().st_size > META_BYTES_MAX:
        raise ValueError(f"{path}: no finished dataset (missing, a link, or too large)")
    meta = json.loads(path.read_text(encoding="utf-8"))
    covered = [i for shard in meta["shards"]
               for i in range(int(shard["start"]), int(shard["start"]) + int(shard["count"]))]
    return {"total": int(meta["samples"]), "items": covered}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m preflight_examples.datagen.items DIR", file=sys.stderr)
        return 2
    try:
        print(json.dumps(items(Path(args[0]))))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        print(f"preflight_examples.datagen.items: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
