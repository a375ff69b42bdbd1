"""Read an offline W&B run's history from its ``run-*.wandb`` file, with W&B's own record protobuf.

wandb 0.31 ships no Python reader of this file (its Go core writes it). The container is a
LevelDB-style log: a 7-byte file header (``:W&B``, magic 0xBEE1, version 0), then 32 KiB blocks of
records, each with a 7-byte header (crc32, little-endian uint16 length, type: 1 full, 2 first,
3 middle, 4 last) and none straddling a block without being split.
"""

from __future__ import annotations

import json
import struct
import time
from pathlib import Path
from typing import Any

from wandb.proto import wandb_internal_pb2

BLOCK = 32 * 1024
HEADER = 7


def records(path: Path) -> list[bytes]:
    """Return the payload of every record in the file, in order."""
    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B transaction log"
    payloads, pending, position = [], b"", HEADER
    while position + HEADER <= len(data):
        left_in_block = BLOCK - position % BLOCK
        if left_in_block < HEADER:
            position += left_in_block  # the block's tail is padding
            continue
        _, length, kind = struct.unpack("<IHB", data[position : position + HEADER])
        chunk = data[position + HEADER : position + HEADER + length]
        position += HEADER + length
        if kind == 0 and length == 0:
            continue
        pending = chunk if kind in (1, 2) else pending + chunk
        if kind in (1, 4):
            payloads.append(pending)
            pending = b""
    return payloads


def parsed(path: Path, timeout_s: float = 20.0) -> list[Any]:
    """Return the file's records once its ``exit`` record is there.

    ``run.finish()`` can return before W&B's core process has written the last records, so the
    file is read again until the run's end is in it.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        found = []
        for payload in records(path):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(payload)
            found.append(record)
        if any(r.WhichOneof("record_type") == "exit" for r in found) or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def history(run_dir: Path) -> list[dict[str, Any]]:
    """Return every ``run.log`` call of the offline run in `run_dir` as a dict of decoded JSON values."""
    (log,) = run_dir.glob("run-*.wandb")
    rows = []
    for record in parsed(log):
        if record.WhichOneof("record_type") == "history":
            rows.append(
                {(item.key or "/".join(item.nested_key)): json.loads(item.value_json) for item in record.history.item}
            )
    return rows
