"""The command-line commands, one module each: argument parsing and printing over the library.

``train``, ``evaluate``, ``predict``, ``export``, ``demo``, ``crossval`` and ``benchmark`` each
define ``parser(prog)`` and ``main(argv, prog) -> exit status``; :mod:`segcvae.cli` dispatches
``segcvae COMMAND`` to them and states the exit codes. What they share (the ``--import`` option,
the one-line ``error:`` report, the checks of output paths) is in :mod:`segcvae.commands.common`.
The work itself is the library's: :func:`segcvae.engine.run.train`, :func:`segcvae.evaluate`,
:meth:`segcvae.api.Predictor.predict_files`, :func:`segcvae.export.export_onnx`,
:func:`segcvae.crossval.crossval`.
"""
