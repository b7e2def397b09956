"""``shufflenas worker`` started in step with others: the process imports everything (torch
included), prints ``ready``, waits for a line ``go`` on stdin, then runs the real command line
(``nas.cli.main(["worker", *ARGS])``). Import times on a busy machine differ by seconds; without
this a fault test's workers would not be at work together.

    python pg_cli_worker.py STUDY.toml --storage URL ...
"""

import sys

import shufflenet  # noqa: F401

import nas  # noqa: F401 - the package and torch, before the start
from nas.cli import main

if __name__ == "__main__":
    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        sys.exit(3)
    sys.exit(main(["worker", *sys.argv[1:]]))
