"""Subcommands of the ``backsplit`` command line, one module each (see ``backsplit.cli``)."""
