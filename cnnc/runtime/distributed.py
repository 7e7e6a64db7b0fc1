"""Batch inference over large image sets on Dask (`cnnc run --workers 4`, `--scheduler tcp://...`).

The sorted input list is cut into fixed partitions of `partition_size` files (a multiple of the
batch size). Each partition is one Dask task that reads its own files, runs them `batch` at a
time and writes its rows (`cnnc.runtime.results`' schema, built by `prediction_rows` and
`error_row`) as one file of the output folder:

    preds.parquet/
        _manifest.json          the run: format, inputs, partitions, network; totals when complete
        _state/part-00000.json  per committed partition: counts and its bad files
        part-00000.parquet      rows of inputs 0 .. partition_size-1 (or part-00000.jsonl)
        ...
        _errors.jsonl           every bad file with its reason (error rows), written at the end

A partition is written to a temporary name and renamed into place (`os.replace`, state file
first), so a reader never sees half of one, and a rerun of the same command skips the partitions
already there (`resume=False`, `--no-resume`, redoes them). Names starting with `_` or `.` are
what pyarrow and pandas leave out, so `pandas.read_parquet("preds.parquet")` reads the rows.

The network travels once per worker: a `NetworkPayload` (generated code, optimized IR, the
user's parameters) goes in a worker plugin (`dask_plugin.InstallNetwork`) that rebuilds it on
each worker, including one that joins or restarts later; tasks name it by its token. Dask is
imported only by the functions that use it (`import cnnc` does not import it).
"""
from __future__ import annotations

import copyreg
import hashlib
import io
import json
import math
import os
import pickle
import secrets
import shutil
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import IO, Any

import numpy as np

from ..errors import CnncError, CnncInputError
from .batches import Example, read_examples, run_batches
from .files import atomic_write, atomic_writes
from .inputs import ImageConversion, expand_inputs, steps_for
from .network import CompiledNetwork
from .progress import Progress, _clock
from .results import Row, error_row, jsonl_lines, prediction_rows

PARTITION_SIZE = 256  # input files per partition (rounded up to a multiple of the batch)
MANIFEST = "_manifest.json"
STATE = "_state"
ERRORS = "_errors.jsonl"
FORMATS = {".parquet": "parquet", ".jsonl": "jsonl", ".ndjson": "jsonl"}
EXTENSIONS = {"parquet": "parquet", "jsonl": "jsonl"}
CONNECT_TIMEOUT = 10  # seconds to reach a --scheduler before giving up
LOG_INTERVAL = 10.0  # seconds between progress lines when standard error is not a terminal


def _dask_missing(where: str) -> CnncError:
    return CnncError("running on Dask needs dask.distributed (and pyarrow for .parquet): "
                     "pip install 'cnnc[dask]'", where=where)


def output_format(path: str | os.PathLike[str]) -> str:
    """"parquet" or "jsonl" from the output folder's suffix; a CnncInputError for any other."""
    found = FORMATS.get(Path(path).suffix.lower())
    if found is None:
        raise CnncInputError("a partitioned run writes a folder of Parquet (preds.parquet) or JSON Lines "
                             "(preds.jsonl) partitions", where=str(path))
    return found


# ---- the network, as it travels --------------------------------------------------------------

def _mappingproxy(values: dict) -> MappingProxyType:
    return MappingProxyType(values)


class _Pickler(pickle.Pickler):
    """IR node records hold their parameter roles in a read-only mappingproxy, which pickle
    refuses; this pickler writes it as a dict rebuilt into one (no global copyreg change)."""

    dispatch_table = copyreg.dispatch_table.copy()
    dispatch_table[MappingProxyType] = lambda proxy: (_mappingproxy, (dict(proxy),))


@dataclass(frozen=True)
class NetworkPayload:
    """A compiled network as bytes (its generated NumPy code, optimized IR and the user's
    parameters; the derived ones are recomputed where it lands), and a token naming its content."""

    token: str
    data: bytes = field(repr=False)

    @classmethod
    def from_network(cls, net: CompiledNetwork) -> NetworkPayload:
        source = getattr(net, "_numpy_source", net.source)  # a network moved to the GPU runs NumPy here
        graph = net.graph
        params = dict(net.params.data)
        digest = hashlib.sha256(source.encode())
        for name in sorted(params):
            array = np.ascontiguousarray(params[name])
            digest.update(f"\0{name}\0{array.dtype}\0{array.shape}\0".encode())
            digest.update(array.tobytes())
        buffer = io.BytesIO()
        _Pickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump((graph, source, params))
        return cls(digest.hexdigest(), buffer.getvalue())

    def build(self) -> CompiledNetwork:
        graph, source, params = pickle.loads(self.data)  # noqa: S301 - cnnc's own payload
        return CompiledNetwork(graph, source, params=params)

    def __dask_tokenize__(self) -> str:
        return self.token


_NETWORKS: dict[str, CompiledNetwork] = {}  # token → network, in this (worker) process
_NETWORKS_LOCK = threading.Lock()


def install_network(payload: NetworkPayload) -> CompiledNetwork:
    """The payload's network in this process, built on first use (once per worker process)."""
    with _NETWORKS_LOCK:
        net = _NETWORKS.get(payload.token)
        if net is None:
            net = _NETWORKS[payload.token] = payload.build()
        return net


def forget_network(token: str) -> None:
    with _NETWORKS_LOCK:
        _NETWORKS.pop(token, None)


def _installed(token: str) -> CompiledNetwork:
    with _NETWORKS_LOCK:
        net = _NETWORKS.get(token)
    if net is None:
        raise RuntimeError(f"the cnnc network {token[:12]} is not installed on this worker (its plugin did not run)")
    return net


# ---- one partition ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Partition:
    """Inputs `start` .. `start + len(files) - 1` of the sorted list: (path to read, path as
    named) pairs; `first_batch` numbers its forward passes on from the partitions before it."""

    index: int
    start: int
    files: tuple[tuple[str, str], ...]
    first_batch: int

    @property
    def name(self) -> str:
        return f"part-{self.index:05d}"


@dataclass
class PartitionResult:
    index: int
    files: int = 0
    good: int = 0
    bad: int = 0
    examples: int = 0
    batches: int = 0
    rows: int = 0
    seconds: float = 0.0
    errors: list[tuple[str, str]] = field(default_factory=list)
    skipped: bool = False  # committed by an earlier run

    @classmethod
    def from_json(cls, data: dict) -> PartitionResult:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        known["errors"] = [tuple(e) for e in known.get("errors", [])]
        return cls(**known)


def partition_rows(net: CompiledNetwork, part: Partition, batch: int, top: int) -> tuple[list[Row], PartitionResult]:
    """Run one partition: its rows (prediction rows batch by batch; an error row for each file
    that cannot be read, as it is met) and its counts. Any failure to read a file, not only the
    ones cnnc recognizes, makes that file bad; a failure of the network itself is raised."""
    name = net.input_names[0]
    shape = net.graph.shape(name)
    steps = steps_for(net.graph, name)
    rows: list[Row] = []
    result = PartitionResult(part.index, files=len(part.files))
    start = time.perf_counter()

    def examples() -> Iterator[Example]:
        for read, shown in part.files:
            try:
                found = read_examples(read, shape, steps)
            except CnncInputError as error:
                reason = error.message
            except Exception as error:  # noqa: BLE001 - a bad file must not stop the job
                reason = f"cannot read the file ({type(error).__name__}: {error})"
            else:
                result.good += 1
                for example in found:
                    yield Example(example.array, replace(example.source, path=shown))
                continue
            reason = reason.replace(read, shown) if read != shown else reason
            result.bad += 1
            result.errors.append((shown, reason))
            rows.append(error_row(shown, reason))

    def done(index: int, sources: list, outputs: dict) -> None:
        rows.extend(prediction_rows(net.graph, outputs, sources, part.first_batch + index, top))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ImageConversion)  # notes for a terminal, not for a worker's log
        stats = run_batches(net.run, name, shape, examples(), batch, done)
    result.examples, result.batches, result.rows = stats.examples, stats.batches, len(rows)
    result.seconds = time.perf_counter() - start
    return rows, result


# ---- Parquet and JSON Lines partitions -----------------------------------------------------------

def _arrow_schema() -> Any:
    """The Parquet columns of results.py's rows (its docstring has the schema): every key of
    every kind, missing ones null; a tensor's `values` flattened (its `shape` restores them)."""
    import pyarrow as pa  # type: ignore[import-untyped,unused-ignore]

    numbers = pa.list_(pa.float64())
    return pa.schema([("path", pa.string()), ("index", pa.int64()), ("batch", pa.int64()),
                      ("output", pa.string()), ("kind", pa.string()), ("labels", pa.list_(pa.int64())),
                      ("scores", numbers), ("boxes", pa.list_(numbers)), ("shape", pa.list_(pa.int64())),
                      ("min", pa.float64()), ("max", pa.float64()), ("mean", pa.float64()),
                      ("std", pa.float64()), ("values", numbers), ("names", pa.list_(pa.string())),
                      ("error", pa.string())])


_BASE_KEYS = ("path", "index", "batch", "output", "kind")
_KIND_KEYS = {"classes": ("labels", "scores"), "detections": ("boxes", "scores", "labels"),
              "tensor": ("shape", "min", "max", "mean", "std"), "error": ("error",)}


def _flatten(values: Any) -> list:
    if not isinstance(values, list):
        return [values]
    return [v for item in values for v in _flatten(item)]


def _nest(flat: list, shape: Sequence[int]) -> Any:
    if not shape:
        return flat[0]
    step = len(flat) // shape[0] if shape[0] else 0
    return [_nest(flat[i * step:(i + 1) * step], shape[1:]) for i in range(shape[0])]


def _record(row: Row) -> Row:
    if "values" in row:
        return {**row, "values": _flatten(row["values"])}
    return row


def _row(record: Row) -> Row:
    """A Parquet record back into results.py's row (the keys its kind has)."""
    kind = record["kind"]
    row = {key: record[key] for key in (*_BASE_KEYS, *_KIND_KEYS.get(kind, ()))}
    if kind == "tensor" and record.get("values") is not None:
        row["values"] = _nest(list(record["values"]), record["shape"])
    if record.get("names") is not None:  # class names, when the output has a label set
        row["names"] = record["names"]
    return row


def write_partition(handle: IO, rows: list[Row], fmt: str) -> None:
    if fmt == "jsonl":
        handle.write("".join(jsonl_lines(rows)).encode("utf-8"))
        return
    import pyarrow as pa  # type: ignore[import-untyped,unused-ignore]
    import pyarrow.parquet as pq  # type: ignore[import-untyped,unused-ignore]

    pq.write_table(pa.Table.from_pylist([_record(row) for row in rows], schema=_arrow_schema()), handle)


def read_partition(path: str | os.PathLike[str]) -> list[Row]:
    """The rows of one partition file (.parquet or .jsonl), as results.py builds them."""
    if str(path).endswith(".parquet"):
        import pyarrow.parquet as pq  # type: ignore[import-untyped,unused-ignore]

        return [_row(record) for record in pq.read_table(path).to_pylist()]
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def read_rows(output: str | os.PathLike[str]) -> list[Row]:
    """Every row of a partitioned results folder, partition by partition (in input order)."""
    folder = Path(output)
    fmt = output_format(folder)
    rows: list[Row] = []
    for part in sorted(folder.glob(f"part-*.{EXTENSIONS[fmt]}")):
        rows.extend(read_partition(part))
    return rows


def run_partition(token: str, part: Partition, folder: str, fmt: str, batch: int, top: int,
                  job: str) -> dict:
    """The task: run a partition with the installed network and commit it (state file, then
    data file, each renamed into place). Returns its PartitionResult as a dict."""
    try:
        rows, result = partition_rows(_installed(token), part, batch, top)
        out = Path(folder)
        state = {"job": job, **asdict(result)}
        with atomic_writes([(out / STATE / f"{part.name}.json", "w"),
                            (out / f"{part.name}.{EXTENSIONS[fmt]}", "wb")]) as (state_file, data_file):
            json.dump(state, state_file)
            write_partition(data_file, rows, fmt)
    except CnncError as error:  # its message, not its pickled arguments, reaches the driver
        raise RuntimeError(f"{part.name}: {error}") from None
    return asdict(result)


def _bag_partition(payload: NetworkPayload, part: Partition, batch: int, top: int) -> list[Row]:
    return partition_rows(install_network(payload), part, batch, top)[0]


# ---- the driver -------------------------------------------------------------------------------

@dataclass
class PredictSummary:
    """What `predict_files` did: `good + bad == inputs` files; `partitions` in all, of which
    `skipped` were already written by an earlier run; `errors` the bad files with reasons
    (also in `errors_file`)."""

    inputs: int
    good: int
    bad: int
    examples: int
    rows: int
    partitions: int
    skipped: int
    output: Path
    errors_file: Path
    errors: list[tuple[str, str]]
    seconds: float
    workers: int

    @property
    def rate(self) -> float:
        return self.examples / self.seconds if self.seconds > 0 else 0.0


def _files(paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]]) -> list[str]:
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    arguments = [os.fspath(p) for p in paths]
    if not arguments:
        raise CnncInputError("no input files", where="paths")
    return sorted(expand_inputs(arguments).files)


def _partition_size(net: CompiledNetwork, batch: int, size: int | None) -> tuple[int, int]:
    """(examples per forward pass, files per partition: a multiple of it)."""
    shape = net.graph.shape(net.input_names[0])
    if batch < 1:
        raise CnncInputError("the batch size must be a positive integer", where="batch_size")
    per_pass = batch if isinstance(shape[0], str) else int(shape[0])
    size = PARTITION_SIZE if size is None else size
    if size < 1:
        raise CnncInputError("the partition size must be a positive integer", where="partition_size")
    return per_pass, math.ceil(size / per_pass) * per_pass


def make_partitions(files: Sequence[str], size: int, per_pass: int) -> list[Partition]:
    passes = math.ceil(size / per_pass)
    return [Partition(i, start, tuple((os.path.abspath(f), f) for f in files[start:start + size]), i * passes)
            for i, start in enumerate(range(0, len(files), size))]


def predict_bag(net: CompiledNetwork, paths: Any, batch_size: int = 8, top: int = 5,
                partition_size: int | None = None) -> Any:
    """A dask.bag of result rows (results.py's schema: prediction rows, and an error row per
    file that cannot be read), one bag partition per `partition_size` files of the sorted
    inputs. The network is one key of the graph, sent once to each worker that needs it.

        rows = cnnc.predict_bag(net, "photos/**/*.jpg", batch_size=16)
        rows.filter(lambda r: r["kind"] == "classes").pluck("labels").compute()
    """
    try:
        import dask
        import dask.bag as db
    except ImportError:
        raise _dask_missing("predict_bag") from None
    per_pass, size = _partition_size(net, batch_size, partition_size)
    parts = make_partitions(_files(paths), size, per_pass)
    payload = dask.delayed(NetworkPayload.from_network(net), pure=True)
    partition = dask.delayed(_bag_partition, pure=True)
    return db.from_delayed([partition(payload, part, per_pass, top) for part in parts])


def _job_key(files: Sequence[Partition], token: str, fmt: str, size: int, batch: int, top: int) -> str:
    digest = hashlib.sha256(json.dumps({"format": fmt, "partition_size": size, "batch": batch, "top": top,
                                        "network": token}).encode())
    for part in files:
        for read, _ in part.files:
            digest.update(read.encode() + b"\0")
    return digest.hexdigest()


def _prepare(folder: Path, fmt: str, job: str, resume: bool) -> None:
    """Make the output folder ready: resume a matching run, clear ours (`resume=False`), and
    never write into a folder cnnc did not make."""
    if folder.exists() and not folder.is_dir():
        raise CnncInputError("the output of a partitioned run is a folder, and this is a file", where=str(folder))
    manifest = folder / MANIFEST
    if folder.is_dir() and any(folder.iterdir()):
        if not manifest.is_file():
            raise CnncInputError("the folder exists and is not a cnnc results folder (no _manifest.json); "
                                 "choose another --output", where=str(folder))
        try:
            old = json.loads(manifest.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            old = {}
        if resume and old.get("job") != job:
            raise CnncInputError("the folder holds the results of another run (other inputs, network, batch, "
                                 "--top or partition size); --no-resume replaces them", where=str(folder))
        if not resume:
            for entry in folder.iterdir():
                if entry.name.startswith(("part-", ".part-", "._manifest", "._errors")) or \
                        entry.name in (MANIFEST, ERRORS):
                    entry.unlink()
            shutil.rmtree(folder / STATE, ignore_errors=True)
    (folder / STATE).mkdir(parents=True, exist_ok=True)


def _committed(folder: Path, part: Partition, fmt: str, job: str) -> PartitionResult | None:
    """An earlier run's result for this partition, when its data file is in place."""
    if not (folder / f"{part.name}.{EXTENSIONS[fmt]}").is_file():
        return None
    try:
        state = json.loads((folder / STATE / f"{part.name}.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if state.get("job") != job:
        return None
    result = PartitionResult.from_json(state)
    result.skipped = True
    return result


def _write_manifest(folder: Path, data: dict) -> None:
    with atomic_write(folder / MANIFEST, "w") as handle:
        json.dump(data, handle, indent=1)
        handle.write("\n")


class _ClusterProgress(Progress):
    """Files done (skipped partitions included) out of all, the rate of this run's work and the
    ETA from it: a bar on a terminal (Progress), a plain line every LOG_INTERVAL seconds into a
    log or a pipe (a cluster job runs for hours), nothing when `show` is false."""

    def __init__(self, total: int, already: int, show: bool):
        super().__init__(total, "images")
        self.log = show and not self.enabled
        self.enabled = self.enabled and show
        self.already = already
        self.done = already
        self._logged = time.perf_counter()

    def text(self, now: float) -> str:
        elapsed = now - self.start
        rate = self.examples / elapsed if elapsed > 0 else 0.0
        fresh = self.done - self.already
        eta = ""
        if 0 < self.done < self.total and fresh > 0:
            eta = f"  ETA {_clock(elapsed * (self.total - self.done) / fresh)}"
        return f"{self.done}/{self.total} files  {rate:.1f} images/s  {_clock(elapsed)}{eta}"

    def line(self, now: float | None = None) -> str:
        now = time.perf_counter() if now is None else now
        filled = round((self.done / self.total if self.total else 1.0) * 24)
        return f"[{'#' * filled}{'.' * (24 - filled)}] {self.text(now)}"

    def advance(self, inputs: int = 0, examples: int = 0) -> None:
        if not self.log:
            super().advance(inputs, examples)
            return
        self.done += inputs
        self.examples += examples
        now = time.perf_counter()
        if now - self._logged >= LOG_INTERVAL:
            print(f"progress: {self.text(now)}", file=self.stream, flush=True)
            self._logged = now


def local_cluster(workers: int) -> Any:
    """The embedded cluster: `workers` processes of one thread each (Dask's nanny sets
    OMP_NUM_THREADS=1), no dashboard, quiet logs. Dask's MALLOC_TRIM_THRESHOLD_=65536 is left
    out: it makes glibc return every large NumPy temporary to the system, which cost ResNet-18
    a fifth of its speed here (BENCHMARKS.md)."""
    import logging

    import dask.config
    import distributed

    environ = dict(dask.config.get("distributed.nanny.pre-spawn-environ", {}))
    environ.pop("MALLOC_TRIM_THRESHOLD_", None)
    with dask.config.set({"distributed.nanny.pre-spawn-environ": environ}):
        return distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                        dashboard_address=None, silence_logs=logging.ERROR)


def predict_files(net: CompiledNetwork, paths: Any, output: str | os.PathLike[str], batch_size: int = 8,
                  client: Any = None, workers: int | None = None, *, top: int = 5,
                  partition_size: int | None = None, resume: bool = True, progress: bool = False,
                  on_partition: Callable[[PartitionResult], None] | None = None,
                  on_error: Callable[[str, str], None] | None = None) -> PredictSummary:
    """Run `net` over many files on Dask and write a partitioned results folder (module docstring).

    `paths`: files, folders and glob patterns, as `cnnc run --input` takes them (sorted into
    partitions). `output`: `preds.parquet` or `preds.jsonl`, a folder. `client`: a
    `distributed.Client` to run on; without one, a LocalCluster of `workers` processes (the
    CPU count by default) is started and closed. Partitions already written by the same run
    are kept (`resume=False` redoes them). `progress` draws a progress line on standard error;
    `on_partition(result)` is called in the driver as each partition finishes, `on_error(path,
    reason)` for each bad file. Returns a PredictSummary; bad files do not stop the run.
    """
    try:
        import distributed
    except ImportError:
        raise _dask_missing("predict_files") from None
    from .dask_plugin import InstallNetwork

    fmt = output_format(output)
    if fmt == "parquet":
        try:
            import pyarrow  # type: ignore[import-untyped,unused-ignore]  # noqa: F401
        except ImportError:
            raise _dask_missing(str(output)) from None
    started = time.perf_counter()
    files = _files(paths)
    per_pass, size = _partition_size(net, batch_size, partition_size)
    parts = make_partitions(files, size, per_pass)
    payload = NetworkPayload.from_network(net)
    job = _job_key(parts, payload.token, fmt, size, per_pass, top)
    folder = Path(output).absolute()
    _prepare(folder, fmt, job, resume)
    manifest = {"cnnc_results": 1, "schema": 1, "format": fmt, "job": job, "network": payload.token,
                "inputs": len(files), "partition_size": size, "batch": per_pass, "top": top,
                "partitions": len(parts), "complete": False}
    _write_manifest(folder, manifest)
    results: dict[int, PartitionResult] = {}
    for part in parts:
        done = _committed(folder, part, fmt, job)
        if done is not None:
            results[part.index] = done
    todo = [part for part in parts if part.index not in results]
    owned = None
    cluster = None
    if todo and client is None:
        cluster = local_cluster(workers or os.cpu_count() or 1)
        client = owned = distributed.Client(cluster)
    meter = _ClusterProgress(len(files), sum(results[i].files for i in results), progress)
    worker_count = len(client.scheduler_info().get("workers", {})) if client is not None else 0
    try:
        if todo:
            run = secrets.token_hex(4)  # fresh keys: a cancelled earlier call's may linger
            plugin = InstallNetwork(payload)
            client.register_plugin(plugin, name=plugin.name)
            futures = [client.submit(run_partition, payload.token, part, str(folder), fmt, per_pass, top, job,
                                     key=f"cnnc-{job[:12]}-{run}-{part.name}") for part in todo]
            try:
                for future in distributed.as_completed(futures):
                    try:
                        result = PartitionResult.from_json(future.result())
                    except distributed.KilledWorker as error:
                        raise CnncError(f"the Dask workers running a partition died again and again ({error}); "
                                        "rerun the same command to resume", where=str(output)) from None
                    except Exception as error:  # noqa: BLE001 - the task's own error, as one line
                        raise CnncError(f"a partition failed ({error}); the partitions written so far are kept: "
                                        "rerun the same command to resume", where=str(output)) from None
                    results[result.index] = result
                    for path, reason in result.errors:
                        if on_error is not None:
                            meter.clear()
                            on_error(path, reason)
                    meter.advance(inputs=result.files, examples=result.examples)
                    if on_partition is not None:
                        on_partition(result)
            except BaseException:
                client.cancel(futures)
                raise
            finally:
                with _quiet():
                    client.unregister_worker_plugin(plugin.name)
    finally:
        meter.close()
        if owned is not None:
            with _quiet():
                owned.close()
                assert cluster is not None
                cluster.close()
    ordered = [results[part.index] for part in parts]
    errors = [error for result in ordered for error in result.errors]
    with atomic_write(folder / ERRORS, "w") as handle:
        handle.writelines(jsonl_lines(error_row(path, reason) for path, reason in errors))
    for entry in folder.glob(".part-*.tmp"):  # left by a worker killed while it wrote
        entry.unlink(missing_ok=True)
    summary = PredictSummary(inputs=len(files), good=sum(r.good for r in ordered), bad=sum(r.bad for r in ordered),
                             examples=sum(r.examples for r in ordered if not r.skipped),
                             rows=sum(r.rows for r in ordered), partitions=len(parts),
                             skipped=sum(r.skipped for r in ordered), output=Path(output),
                             errors_file=Path(output) / ERRORS, errors=errors,
                             seconds=time.perf_counter() - started, workers=worker_count)
    _write_manifest(folder, {**manifest, "complete": True, "good": summary.good, "bad": summary.bad,
                             "rows": summary.rows})
    return summary


class _quiet:
    """Closing a cluster or removing a plugin after an error must not hide the error."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, error: Any, trace: Any) -> bool:
        return kind is not None and issubclass(kind, Exception)


# ---- `cnnc run --workers / --scheduler` -------------------------------------------------------

def connect(address: str) -> Any:
    """A Client of the scheduler at `address`, or one CnncError line when it cannot be reached."""
    try:
        import distributed
    except ImportError:
        raise _dask_missing("--scheduler") from None
    try:
        return distributed.Client(address, timeout=CONNECT_TIMEOUT)
    except (OSError, TimeoutError, ValueError) as error:
        raise CnncError(f"cannot reach the Dask scheduler at {address} within {CONNECT_TIMEOUT} s "
                        f"({type(error).__name__}: {str(error).splitlines()[0] if str(error) else 'no reply'})",
                        where="--scheduler") from None


def run_cli(net: CompiledNetwork, inputs: list[str], output: str, batch: int, top: int, workers: int | None,
            scheduler: str | None, partition_size: int | None, resume: bool, compiled: float) -> int:
    """`cnnc run ... --workers N` or `--scheduler ADDRESS`: the summary lines; exit status 1
    when some files could not be read (their reasons are in the errors file), 0 otherwise."""
    output_format(output)
    client = connect(scheduler) if scheduler else None

    def bad(path: str, reason: str) -> None:
        print(f"{path}: skipped: {reason}", file=sys.stderr)

    try:
        summary = predict_files(net, inputs, output, batch_size=batch, client=client, workers=workers, top=top,
                                partition_size=partition_size, resume=resume, progress=True, on_error=bad)
    finally:
        if client is not None:
            with _quiet():
                client.close()
    new = summary.partitions - summary.skipped
    skipped = f" ({summary.skipped} already written, skipped)" if summary.skipped else ""
    print(f"wrote {output}/: {summary.partitions} partition{'s' if summary.partitions != 1 else ''}{skipped}, "
          f"{summary.rows} rows; errors: {summary.errors_file}")
    counts = f"{summary.inputs} input files: {summary.good} ran, {summary.bad} failed"
    if not new:
        print(f"{counts}; all {summary.partitions} partitions were already written (--no-resume redoes them)",
              file=sys.stderr)
    else:
        where = f"the Dask scheduler {scheduler}" if scheduler else "a local Dask cluster"
        print(f"{counts}; {summary.examples} images in {new} partition{'s' if new != 1 else ''} on {where} "
              f"({summary.workers} worker{'s' if summary.workers != 1 else ''}), {summary.seconds:.2f} s "
              f"({summary.rate:.1f} images/s; compile {compiled:.2f} s)"
              f"{f'; {summary.skipped} partitions already written' if summary.skipped else ''}", file=sys.stderr)
    return 1 if summary.bad else 0
