"""Entry point of ``python -m segcvae.toy``; see :mod:`segcvae.toy.cli`."""

from segcvae.toy.cli import main

if __name__ == "__main__":
    main()
