"""The ``shufflenas`` command: one explicit table of subcommands (as Optuna's ``cli._COMMANDS``),
each a short handler that turns strings into objects at the edge and calls the library.
``main(argv=None) -> int``.

A new command is a handler in one of the ``nas/cli/_*.py`` modules and one line in
:data:`_COMMANDS`; the order of the table is the order of ``shufflenas --help``.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from search_space import SHORT_LEGEND, SpaceError, SpecError

from nas._errors import NasError
from nas.cli import (_bank, _dashboard, _doctor, _evaluate, _export, _foundation, _guidelines, _latency_model,
                     _proxy, _study, _worker)
from nas.cli._command import Command

_COMMANDS: tuple[Command, ...] = (
    *_foundation.COMMANDS,      # baselines, sample, profile
    *_dashboard.COMMANDS,       # dashboard
    *_evaluate.COMMANDS,        # evaluate
    *_doctor.COMMANDS,          # doctor
    *_export.COMMANDS,          # export
    *_guidelines.COMMANDS,      # guidelines
    *_latency_model.COMMANDS,   # latency-model build | check
    *_proxy.COMMANDS,           # validate-proxy
    *_bank.COMMANDS,            # bank (plan, build, status, validate), verify
    *_study.COMMANDS,           # launch, pareto
    *_worker.COMMANDS,          # worker
)

# Errors a user can fix: one line on stderr and exit 2; anything else is a bug and keeps its traceback.
# Commands that print architecture strings: their --help ends with the legend of the string.
_SHOWS_ARCHITECTURES = {"launch", "pareto", "evaluate", "export", "worker", "sample", "profile", "baselines"}

_USER_ERRORS: tuple[type[BaseException], ...] = (SpecError, SpaceError, NasError)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="shufflenas",
        description="Design-space explorer for ShuffleNet V1/V2 unit variants: multi-objective Optuna "
                    "studies of an accuracy proxy against latency measured on your device.",
        epilog=SHORT_LEGEND,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for cmd in _COMMANDS:
        p = sub.add_parser(cmd.name, help=cmd.help, description=cmd.help,
                           epilog=SHORT_LEGEND if cmd.name in _SHOWS_ARCHITECTURES else None)
        cmd.add_arguments(p)
        p.set_defaults(_run=cmd.run, _flags=cmd.flags)
    return parser


def _message(exc: BaseException, flags: dict[str, str]) -> str:
    """The error as the command line says it: a message about library parameter ``p`` names its flag."""
    text, param = str(exc), getattr(exc, "param", None)
    flag = flags.get(param) if param else None
    return flag + text[len(param):] if flag and text.startswith(param) else text


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except _USER_ERRORS as exc:
        print(f"shufflenas {args.command}: error: {_message(exc, args._flags)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"shufflenas {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
