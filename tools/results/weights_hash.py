"""Print a short hash of a checkpoint's weights: equal hashes mean bit-identical weights.

python tools/results/weights_hash.py runs/default/last.pt runs/default/best.pt
"""

from __future__ import annotations

import argparse
import hashlib

import torch


def weights_hash(path: str) -> str:
    """SHA-256 (first 16 hex digits) of every tensor of the checkpoint's ``model``, by name."""
    state = torch.load(path, map_location="cpu", weights_only=True)["model"]
    digest = hashlib.sha256()
    for name in sorted(state):
        digest.update(name.encode())
        digest.update(state[name].contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("checkpoints", nargs="+")
    for path in p.parse_args(argv).checkpoints:
        print(f"{weights_hash(path)}  {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
