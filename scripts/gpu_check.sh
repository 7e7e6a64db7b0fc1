#!/usr/bin/env bash
# The GPU check of the CuPy backend, in one go: the gpu-marked tests, then the benchmark table.
#
# On a machine with an NVIDIA GPU, CuPy, PyTorch (CUDA), numpy, networkx and pytest, from the
# repository root:
#
#     bash scripts/gpu_check.sh              # tests (tests/test_gpu.py) + benchmarks/bench_gpu.py
#     bash scripts/gpu_check.sh --tests      # only the tests
#     bash scripts/gpu_check.sh --bench      # only the benchmark
#
# What the GPU machine lacks (lark, at least: it has no network) is installed from wheels in
# wheels/ (or $CNNC_WHEELS) with pip --no-index. Fetch them first, on a machine with network
# access, for the GPU machine's Python (3.12 by default, $CNNC_WHEEL_PYTHON):
#
#     bash scripts/gpu_check.sh --fetch-wheels
#
# wheels/ is git-ignored: copy it to the GPU machine along with the working tree.
set -euo pipefail
cd "$(dirname "$0")/.."

WHEELS=${CNNC_WHEELS:-wheels}
NEEDED=(lark)  # what the GPU machine's image lacks (it has cupy, torch, numpy, networkx, pytest)
PYTHON=${PYTHON:-python3}

if [[ "${1:-}" == "--fetch-wheels" ]]; then
    mkdir -p "$WHEELS"
    for package in "${NEEDED[@]}"; do
        version=$("$PYTHON" -c "import importlib.metadata as m; print(m.version('$package'))" 2>/dev/null || true)
        "$PYTHON" -m pip download --no-deps --only-binary=:all: --python-version "${CNNC_WHEEL_PYTHON:-3.12}" \
            --implementation py --platform any -d "$WHEELS" "$package${version:+==$version}"
    done
    ls -l "$WHEELS"
    exit 0
fi

run_tests=1
run_bench=1
case "${1:-}" in
    --tests) run_bench=0 ;;
    --bench) run_tests=0 ;;
    "") ;;
    *) echo "usage: $0 [--tests | --bench | --fetch-wheels]" >&2; exit 2 ;;
esac

# Install what is missing, from the carried wheels only (the GPU machine has no network).
missing=()
for package in "${NEEDED[@]}"; do
    "$PYTHON" -c "import $package" 2>/dev/null || missing+=("$package")
done
if ((${#missing[@]})); then
    if ! ls "$WHEELS"/*.whl >/dev/null 2>&1; then
        echo "gpu_check: ${missing[*]} missing and no wheels in $WHEELS/ (run: bash $0 --fetch-wheels)" >&2
        exit 1
    fi
    site=${CNNC_SITE:-/tmp/cnnc-gpu-site}
    "$PYTHON" -m pip install --quiet --no-index --no-deps --no-compile --find-links "$WHEELS" --target "$site" \
        "${missing[@]}"
    export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1

"$PYTHON" - <<'EOF'
from cnnc.runtime.gpu import cupy_status, device_name

cupy, reason = cupy_status()
if cupy is None:
    raise SystemExit(f"gpu_check: {reason}")
import numpy
try:
    import torch
    torch_version = torch.__version__
except ImportError:
    torch_version = "not installed (the benchmark needs it)"
print(f"gpu_check: {device_name()}; cupy {cupy.__version__}, numpy {numpy.__version__}, torch {torch_version}")
EOF

status=0
if ((run_tests)); then
    "$PYTHON" -m pytest -m gpu tests/test_gpu.py -q -rs -p no:cacheprovider || status=$?
fi
if ((run_bench)); then
    "$PYTHON" benchmarks/bench_gpu.py --models resnet50 vgg16 --batch 1 32 || status=$?
fi
exit $status
