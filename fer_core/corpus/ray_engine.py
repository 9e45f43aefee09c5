"""The Ray engine: the job's file list as a Ray Dataset, ``map_batches`` on an actor pool whose actors load
the recognizer once each and run :func:`~fer_core.corpus.work.process_file` on every file of a batch.

Ray is imported only when this engine runs (the optional extra ``scale``: ``pip install fer-core[scale]``).
Every node must see the input files and ``OUT_DIR`` at the same paths (one machine, or a shared file
system): workers write the parts themselves, atomically, exactly as the local engine does.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..errors import InvalidArgumentError
from .work import RECORD_SCHEMA, JobOptions, process_file

#: Files per ``map_batches`` batch: small, so that the pool's actors share a small corpus evenly and a
#: killed job loses little; each file is one recognizer call anyway. Each actor holds one batch at a time
#: (``max_tasks_in_flight_per_actor=1``), so a first-ready actor does not queue the work of the others.
DEFAULT_BATCH_SIZE: int = 8
#: Object store of a local cluster started by :func:`run_ray` (records only travel through it: small).
LOCAL_OBJECT_STORE_BYTES: int = 256 * 1024 * 1024


class CorpusWorker:
    """A Ray Data actor: loads the recognizer once, then processes batches of paths.

    Args:
        out_dir: the job's output folder; job: the job's options; threads: ONNX Runtime threads.
    """

    def __init__(self, out_dir: str, job: JobOptions, threads: int) -> None:
        from .. import __version__
        from ..recognizer import EmotionRecognizer
        from .local import _hub_revision
        from .work import detection_options

        self.out_dir, self.job = Path(out_dir), job
        self.recognizer = EmotionRecognizer.from_pretrained(job.model_id, revision=_hub_revision(job), threads=threads)
        # a node with another fer_core must not add results under this job's options hash
        found = (detection_options(self.recognizer), __version__)
        if job.detection and found != (job.detection, job.version):
            raise InvalidArgumentError(f"this Ray worker's detection settings and fer_core version {found} are not "
                                       f"the job's {(job.detection, job.version)}")
        try:
            import ray

            self.node = ray.get_runtime_context().get_node_id()
        except Exception:  # noqa: BLE001 - outside Ray (a direct call): no node id
            self.node = None

    def __call__(self, batch: dict[str, Any]) -> Any:
        """Process ``batch["path"]``; returns a ``pyarrow.Table`` of records (:data:`RECORD_SCHEMA`)."""
        import pyarrow as pa

        records = []
        for path in batch["path"]:
            record = process_file(self.recognizer, str(path), self.out_dir, self.job)
            record["node"] = self.node
            records.append(record)
        return pa.Table.from_pylist(records, schema=RECORD_SCHEMA)


def run_ray(paths: Sequence[Path], out_dir: Path, job: JobOptions, *, address: str | None = None,
            workers: int = 2, batch_size: int = DEFAULT_BATCH_SIZE, cpus_per_worker: float = 1.0,
            progress: bool = True, on_record: Callable[[dict[str, Any]], None] | None = None
            ) -> list[dict[str, Any]]:
    """Process ``paths`` on Ray Data.

    Connects to the cluster at ``address`` (``"auto"``, ``"HOST:PORT"`` or ``"ray://HOST:PORT"``; ``None``:
    ``RAY_ADDRESS`` if set, else a local cluster started here and stopped at the end). If Ray is already
    initialised in this process (``ray.init`` by the caller), that connection is used and kept.

    Args:
        paths: the job's input files; out_dir: the output folder (``faces/`` and ``done/`` existing), the
            same path on every node; job: the job's options.
        workers: actors in the pool (each loads the recognizer once).
        batch_size: files per ``map_batches`` batch.
        cpus_per_worker: Ray CPUs reserved per actor; also its ONNX Runtime threads (rounded, at least 1).
        progress: show Ray Data's progress bars.
        on_record: called in this process with each file's record as its batch comes back.

    Returns:
        One record per path, in input order (see :func:`~fer_core.corpus.work.process_file`).

    Raises:
        InvalidArgumentError: ``workers``, ``batch_size`` or ``cpus_per_worker`` out of range.
        ImportError: Ray is not installed (``pip install fer-core[scale]``).
    """
    if workers < 1 or batch_size < 1 or not cpus_per_worker > 0:
        raise InvalidArgumentError(f"workers ({workers}) and batch size ({batch_size}) must be >= 1 and CPUs per "
                                   f"worker ({cpus_per_worker}) > 0")
    import ray
    import ray.data

    started = not ray.is_initialized()
    if started:
        # fer_core's folder on the workers' path, in case it is a checkout rather than an installed package
        root = str(Path(__file__).resolve().parents[2])
        python_path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)
        address = address or os.environ.get("RAY_ADDRESS") or None
        local = {} if address else {  # a cluster of our own: enough CPUs for the pool, a small object store
            "num_cpus": max(os.cpu_count() or 1, math.ceil(workers * cpus_per_worker)),
            "object_store_memory": LOCAL_OBJECT_STORE_BYTES}
        ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False,
                 runtime_env={"env_vars": {"PYTHONPATH": python_path}}, **local)
    try:
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = progress
        context.print_on_execution_start = False
        items = [{"path": str(p)} for p in paths]
        blocks = max(1, min(len(items), -(-len(items) // batch_size)))
        dataset = ray.data.from_items(items, override_num_blocks=blocks).map_batches(
            CorpusWorker, batch_size=batch_size, batch_format="numpy", num_cpus=cpus_per_worker,
            compute=ray.data.ActorPoolStrategy(size=workers, max_tasks_in_flight_per_actor=1),
            fn_constructor_kwargs={"out_dir": str(out_dir), "job": job, "threads": max(1, round(cpus_per_worker))})
        by_path: dict[str, dict[str, Any]] = {}
        for batch in dataset.iter_batches(batch_format="pyarrow", batch_size=None):
            for record in batch.to_pylist():
                by_path[record["path"]] = record
                if on_record:
                    on_record(record)
        return [by_path[str(p)] for p in paths]
    finally:
        if started:
            ray.shutdown()
