"""The ``shufflenas`` command: one explicit table of subcommands (as Optuna's ``cli._COMMANDS``),
each a short handler that turns strings into objects at the edge and calls the library.
``main(argv=None) -> int``.

A new command is a handler in one of the ``nas/cli/_*.py`` modules and one line in
:data:`_COMMANDS`; the order of the table is the order of ``shufflenas --help``.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import logging
import os
import sys
from typing import Sequence

from search_space import SHORT_LEGEND, SpaceError, SpecError

from nas._errors import NasError
from nas.cli import (_bank, _dashboard, _doctor, _evaluate, _export, _foundation, _guidelines, _latency_model,
                     _proxy, _study, _worker)
from nas.cli._command import Command
from nas.fleet import mask_secrets

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
    where = f"shufflenas {args.command}"
    notes = _notes(where)
    try:
        return int(args._run(args) or 0)
    except _USER_ERRORS as exc:
        print(f"{where}: error: {_message(exc, args._flags)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{where}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:   # `shufflenas sample ... | head`: the reader is gone, which is not an error
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    # Faults of the machine or of a file, wherever they surface below: one line naming it, no traceback.
    except OSError as exc:
        print(f"{where}: error: {_os_error(exc)}", file=sys.stderr)
        return 2
    except MemoryError:
        print(f"{where}: error: out of memory; use a smaller spec, resolution or batch, or a machine with more "
              f"memory", file=sys.stderr)
        return 2
    except Exception as exc:
        if not any(c.__module__.split(".")[0] == "sqlalchemy" for c in type(exc).__mro__):
            raise   # a bug: keep the traceback
        text = " ".join(str(getattr(exc, "orig", None) or exc).split())[:300]
        print(f"{where}: error: database error ({mask_secrets(text)})", file=sys.stderr)
        return 2
    finally:
        logging.getLogger("shufflenas").removeHandler(notes)


def _notes(where: str) -> logging.Handler:
    """Warnings of the library (a partial journal record set aside or skipped, a dead process's trial
    failed and re-queued) as one line each."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(logging.WARNING)
    handler.setFormatter(logging.Formatter(f"{where}: note: %(message)s"))
    log = logging.getLogger("shufflenas")
    log.addHandler(handler)
    log.propagate = False
    return handler


def _os_error(exc: OSError) -> str:
    what = exc.filename or "a file"
    if exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        return f"no space left on device writing {what}; free space, then re-run"
    if exc.errno == errno.EROFS:
        return f"{what}: read-only file system; give a writable path"
    return f"{what}: {exc.strerror or exc}"


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
