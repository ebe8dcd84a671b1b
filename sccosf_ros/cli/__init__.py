"""Command-line entry points (console scripts in setup.py); each module has a ``main(argv=None)``."""
