"""Many processes on one study: storage URLs and opening, retries through database restarts, study
and schema locks, lost-worker recovery, the worker loop and the local launcher."""

from nas._lazy import lazy_exports

_EXPORTS = {
    "StorageError": "nas.fleet._storage",
    "StorageLocation": "nas.fleet._storage",
    "default_storage_path": "nas.fleet._storage",
    "load_existing_study": "nas.fleet._storage",
    "open_storage": "nas.fleet._storage",
    "parse_storage": "nas.fleet._storage",
    "Census": "nas.fleet._coord",
    "ResilientRDBStorage": "nas.fleet._coord",
    "computing_on_host": "nas.fleet._coord",
    "is_transient": "nas.fleet._coord",
    "measuring_on_host": "nas.fleet._coord",
    "open_schema_lock": "nas.fleet._coord",
    "requeue_once": "nas.fleet._coord",
    "retry": "nas.fleet._coord",
    "study_lock": "nas.fleet._coord",
    "sweep_dead_local_workers": "nas.fleet._coord",
    "sweep_stale_trials": "nas.fleet._coord",
    "STORAGE_ENV": "nas.fleet._worker",
    "StudyTask": "nas.fleet._worker",
    "Worker": "nas.fleet._worker",
    "WorkerError": "nas.fleet._worker",
    "WorkerReport": "nas.fleet._worker",
    "join_study": "nas.fleet._worker",
    "launch_workers": "nas.fleet._worker",
    "open_worker_storage": "nas.fleet._worker",
    "prepare_worker": "nas.fleet._worker",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
