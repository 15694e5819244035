"""Export a checkpoint to ONNX; same as `segcvae export`. Run with --help for the options."""

import sys
from pathlib import Path

try:
    from segcvae.cli import export_main
except ModuleNotFoundError:  # a source checkout that is not installed: use the repository's package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from segcvae.cli import export_main

if __name__ == "__main__":
    sys.exit(export_main(prog=f"python {sys.argv[0]}"))
