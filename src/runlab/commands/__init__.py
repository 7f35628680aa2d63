"""Implementations of the ``runlab`` subcommands (see ``runlab.cli``)."""
