"""Parameters: seeded initialization, random test values, and .npz files checked name by name
and shape by shape."""
from __future__ import annotations

import difflib
import math
import os
import threading
import warnings
import zipfile
import zlib
from collections.abc import Iterator, Mapping, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, cast

import numpy as np

from ..errors import CnncParamError
from ..interop.torch_weights import BN_FROM_TORCH  # PyTorch's batch norm names → cnnc's
from ..ir.graph import ParamSpec
from ..ir.shapes import fmt
from .files import write_npz

# Below this many He-initialized elements in all, init_params draws on the calling thread alone.
_PARALLEL_MIN_ELEMENTS = 1 << 20
_MAX_THREADS = 8


def init_params(specs: Mapping[str, ParamSpec], seed: int = 0) -> dict[str, np.ndarray]:
    """He-uniform conv/dense weights, zero biases, identity BN — reproducible per name and seed.

    The scheme, exactly (every value is float32 from the start, never drawn as float64 and cast):

    - `init == "he"`: `np.random.default_rng([seed, zlib.crc32(name.encode())])` (PCG64) fills
      the whole parameter with one `random(dtype=np.float32)` draw in C order (uniform in [0, 1)),
      which is then mapped in place to [-a, a) with a = `np.float32(sqrt(6 / fan_in))`: He
      (Kaiming) initialization in its uniform form, variance 2 / fan_in like He-normal's. Uniform,
      because a float32 uniform draw is 3–4x faster than a normal one (ResNet-152's 60 M weights:
      0.2 s against 0.8 s on one core), and the initial weights are most of compile time.
    - `init == "ones"`: ones; `"prelu"`: 0.25 (PyTorch's PReLU); any other kind (`"zeros"`): zeros.

    A parameter's values depend only on the seed, its name and its shape: not on the order of
    `specs`, the other parameters (adding a layer does not change the initial values of the
    others), or how the work is scheduled. Networks with at least `_PARALLEL_MIN_ELEMENTS` He
    elements fill their parameters on a few threads (NumPy releases the GIL while it fills an
    array), largest first; this changes when each array is written, never what it holds.

    The arrays are fresh and shared with nothing, so a `ParamStore` built from the returned dict
    takes them over as they are, without a copy, and makes them read-only (edit a copy, or assign
    through the store, to change them afterwards).
    """
    params = _Initialized()
    drawn: list[tuple[str, np.ndarray, int]] = []
    for name, spec in specs.items():
        try:
            if spec.init == "he":
                values = np.empty(spec.shape, np.float32)
                drawn.append((name, values, spec.fan_in))
            elif spec.init == "ones":
                values = np.ones(spec.shape, np.float32)
            elif spec.init == "prelu":  # PyTorch's PReLU starts its slopes at 0.25
                values = np.full(spec.shape, 0.25, np.float32)
            else:
                values = np.zeros(spec.shape, np.float32)
        except MemoryError:
            raise CnncParamError(f"shape {tuple(spec.shape)} of layer '{_owner(name)}' is too large to allocate",
                                 where=name) from None
        params[name] = params.made[name] = values
    total = sum(values.size for _, values, _ in drawn)
    threads = min(_MAX_THREADS, len(drawn), _cpu_count()) if total >= _PARALLEL_MIN_ELEMENTS else 1
    if threads > 1:
        drawn.sort(key=lambda item: -item[1].size)  # the largest first keeps the threads evenly loaded
        with ThreadPoolExecutor(threads, thread_name_prefix="cnnc-init") as pool:
            list(pool.map(lambda item: _fill_he(seed, *item), drawn))  # list(): re-raises a failure
    else:
        for item in drawn:
            _fill_he(seed, *item)
    return params


def _fill_he(seed: int, name: str, out: np.ndarray, fan_in: int) -> None:
    rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
    rng.random(out=out, dtype=np.float32)
    bound = np.float32(np.sqrt(6.0 / fan_in))
    out *= 2 * bound
    out -= bound


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))  # the CPUs this process may run on (Linux)
    except AttributeError:
        return os.cpu_count() or 1


class _Initialized(dict):
    """What `init_params` returns. `made` holds the arrays it made itself (fresh, finite, C-ordered
    float32 of the specs' shapes), which a `ParamStore` adopts as they are instead of checking and
    copying them; a value the caller put in the dict afterwards is not among them and is copied."""

    def __init__(self) -> None:
        super().__init__()
        self.made: dict[str, np.ndarray] = {}

    def fresh(self, name: str) -> np.ndarray | None:
        value = self.get(name)
        return value if value is not None and self.made.get(name) is value else None


def random_params(specs: Mapping[str, ParamSpec], rng: np.random.Generator, *,
                  gamma: tuple[float, float] = (-1.5, 1.5), weights: bool = True) -> dict[str, np.ndarray]:
    """Random values that make every layer matter, for checking passes and generated code.

    BN variances are uniform in [0.5, 2), BN and affine scales uniform in `gamma` (by default of
    both signs: a pass must not push a negative scale through a ReLU), He weights He-normal, and
    everything else (biases, shifts, BN means) normal with σ 0.3. `weights=False` leaves the He
    weights out of the result, so a big network keeps its seeded ones and only the cheap rest is
    drawn. The order of `specs` fixes the draws: the same specs and seed give the same values.
    """
    values = {}
    for name, spec in specs.items():
        if name.endswith(".var"):
            values[name] = rng.uniform(0.5, 2.0, spec.shape).astype(np.float32)
        elif name.endswith((".gamma", ".scale")):
            values[name] = rng.uniform(*gamma, spec.shape).astype(np.float32)
        elif spec.init == "he":
            if weights:
                values[name] = (rng.standard_normal(spec.shape) * np.sqrt(2.0 / spec.fan_in)).astype(np.float32)
        else:
            values[name] = rng.normal(0, 0.3, spec.shape).astype(np.float32)
    return values


def _owner(name: str) -> str:
    return name.rsplit(".", 1)[0]


class UnknownParamError(CnncParamError, KeyError):
    """A parameter name the network does not have: a CnncParamError (one message, with a "did you
    mean" when a name is close) that is also a KeyError, as a mapping's missing key must be
    (`name in net.params` and `net.params.get(name)` rely on it). `key` is the name asked for."""

    def __init__(self, key: str, known: Iterator[str] | list[str]):
        self.key = key
        super().__init__(f"the network has no parameter '{key}'{_suggestion(key, list(known))}", where=key)

    def __str__(self) -> str:  # KeyError's would quote the whole message
        return self.render()


def _suggestion(key: str, known: list[str]) -> str:
    """"; did you mean ...?" for a name close to `key` (nothing when no name is)."""
    if not isinstance(key, str):
        return ""
    owner, _, role = key.rpartition(".")
    if role in BN_FROM_TORCH and f"{owner}.{BN_FROM_TORCH[role]}" in known:
        return (f"; did you mean '{owner}.{BN_FROM_TORCH[role]}'? (batch norm's parameters are gamma, beta, "
                f"mean, var)")
    roles = [name[len(owner) + 1:] for name in known if owner and name.startswith(owner + ".")
             and "." not in name[len(owner) + 1:]]
    if roles:  # the layer exists: its parameter is misspelled
        close = difflib.get_close_matches(role, roles, n=1, cutoff=0.6)
        return f"; did you mean '{owner}.{close[0]}'?" if close else \
            f"; layer '{owner}' has {', '.join(roles)}"
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.75)
    return f"; did you mean '{close[0]}'?" if close else ""


class ParamStore(MutableMapping):
    """The network's parameters by name; every assignment is checked against the network.

    `ParamStore(specs, values)` holds `values`; `ParamStore.seeded(specs, seed)` holds
    `init_params(specs, seed)`, drawn when a value is first read (ResNet-152's 60 M weights are
    most of its compile time, and wasted when the user's weights replace them all: `update_from`
    and `load` on a store nothing has read never draw them). Names, shapes and `len` need no values.
    """

    def __init__(self, specs: Mapping[str, ParamSpec], values: Mapping[str, np.ndarray]):
        self.specs = dict(specs)
        self.version = 0  # bumped on every change, so derived (folded) parameters are recomputed
        self._seed: int | None = None  # a seeded store not yet drawn: the seed to draw with
        self._draw_lock = threading.Lock()
        self._data: dict[str, np.ndarray] = {}
        self._take(values)

    @classmethod
    def seeded(cls, specs: Mapping[str, ParamSpec], seed: int = 0) -> ParamStore:
        """The seeded initialization (`init_params`), drawn on first read."""
        store = cls({}, {})
        store.specs = dict(specs)
        store._seed = seed
        store.version = 1  # as if drawn: what derives from it is computed after the draw
        return store

    def _take(self, values: Mapping[str, np.ndarray]) -> None:
        for name in self.specs:
            fresh = values.fresh(name) if isinstance(values, _Initialized) else None
            if fresh is not None and fresh.shape == tuple(self.specs[name].shape):
                # One of init_params's own arrays: valid by construction, so taken over instead of
                # copied and checked (for ResNet-152's 60 M values that is a tenth of a second or more).
                fresh.flags.writeable = False
                self._data[name] = fresh
                self.version += 1
            else:
                self[name] = values[name]

    @property
    def data(self) -> dict[str, np.ndarray]:
        """Every parameter by name (a seeded store draws its values here, once)."""
        if self._seed is not None:
            with self._draw_lock:  # two threads reading at once draw once
                if self._seed is not None:
                    drawn = init_params(self.specs, self._seed)  # fresh arrays, valid by construction
                    for values in drawn.values():
                        values.flags.writeable = False
                    self._data, self._seed = dict(drawn), None  # the values it stood for all along
        return self._data

    @data.setter
    def data(self, values: dict[str, np.ndarray]) -> None:
        self._data, self._seed = values, None

    @property
    def drawn(self) -> bool:
        """Whether the values exist (False: a seeded store that nothing has read yet)."""
        return self._seed is None

    def __getitem__(self, name: str) -> np.ndarray:
        try:
            return self.data[name]
        except (KeyError, TypeError):  # TypeError: an unhashable key (a list, say)
            raise UnknownParamError(name, list(self.specs)) from None

    def __contains__(self, name: object) -> bool:  # without building an error for every miss
        try:
            return name in self.specs
        except TypeError:
            return False

    def __setitem__(self, name: str, value: object) -> None:
        if name not in self.specs:
            raise UnknownParamError(name, list(self.specs))
        if isinstance(value, np.ndarray) and value.dtype == object:
            raise CnncParamError("parameter values must be numeric arrays", where=name)
        # The policy (docs/language.md, section 9): real numbers of any dtype are cast to float32;
        # complex values are refused (the cast would drop the imaginary part); NaN and infinity
        # (also from float64 values past float32's range) load, with a warning naming the parameter.
        if np.iscomplexobj(cast(Any, value)):  # any array-like; numpy's stubs want a narrower type
            raise CnncParamError("complex values are refused: parameters are real (float32)", where=name)
        try:
            with np.errstate(over="ignore"):  # the warning below names the parameter instead
                array = np.array(value, dtype=np.float32, order="C", copy=True)
        except (TypeError, ValueError) as error:
            raise CnncParamError(f"parameter values must be numeric arrays ({error})", where=name) from None
        if not np.isfinite(array).all():
            warnings.warn(f"parameter '{name}' holds NaN or infinite values", RuntimeWarning, stacklevel=2)
        expected = tuple(self.specs[name].shape)
        if array.shape != expected:
            raise CnncParamError(f"shape {array.shape} does not fit layer '{_owner(name)}', "
                                 f"which expects {expected}", where=name)
        # Our own read-only copy: editing a value in place would bypass the version counter and
        # leave folded parameters stale, so changes go through assignment.
        array.flags.writeable = False
        self.data[name] = array  # a seeded store draws the others first
        self.version += 1

    def __delitem__(self, name: str) -> None:
        raise CnncParamError("parameters cannot be deleted; assign new values instead", where=name)

    def __iter__(self) -> Iterator[str]:
        return iter(self.specs)

    def __len__(self) -> int:
        return len(self.specs)

    SHOWN = 8  # of more than SHOWN + 4 names, __repr__ lists the first SHOWN and the last two

    def __repr__(self) -> str:
        values = sum(math.prod(spec.shape) for spec in self.specs.values())
        names = list(self.specs)
        width = min(max((len(n) for n in names), default=0), 40)
        shown = names if len(names) <= self.SHOWN + 4 else [*names[:self.SHOWN], None, *names[-2:]]
        lines = [f"ParamStore: {len(names)} parameter{'s' if len(names) != 1 else ''}, {values:,} values "
                 f"({_mebibytes(4 * values)} float32)"]
        for name in shown:
            if name is None:
                lines.append(f"  ... {len(names) - self.SHOWN - 2} more (list(params) names them all)")
            else:
                lines.append(f"  {name.ljust(width)}  {fmt(tuple(self.specs[name].shape))}")
        return "\n".join(lines)

    @classmethod
    def from_values(cls, specs: Mapping[str, ParamSpec], values: Mapping[str, np.ndarray],
                    source: str) -> ParamStore:
        """A store holding exactly `values`: every name of `specs`, no other, each of its shape."""
        missing = [n for n in specs if n not in values]
        extra = [n for n in values if n not in specs]
        if missing:
            raise CnncParamError(f"missing parameter '{missing[0]}' (layer '{_owner(missing[0])}')"
                                 + (f" and {len(missing) - 1} more" if len(missing) > 1 else ""), where=source)
        if extra:
            raise CnncParamError(f"unknown parameter '{extra[0]}': the network has no such layer",
                                 where=source)
        return cls(specs, values)

    def update_from(self, values: Mapping[str, np.ndarray], source: str) -> None:
        """Replace every parameter from `values`, all or nothing: names must match exactly."""
        staged = ParamStore.from_values(self.specs, values, source)  # validates before anything changes
        self.data = staged.data
        self.version += 1

    def save(self, path: str | Path) -> None:
        write_npz(path, self.data)

    def load(self, path: str | Path) -> None:
        self.update_from(read_npz(path), str(path))


def _mebibytes(count: int) -> str:
    return f"{count / 2**20:.1f} MiB" if count >= 2**20 else f"{count / 2**10:.1f} KiB"


def read_npz(path: str | Path) -> dict[str, np.ndarray]:
    """Arrays from an .npz file; pickled objects are refused."""
    if Path(path).is_file() and not zipfile.is_zipfile(path):  # np.load would try it as .npy or pickle
        raise CnncParamError("not a valid .npz parameter file (not a zip archive written by numpy.savez)",
                             where=str(path))
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {name: archive[name] for name in archive.files}
    except FileNotFoundError:
        raise CnncParamError("no such parameter file", where=str(path)) from None
    except ValueError as error:
        if "pickle" in str(error).lower():
            raise CnncParamError("the file holds pickled Python objects, which cnnc refuses to load",
                                 where=str(path)) from None
        raise CnncParamError(f"not a valid .npz parameter file ({error})", where=str(path)) from None
    except (OSError, zipfile.BadZipFile) as error:
        raise CnncParamError(f"not a valid .npz parameter file ({error})", where=str(path)) from None
