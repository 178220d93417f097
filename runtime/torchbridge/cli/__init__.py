"""The ``tb`` command line. Each subcommand is a thin layer over a runtime function."""
