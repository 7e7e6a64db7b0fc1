"""init_params: the documented seeded scheme, exactly; scheduling never changes the values; the
ParamStore takes init_params's fresh arrays over without a copy, and copies anything else."""
from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import pytest

import cnnc
from cnnc.errors import CnncParamError
from cnnc.ir.graph import ParamSpec
from cnnc.runtime import params as P

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SMALL = "input x: [N, 3, 8, 8]\noutput y = x |> conv(4, 3x3) as c1 |> bn |> relu |> flatten |> dense(5) as fc"


def documented(specs: dict[str, ParamSpec], seed: int) -> dict[str, np.ndarray]:
    """init_params's docstring, spelled out one parameter at a time."""
    values = {}
    for name, spec in specs.items():
        if spec.init == "he":
            rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
            bound = np.float32(np.sqrt(6.0 / spec.fan_in))
            values[name] = rng.random(spec.shape, dtype=np.float32) * (2 * bound) - bound
        elif spec.init == "ones":
            values[name] = np.ones(spec.shape, np.float32)
        else:
            values[name] = np.zeros(spec.shape, np.float32)
    return values


def specs_of(source: object) -> dict[str, ParamSpec]:
    return cnnc.build_graph(source).info.user_param_specs()


@pytest.mark.parametrize("seed", [0, 3])
def test_values_follow_the_documented_scheme(seed):
    specs = specs_of(EXAMPLES / "resnet18.cnn")  # 11.7 M He values: drawn on several threads where there are CPUs
    got, want = P.init_params(specs, seed), documented(specs, seed)
    assert list(got) == list(specs)
    for name, value in want.items():
        assert got[name].dtype == np.float32 and got[name].flags.c_contiguous
        np.testing.assert_array_equal(got[name], value, err_msg=name)


def test_scheduling_does_not_change_values(monkeypatch):
    specs = specs_of(EXAMPLES / "resnet18.cnn")
    monkeypatch.setattr(P, "_PARALLEL_MIN_ELEMENTS", 1 << 62)
    serial = P.init_params(specs, 1)
    monkeypatch.setattr(P, "_PARALLEL_MIN_ELEMENTS", 0)
    monkeypatch.setattr(P, "_cpu_count", lambda: 4)
    threaded = P.init_params(specs, 1)
    backwards = P.init_params(dict(reversed(list(specs.items()))), 1)
    for name in specs:
        np.testing.assert_array_equal(threaded[name], serial[name], err_msg=name)
        np.testing.assert_array_equal(backwards[name], serial[name], err_msg=name)


def test_distributions():
    specs = {"a.weight": ParamSpec((256, 128, 3, 3), "he", 128 * 9), "a.bias": ParamSpec((256,), "zeros"),
             "bn.gamma": ParamSpec((256,), "ones"), "bn.mean": ParamSpec((256,), "zeros")}
    values = P.init_params(specs, 0)
    weight = values["a.weight"].astype(np.float64)
    assert abs(weight.mean()) < 1e-3
    assert weight.std() == pytest.approx(np.sqrt(2 / (128 * 9)), rel=0.01)  # 295k draws: the estimate's σ is 0.13%
    bound = np.sqrt(6 / (128 * 9))  # He-uniform: [-a, a), and its tails are used
    assert weight.min() >= -bound and weight.max() < bound and weight.max() > 0.999 * bound
    assert not values["a.bias"].any() and not values["bn.mean"].any()
    assert (values["bn.gamma"] == 1).all()


def test_a_failure_on_a_worker_thread_reaches_the_caller(monkeypatch):
    monkeypatch.setattr(P, "_PARALLEL_MIN_ELEMENTS", 0)
    monkeypatch.setattr(P, "_cpu_count", lambda: 2)
    specs = {"a.weight": ParamSpec((4, 4), "he", 16), "b.weight": ParamSpec((4, 4), "he", 0)}
    with pytest.raises(ZeroDivisionError):
        P.init_params(specs, 0)


def test_too_large_a_parameter_is_a_param_error():
    with pytest.raises(CnncParamError, match="too large to allocate"):
        P.init_params({"huge.weight": ParamSpec((2**20, 2**20, 2**10), "he", 9)}, 0)


def test_store_adopts_fresh_values_and_copies_the_rest():
    specs = specs_of(SMALL)
    values = P.init_params(specs, 0)
    mine = np.full(specs["fc.bias"].shape, 2.0)  # float64, the caller's: cast into a copy of its own
    values["fc.bias"] = mine
    store = P.ParamStore(specs, values)
    for name in specs:
        assert not store[name].flags.writeable
        if name != "fc.bias":
            assert store[name] is values[name]  # taken over, not copied
    assert store["fc.bias"] is not mine and store["fc.bias"].dtype == np.float32 and (store["fc.bias"] == 2).all()
    assert mine.flags.writeable
    assert store.version == len(specs)
    with pytest.raises(ValueError, match="read-only"):
        store["c1.weight"][...] = 0


def test_store_still_checks_what_it_does_not_adopt():
    specs = specs_of(SMALL)
    values = P.init_params(specs, 0)
    values["fc.weight"] = np.zeros((3, 3), np.float32)
    with pytest.raises(CnncParamError, match="does not fit layer 'fc'"):
        P.ParamStore(specs, values)
    values = P.init_params(specs, 0)
    values["fc.bias"] = np.full(specs["fc.bias"].shape, np.nan, np.float32)
    with pytest.warns(RuntimeWarning, match="fc.bias"):
        P.ParamStore(specs, values)


def test_compiled_network_params_are_the_seeded_ones():
    net = cnnc.compile(SMALL, seed=4)
    want = documented(net.params.specs, 4)
    for name in want:
        np.testing.assert_array_equal(net.params[name], want[name])
    net.params["fc.bias"] = np.ones(5)  # assignment still works (and bumps the version)
    assert (net.params["fc.bias"] == 1).all()


def test_seeded_store_draws_on_first_read_and_only_then(monkeypatch):
    """compile draws no weights: names, shapes, len and repr need none; the first read draws all of
    them, once, with the documented values; replacing them all first never draws them."""
    calls = []
    real = P.init_params
    monkeypatch.setattr(P, "init_params", lambda specs, seed: calls.append(seed) or real(specs, seed))
    net = cnnc.compile(SMALL, seed=5)
    store = net.params
    assert not store.drawn and len(store) == len(store.specs) and list(store) == list(store.specs)
    assert "c1.weight" in store and "nope" not in store and "fc.weight" in repr(store)
    assert calls == []
    want = documented(store.specs, 5)
    np.testing.assert_array_equal(store["c1.weight"], want["c1.weight"])
    assert store.drawn and calls == [5]
    for name in want:
        np.testing.assert_array_equal(store[name], want[name])
        assert not store[name].flags.writeable
    assert calls == [5]

    calls.clear()
    other = cnnc.compile(SMALL, seed=6)
    other.params.update_from({n: np.zeros(s.shape) for n, s in other.params.specs.items()}, "zeros")
    x = np.ones((2, 3, 8, 8), np.float32)
    assert (other(x) == 0).all() and calls == []  # the user's weights: the seeded ones never drawn

    partial = cnnc.compile(SMALL, seed=7)
    partial.params["fc.bias"] = np.ones(5)  # one assigned: the others are drawn first, as documented
    assert calls == [7] and (partial.params["fc.bias"] == 1).all()
    np.testing.assert_array_equal(partial.params["fc.weight"], documented(partial.params.specs, 7)["fc.weight"])


def test_seeded_store_draws_once_under_concurrent_reads(monkeypatch):
    import threading

    calls = []
    real = P.init_params
    barrier = threading.Barrier(4)

    def slow(specs, seed):
        calls.append(seed)
        return real(specs, seed)

    monkeypatch.setattr(P, "init_params", slow)
    net = cnnc.compile(SMALL, seed=1)
    seen = []

    def read():
        barrier.wait()
        seen.append(net.params["fc.weight"])

    threads = [threading.Thread(target=read) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert calls == [1] and all(value is seen[0] for value in seen)
