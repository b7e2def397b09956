"""Many processes on one study: storage URLs and opening, retries through database restarts, study
and schema locks, lost-worker recovery, the worker loop and the local launcher."""

from nas._lazy import lazy_exports

_EXPORTS = {
    "StorageError": "nas.fleet._storage",
    "StorageLocation": "nas.fleet._storage",
    "as_location": "nas.fleet._storage",
    "default_storage_path": "nas.fleet._storage",
    "load_existing_study": "nas.fleet._storage",
    "mask_secrets": "nas.fleet._storage",
    "open_storage": "nas.fleet._storage",
    "parse_storage": "nas.fleet._storage",
    "Backoff": "nas.fleet._retry",
    "DEFAULT_RETRY_DEADLINE_S": "nas.fleet._retry",
    "is_transient": "nas.fleet._retry",
    "retry": "nas.fleet._retry",
    "retry_while_restarting": "nas.fleet._retry",
    "ResilientRDBStorage": "nas.fleet._rdb",
    "write_user_attrs": "nas.fleet._rdb",
    "open_schema_lock": "nas.fleet._locks",
    "schema_ready": "nas.fleet._locks",
    "study_lock": "nas.fleet._locks",
    "fail_trial": "nas.fleet._lost",
    "requeue_once": "nas.fleet._lost",
    "sweep_dead_local_workers": "nas.fleet._lost",
    "sweep_stale_trials": "nas.fleet._lost",
    "worker_id": "nas.fleet._lost",
    "HANDOFF": "nas.fleet._loop",
    "Handoff": "nas.fleet._loop",
    "TrialFailed": "nas.fleet._loop",
    "Worker": "nas.fleet._loop",
    "WorkerError": "nas.fleet._loop",
    "WorkerReport": "nas.fleet._loop",
    "StudyTask": "nas.fleet._task",
    "WorkerSetup": "nas.fleet._task",
    "join_study": "nas.fleet._join",
    "open_worker_storage": "nas.fleet._join",
    "prepare_worker": "nas.fleet._task",
    "STORAGE_ENV": "nas.fleet._launcher",
    "launch_here": "nas.fleet._launcher",
    "open_launch_storage": "nas.fleet._launcher",
    "launch_workers": "nas.fleet._launcher",
    "stop_when_parent_dies": "nas.fleet._launcher",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
