"""The ``shufflenas`` command: a table of subcommands, each a short function that turns strings
into objects at the edge and calls the library. ``main(argv=None) -> int``.

Each ``nas/_cmd_*.py`` module exposes ``COMMANDS``: a list of :class:`Command`; modules are found
by name, so adding a command touches no shared file.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from dataclasses import dataclass
from typing import Callable, Sequence


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


def _command_modules() -> list[str]:
    """Every ``nas/_cmd_*.py`` module, foundation commands first, then by name. A new command is a
    new module exposing ``COMMANDS``: nothing here changes."""
    import pkgutil
    from pathlib import Path

    names = sorted(m.name for m in pkgutil.iter_modules([str(Path(__file__).parent)]) if m.name.startswith("_cmd_"))
    names.sort(key=lambda n: n != "_cmd_foundation")
    return [f"nas.{n}" for n in names]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="shufflenas",
        description="Design-space explorer for ShuffleNet V1/V2 unit variants: multi-objective Optuna "
                    "studies of an accuracy proxy against latency measured on your device.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for module_name in _command_modules():
        for cmd in importlib.import_module(module_name).COMMANDS:
            p = sub.add_parser(cmd.name, help=cmd.help, description=cmd.help)
            cmd.add_arguments(p)
            p.set_defaults(_run=cmd.run)
    return parser


def _user_errors() -> tuple[type[BaseException], ...]:
    from search_space import SpaceError, SpecError

    from ._errors import NasError

    return (SpecError, SpaceError, NasError)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except _user_errors() as exc:
        print(f"shufflenas {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"shufflenas {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
