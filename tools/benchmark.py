"""Speed and memory benchmark: ``python tools/benchmark.py --json OUT.json``."""

from segcvae.benchmark import main

if __name__ == "__main__":
    raise SystemExit(main())
