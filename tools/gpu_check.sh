#!/usr/bin/env bash
# On a machine with an NVIDIA GPU and driver: build the CUDA flavour of Caffe
# for this GPU's architecture only, then train templates (our Python loss
# layers inside a GPU net) with `caffe-losses train --gpu 0` and
# `caffe train -gpu 0`, and print the time per iteration against the same
# net in CPU mode.  About ten minutes on a 16-core machine with network to
# Debian and PyPI (most of it the build); no test depends on it.
#
# Usage: tools/gpu_check.sh [--prebuilt VENV] [--python PY --caffe TOOL]
#                           [--iters N] [--jobs N] [--templates "A B"]
#
#   (default)        build with tools/install_caffe.sh --cuda into .venv-gpu,
#                    CAFFE_CUDA_ARCH_BIN = this GPU's compute capability
#                    (nvidia-smi --query-gpu=compute_cap), no PTX, all cores
#   --prebuilt VENV  use a CUDA build made before (no network needed):
#                    VENV/bin/python imports caffe, VENV/bin/caffe is the tool
#                    (CAFFE_LOSSES_PREBUILT=VENV does the same)
#   --python PY --caffe TOOL  the same for a bundle laid out otherwise
#   --iters N        training iterations per run (default 300)
#   --templates      templates to train (default: sigmoid_edges center_loss_lenetpp)
#
# caffe_losses is imported from this checkout when the Python given cannot
# import it.  Prints one table: per template and mode (GPU, CPU), the wall
# time per iteration of `caffe-losses train` and of `caffe train` (start-up
# included), and Caffe's own `caffe time` forward-backward per iteration.
set -Eeuo pipefail
cd "$(dirname "$0")/.."
REPO="$PWD"

PREBUILT="${CAFFE_LOSSES_PREBUILT:-}"
PY=""
TOOL=""
ITERS=300
JOBS="$(nproc)"
TEMPLATES="sigmoid_edges center_loss_lenetpp"
while [ $# -gt 0 ]; do
  case "$1" in
    --prebuilt) PREBUILT="${2:?--prebuilt needs a virtualenv}"; shift ;;
    --python) PY="${2:?}"; shift ;;
    --caffe) TOOL="${2:?}"; shift ;;
    --iters) ITERS="${2:?}"; shift ;;
    --jobs) JOBS="${2:?}"; shift ;;
    --templates) TEMPLATES="${2:?}"; shift ;;
    -h|--help) sed -n '2,27p' "$0"; exit 0 ;;
    *) echo "gpu_check.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done
die() { echo "gpu_check.sh: FAIL: $*" >&2; exit 1; }
log() { echo "gpu_check.sh: $*" >&2; }
ms() { python3 -c "import sys; print(f'{1000 * float(sys.argv[1]) / float(sys.argv[2]):.2f}')" "$@"; }
T_START=$(date +%s)

command -v nvidia-smi >/dev/null || die "nvidia-smi not found: this needs an NVIDIA GPU and its driver"
nvidia-smi --query-gpu=name,compute_cap,driver_version,memory.total --format=csv,noheader | head -n1 >&2 \
  || die "nvidia-smi cannot query the GPU"
CC="$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -n1 | tr -d ' .')"
[[ "$CC" =~ ^[0-9]+$ ]] || die "unexpected compute capability '$CC'"

if [ -n "$PREBUILT" ]; then
  PY="${PY:-$PREBUILT/bin/python}"
  TOOL="${TOOL:-$PREBUILT/bin/caffe}"
elif [ -z "$PY" ]; then
  log "building Caffe (CUDA 13) for sm_$CC only, $JOBS jobs"
  t0=$(date +%s)
  CAFFE_CUDA_ARCH_BIN="$CC" CAFFE_CUDA_ARCH_PTX="" bash tools/install_caffe.sh --cuda --venv .venv-gpu --jobs "$JOBS"
  .venv-gpu/bin/python -m pip install -q -e '.[demo]'
  log "built in $(( $(date +%s) - t0 )) s"
  PY=.venv-gpu/bin/python
  TOOL=.venv-gpu/bin/caffe
fi
[ -n "$TOOL" ] || die "--python needs --caffe too"
PY="$(cd "$(dirname "$PY")" && pwd)/$(basename "$PY")"
TOOL="$(cd "$(dirname "$TOOL")" && pwd)/$(basename "$TOOL")"
if ! (cd / && "$PY" -c "import caffe_losses" 2>/dev/null); then
  export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
fi
"$PY" -c "import caffe" || die "$PY cannot import caffe"
GLOG_minloglevel=2 "$PY" tools/check_build.py --expect-cuda --expect-gpu --caffe "$TOOL" || die "the build check failed"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/gpu-check.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
ROWS=()
timed() {   # LOG COMMAND...: seconds the command took; its output goes to LOG
  local log_file="$1" t0 t1; shift
  t0=$(date +%s.%N)
  "$@" > "$log_file" 2>&1 || { tail -n 30 "$log_file" >&2; die "failed: $*"; }
  t1=$(date +%s.%N)
  python3 -c "import sys; print(float(sys.argv[2]) - float(sys.argv[1]))" "$t0" "$t1"
}
for name in $TEMPLATES; do
  dir="$WORK/$name"
  "$PY" -m caffe_losses.cli template "$name" --out "$dir" > /dev/null || die "template $name failed"
  cd "$dir"
  sed -e "s/^max_iter:.*/max_iter: $ITERS/" -e 's/^snapshot_prefix:.*/snapshot_prefix: "caffe_tool"/' \
      -e "s/^test_interval:.*/test_interval: $(( ITERS + 1 ))/" solver.prototxt > solver_check.prototxt
  weights=()
  [ ! -f init_weights.caffemodel ] || weights=(init_weights.caffemodel)
  for mode in GPU CPU; do
    gpu=(); tool_gpu=()
    [ "$mode" = CPU ] || { gpu=(--gpu 0); tool_gpu=(-gpu 0); }
    log "$name, $mode: caffe-losses train, caffe train ($ITERS iterations), caffe time"
    t_cl=$(timed "cl_$mode.log" "$PY" -m caffe_losses.cli train solver_check.prototxt --max-iter "$ITERS" \
             --no-progress "${gpu[@]}" ${weights[@]:+--weights "${weights[@]}"})
    t_tool=$(timed "caffe_$mode.log" env GLOG_logtostderr=1 "$TOOL" train -solver solver_check.prototxt \
               "${tool_gpu[@]}" ${weights[@]:+-weights "${weights[@]}"})
    grep -q "Optimization Done" "caffe_$mode.log" || die "$name $mode: caffe train did not finish"
    [ -f "caffe_tool_iter_$ITERS.caffemodel" ] || die "$name $mode: no snapshot caffe_tool_iter_$ITERS.caffemodel"
    rm -f caffe_tool_iter_*
    timed "time_$mode.log" env GLOG_logtostderr=1 "$TOOL" time -model train_val.prototxt -iterations 50 \
      "${tool_gpu[@]}" > /dev/null
    fb="$(sed -n 's/.*Average Forward-Backward: \([0-9.]*\) ms.*/\1/p' "time_$mode.log" | tail -n1)"
    ROWS+=("$(printf '%-22s %-4s %14s %14s %14s' "$name" "$mode" "$(ms "$t_cl" "$ITERS")" \
                "$(ms "$t_tool" "$ITERS")" "${fb:-?}")")
  done
  cd "$REPO"
done

echo
nvidia-smi --query-gpu=name,compute_cap,driver_version --format=csv,noheader | head -n1
printf '%-22s %-4s %14s %14s %14s\n' template mode "caffe-losses" "caffe train" "caffe time"
printf '%-22s %-4s %14s %14s %14s\n' "" "" "ms/iter" "ms/iter" "fwd-bwd ms"
printf '%s\n' "${ROWS[@]}"
echo "($ITERS iterations per training run, start-up included; caffe time: 50 iterations)"
echo "gpu check passed in $(( $(date +%s) - T_START )) s"
