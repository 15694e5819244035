"""Speed and memory benchmark: ``python tools/benchmark.py --json OUT.json``; same as
`segcvae benchmark`."""

import sys
from pathlib import Path

try:
    from segcvae.cli import benchmark_main
except ModuleNotFoundError:  # a source checkout that is not installed: use the repository's package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from segcvae.cli import benchmark_main

if __name__ == "__main__":
    sys.exit(benchmark_main())
