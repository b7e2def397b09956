"""A real worker process whose objective is a no-op (a short sleep), for the coordination tests
(creation races, exact trial counts, baselines claimed once, Ctrl-C): everything but the
architecture evaluation is the real ``shufflenas worker`` path (storage, study, locks, heartbeats).

    python pg_light_worker.py STUDY.toml STORAGE_URL UNTIL SLEEP_S [INTERRUPT]

With INTERRUPT = 1 the worker sends itself SIGINT (a real Ctrl-C) in the middle of its first trial.

It prints ``ready`` once imported and waits for a line ``go`` on stdin, so that a test can release
many workers at the same moment (the race is then real, not spread out by import times).
"""

import os
import signal
import sys
import time

from nas.fleet import open_worker_storage, parse_storage, prepare_worker
from nas.study import load_study_config, quiet_optuna


def main() -> int:
    study_file, url, until, sleep_s = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    interrupt = len(sys.argv) > 5 and sys.argv[5] == "1"
    config = load_study_config(study_file)
    print("ready", flush=True)  # imports done: the test starts every worker at the same moment
    if sys.stdin.readline().strip() != "go":
        return 3
    with quiet_optuna():
        storage = open_worker_storage(parse_storage(url), heartbeat_interval=1, grace_period=4)
        setup = prepare_worker(config, storage, until=until)
        print(f"{'CREATED' if setup.created else 'joined'} study {setup.study.study_name!r}", file=sys.stderr, flush=True)

        def evaluate(trial):
            name = trial.user_attrs.get("baseline")
            x = 0.5 if name else trial.suggest_float("x", 0.0, 1.0)
            if interrupt:
                os.kill(os.getpid(), signal.SIGINT)
            time.sleep(sleep_s)
            trial.set_user_attr("evaluated_by", setup.worker.report.worker)
            return [x, 1.0 - x]

        setup.worker.evaluate = evaluate
        try:
            report = setup.worker.run()
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130
    print(report.summary(), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
