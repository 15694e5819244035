"""Predict from the command line; same as `segcvae predict`. Run with --help for the options."""

import sys
from pathlib import Path

try:
    from segcvae.cli import predict_main
except ModuleNotFoundError:  # a source checkout that is not installed: use the repository's package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from segcvae.cli import predict_main

if __name__ == "__main__":
    sys.exit(predict_main(prog=f"python {sys.argv[0]}"))
