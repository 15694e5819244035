"""k-fold cross-validation from the command line; same as `segcvae crossval`. Run with --help."""

import sys
from pathlib import Path

try:
    from segcvae.cli import crossval_main
except ModuleNotFoundError:  # a source checkout that is not installed: use the repository's package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from segcvae.cli import crossval_main

if __name__ == "__main__":
    sys.exit(crossval_main(prog=f"python {sys.argv[0]}"))
