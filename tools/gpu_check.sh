#!/usr/bin/env bash
# (The project's copy of ../shared/gpu/check.sh, with the commands as they are now: the op
# benchmark moved to minitorch_seg.benchmark. The wheels come from ../shared/gpu/wheels: copy
# that folder to .gpu/ (listed in .git/info/exclude) and pass carry [".gpu"].)
# All GPU checks of minitorch-seg in one go, on a machine with an NVIDIA GPU where CuPy, PyTorch,
# numba and pytest are preinstalled and nothing can be downloaded.
#
#   bash tools/gpu_check.sh OUTDIR [WHEELDIR]      (run from the project's root)
#
# Installs the wheels in WHEELDIR (default: .gpu/wheels; the pure-Python packages the project
# needs that such a machine lacks: cityscapesscripts and its dependencies), then runs, each
# under its own time limit so that one hang cannot eat the rest:
#   1. the GPU tests (every CUDA kernel against the CPU kernels, gradient checks on the GPU),
#   2. the op benchmark against PyTorch, 3. the model benchmark against PyTorch (JSON),
#   4. kernels: CUDA-event times of our kernels (and matmul calls) in one training step and one
#      inference, by kernel family, beside the roofline estimate for an H100 (kernels.json),
#   5. the main job with its default GPU settings.
# Each writes its log into OUTDIR; summary.txt holds each step's exit code and seconds.
# Set STEPS="tests ops model kernels main" (any subset, in that order) to run fewer.
# The estimate that step 4 compares with comes from the emulated GPU, no GPU needed: compute it
# beforehand (python -m fastscnn.benchmark --device cuda --estimate H100 --json > .gpu/estimate.json,
# about 3 minutes on 2 cores) so that the GPU is not held while it runs; ESTIMATE names another
# file. Without the file the step computes it itself, under a longer limit.
set -u
out=${1:?usage: check.sh OUTDIR [WHEELDIR]}
whl=${2:-.gpu/wheels}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
if ls "$whl"/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/mts-site "$whl"/*.whl >"$out/pip.log" 2>&1 || echo "wheel install failed: see pip.log"
fi
export PYTHONPATH=/tmp/mts-site:$PWD${PYTHONPATH:+:$PYTHONPATH}
{ nvidia-smi; python3 -c 'import sys, numpy, numba, cupy, torch; print(sys.version); print("numpy", numpy.__version__, "numba", numba.__version__, "cupy", cupy.__version__, "torch", torch.__version__)'; } >"$out/machine.txt" 2>&1

step() {  # step NAME LIMIT_S COMMAND...: run with a time limit, log to OUTDIR/NAME.log
  local name=$1 limit=$2; shift 2
  case " ${STEPS:-tests ops model kernels main} " in *" $name "*) ;; *) return ;; esac
  local t0=$SECONDS
  timeout -k 10 "$limit" "$@" >"$out/$name.log" 2>&1
  local rc=$?
  printf '%-6s exit %3s  %4ss  (limit %ss)\n' "$name" "$rc" $((SECONDS - t0)) "$limit" | tee -a "$out/summary.txt"
}

step tests 180 python3 -m pytest -q -m gpu -p no:cacheprovider --junitxml="$out/tests.xml" tests
step ops    60 python3 -m minitorch_seg.benchmark --device cuda
step model  90 python3 -m fastscnn.benchmark --device cuda --compare-torch --json
est=${ESTIMATE:-.gpu/estimate.json}
if [ -f "$est" ]; then kernels=(90 --measure "$est"); else kernels=(300 --measure); fi
step kernels "${kernels[0]}" sh -c 'exec "$@" >"$0"' "$out/kernels.json" \
  python3 -m fastscnn.benchmark --device cuda --estimate H100 "${kernels[@]:1}" --json
step main  320 python3 examples/train_cityscapes.py --device cuda --out "$out/run" --no-progress
tail -n 5 "$out/tests.log" 2>/dev/null
cat "$out/summary.txt"
