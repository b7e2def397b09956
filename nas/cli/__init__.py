"""The ``shufflenas`` command line: :func:`main` and the table of subcommands (``nas/cli/_main.py``).

Handlers live in ``nas/cli/_<area>.py``; each parses strings into objects and calls the library.
"""

from nas.cli._command import Command
from nas.cli._main import build_parser, main

__all__ = ["Command", "build_parser", "main"]
