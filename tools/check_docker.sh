#!/usr/bin/env bash
# make check-docker: build the cpu and cuda images and use them as a user
# would, as a non-root uid on a mounted host folder.
#
#   each image: caffe-losses template NAME --out DIR; a short `caffe-losses
#     train` and `caffe train` on it, in a container that mounts the folder
#     somewhere else (the prepared folder must survive a re-mount); the
#     snapshots must appear on the host, owned by that uid; no warnings.
#   cpu:  caffe-losses demo --only infogain
#   cuda: import caffe; caffe.set_mode_cpu(), and tools/check_build.py
#         --expect-cuda (links CUDA 13; runs in CPU mode: no GPU needed)
# Prints build time, image size and run time of each image.
#
# Engine: $DOCKER_HOST when set (left alone); otherwise the dockerd on the
# socket under the build cache, started here (Debian's docker.io, own data
# root) when none answers there, and stopped at the end only if started here.
# Images and build cache stay for the next run.  The base image is
# debian:12-slim when present or pullable, else tools/docker_base.sh builds one
# (debootstrap + docker import, cached).  The build gets this machine's CA
# bundle as the ca_bundle secret (CAFFE_LOSSES_CA_BUNDLE overrides the path).
#
# CAFFE_CUDA_ARCH_BIN / CAFFE_CUDA_ARCH_PTX (as for install_caffe.sh), when
# set, become the cuda image's CUDA_ARCH_BIN / CUDA_ARCH_PTX: CI compiles one
# architecture to stay within its time; the published default is Turing to
# Hopper plus PTX.
#
# Usage: tools/check_docker.sh [--only cpu|cuda]
set -Eeuo pipefail
cd "$(dirname "$0")/.."

ONLY=""
while [ $# -gt 0 ]; do
  case "$1" in
    --only) ONLY="${2:?--only needs cpu or cuda}"; shift ;;
    -h|--help) sed -n '2,28p' "$0"; exit 0 ;;
    *) echo "check_docker.sh: unknown argument '$1'" >&2; exit 2 ;;
  esac
  shift
done

CACHE="${CAFFE_LOSSES_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/caffe-losses}"
DD="$CACHE/docker"
RUN_AS="1234:1234"
TEMPLATE="infogain_digits_source"
die() { echo "check_docker.sh: FAIL: $*" >&2; exit 1; }
log() { echo "check_docker.sh: $*" >&2; }
now() { date +%s; }
fmt() { printf '%dm%02ds' $(( $1 / 60 )) $(( $1 % 60 )); }
mkdir -p "$DD"

need_packages() {   # install Debian packages whose commands are missing
  local missing=() p
  for p in "$@"; do command -v "${p%%:*}" >/dev/null || missing+=("${p#*:}"); done
  [ ${#missing[@]} = 0 ] && return 0
  [ "$(id -u)" = 0 ] || die "missing ${missing[*]}: run as root or install them"
  log "installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
    || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; } \
    || die "apt-get install ${missing[*]} failed"
}

# --- the client: BuildKit is needed (secret and cache mounts).  A `docker`
# with the buildx plugin does it by default; Debian's docker.io (20.10) client
# has it built in, with DOCKER_BUILDKIT=1.
pick_client() {
  if [ -n "${DOCKER:-}" ]; then return; fi
  if command -v docker >/dev/null && docker buildx version >/dev/null 2>&1; then DOCKER=docker; return; fi
  [ -x /usr/bin/docker ] || need_packages dockerd:docker.io
  DOCKER=/usr/bin/docker
  local major
  major="$($DOCKER --version | sed -n 's/^Docker version \([0-9]*\).*/\1/p')"
  [ -n "$major" ] && [ "$major" -lt 23 ] \
    || die "$DOCKER has no buildx plugin and is too new for DOCKER_BUILDKIT=1 without it: install docker-buildx"
}
pick_client
export DOCKER_BUILDKIT=1

# --- the engine
DOCKERD_PID=""
WORK=""
cleanup() {
  local rc=$?
  [ -z "$WORK" ] || rm -rf "$WORK"
  if [ -n "$DOCKERD_PID" ]; then
    log "stopping the dockerd started here (pid $DOCKERD_PID)"
    kill -TERM "$DOCKERD_PID" 2>/dev/null || true
    for _ in $(seq 60); do kill -0 "$DOCKERD_PID" 2>/dev/null || break; sleep 1; done
    kill -0 "$DOCKERD_PID" 2>/dev/null && kill -KILL "$DOCKERD_PID" 2>/dev/null
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ -z "${DOCKER_HOST:-}" ]; then
  export DOCKER_HOST="unix://$DD/docker.sock"
  if ! $DOCKER info >/dev/null 2>&1; then
    need_packages dockerd:docker.io
    [ "$(id -u)" = 0 ] || die "no Docker engine answers on $DOCKER_HOST, and starting one needs root"
    log "starting dockerd (data root $DD/data, socket $DD/docker.sock; log $DD/dockerd.log)"
    rm -f "$DD/docker.sock"
    dockerd --storage-driver overlay2 --iptables=false --ip6tables=false --bridge=none \
      --data-root "$DD/data" --exec-root "$DD/exec" --pidfile "$DD/dockerd.pid" \
      -H "$DOCKER_HOST" --log-level warn > "$DD/dockerd.log" 2>&1 &
    DOCKERD_PID=$!
    for _ in $(seq 60); do
      $DOCKER info >/dev/null 2>&1 && break
      kill -0 "$DOCKERD_PID" 2>/dev/null || { tail -n 20 "$DD/dockerd.log" >&2; die "dockerd exited"; }
      sleep 1
    done
    $DOCKER info >/dev/null 2>&1 || { tail -n 20 "$DD/dockerd.log" >&2; die "dockerd did not answer in 60 s"; }
  else
    log "using the dockerd that answers on $DOCKER_HOST"
  fi
fi
log "client $DOCKER ($($DOCKER --version)); engine $($DOCKER version -f '{{.Server.Version}}') at $DOCKER_HOST"

# --- the base image
BASE="debian:12-slim"
if ! $DOCKER image inspect "$BASE" >/dev/null 2>&1 && ! $DOCKER pull -q "$BASE" >/dev/null 2>&1; then
  BASE="caffe-losses/debian:12-minbase"
  log "$BASE: debian:12-slim cannot be pulled here, using a local Debian 12 root"
  DOCKER="$DOCKER" bash tools/docker_base.sh "$BASE"
fi

# --- build
BUILD_ARGS=(--network host --build-arg "BASE_IMAGE=$BASE")
CA="${CAFFE_LOSSES_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"
[ ! -s "$CA" ] || BUILD_ARGS+=(--secret "id=ca_bundle,src=$CA")
declare -A BUILD_S SIZE RUN_S
build() {
  local target="$1"; shift
  local t0 log_file="$DD/build-$target.log"
  t0="$(now)"
  log "building caffe-losses:$target (log: $log_file)"
  $DOCKER build --progress plain "${BUILD_ARGS[@]}" "$@" --target "$target" -t "caffe-losses:$target" . \
      > "$log_file" 2>&1 || { tail -n 60 "$log_file" >&2; die "docker build --target $target failed"; }
  BUILD_S[$target]=$(( $(now) - t0 ))
  SIZE[$target]="$($DOCKER image inspect -f '{{.Size}}' "caffe-losses:$target")"
  log "caffe-losses:$target built in $(fmt "${BUILD_S[$target]}"), $(( SIZE[$target] / 1000000 )) MB"
}

# --- use
WORK="$(mktemp -d "${TMPDIR:-/tmp}/check-docker.XXXXXX")"
chmod 755 "$WORK"
in_image() {   # IMAGE HOSTDIR MOUNTPOINT COMMAND...: as uid $RUN_AS, no network, no home
  local image="$1" dir="$2" at="$3"; shift 3
  $DOCKER run --rm --network none --user "$RUN_AS" -v "$dir:$at" -w "$at" "$image" "$@"
}
# The CUDA build on a machine without a GPU (here) logs that cuBLAS and
# cuRAND are unavailable, through glog before it is initialised: expected.
NO_GPU='Logging before InitGoogleLogging|Cannot create Cublas handle|Cannot create Curand generator|Curand not available'
quiet() {   # COMMAND...: run it; fail on a non-zero exit or on warnings in its output
  local out
  out="$("$@" 2>&1)" || { echo "$out" | tail -n 40 >&2; die "failed: $*"; }
  if grep -v -E "$NO_GPU" <<<"$out" | grep -i -E 'warning|fontconfig|permission denied|read-only' >&2; then
    die "warnings from: $*"
  fi
  echo "$out"
}
use() {
  local target="$1" image="caffe-losses:$1" t0 dir
  t0="$(now)"
  dir="$WORK/$target"
  mkdir -p "$dir"
  chown "$RUN_AS" "$dir" 2>/dev/null || chmod 777 "$dir"
  log "$image: caffe-losses template $TEMPLATE --out t, as uid $RUN_AS on $dir"
  quiet in_image "$image" "$dir" /work caffe-losses template "$TEMPLATE" --out t > /dev/null
  in_image "$image" "$dir" /work sh -c \
    "sed -e 's/^max_iter:.*/max_iter: 20/' -e 's/^snapshot_prefix:.*/snapshot_prefix: \"caffe_tool\"/' \
       t/solver.prototxt > t/solver_short.prototxt"
  # trained where it was not prepared: the folder mounted at another path
  log "$image: caffe-losses train and caffe train, folder re-mounted at /data/moved"
  quiet in_image "$image" "$dir/t" /data/moved caffe-losses train solver.prototxt --max-iter 20 --no-progress >/dev/null
  in_image "$image" "$dir/t" /data/moved caffe train -solver solver_short.prototxt > "$dir/caffe_train.log" 2>&1 \
    || { tail -n 30 "$dir/caffe_train.log" >&2; die "$image: caffe train failed"; }
  grep -q "Optimization Done" "$dir/caffe_train.log" || die "$image: caffe train did not finish"
  ! grep -i -E 'fontconfig|permission denied' "$dir/caffe_train.log" >&2 || die "$image: caffe train warned"
  local snap prefix
  prefix="$(sed -n 's/^snapshot_prefix: *"\(.*\)"/\1/p' "$dir/t/solver.prototxt")"
  for snap in "${prefix}_iter_20.caffemodel" caffe_tool_iter_20.caffemodel; do
    [ -f "$dir/t/$snap" ] || die "$image: no snapshot $snap on the host (have: $(ls "$dir/t"))"
    [ "$(stat -c %u:%g "$dir/t/$snap")" = "$RUN_AS" ] \
      || die "$image: $snap is owned by $(stat -c %u:%g "$dir/t/$snap"), not $RUN_AS"
  done
  log "$image: snapshots ${prefix}_iter_20.caffemodel and caffe_tool_iter_20.caffemodel on the host, owned by $RUN_AS"
  if [ "$target" = cpu ]; then
    log "$image: caffe-losses demo --only infogain"
    quiet in_image "$image" "$dir" /work caffe-losses demo --only infogain --out demo | tail -n 8
    [ -s "$dir/demo/results.md" ] || die "$image: the demo wrote no demo/results.md"
  else
    log "$image: import caffe in CPU mode; tools/check_build.py --expect-cuda"
    quiet in_image "$image" "$dir" /work python -c "import caffe; caffe.set_mode_cpu()"
    quiet $DOCKER run --rm --network none --user "$RUN_AS" -e GLOG_minloglevel=2 \
      -v "$PWD/tools/check_build.py:/opt/check_build.py:ro" \
      "$image" python /opt/check_build.py --expect-cuda
  fi
  RUN_S[$target]=$(( $(now) - t0 ))
}

TARGETS=(cpu cuda)
[ -z "$ONLY" ] || TARGETS=("$ONLY")
for target in "${TARGETS[@]}"; do
  args=()
  if [ "$target" = cuda ]; then
    [ -z "${CAFFE_CUDA_ARCH_BIN+set}" ] || args+=(--build-arg "CUDA_ARCH_BIN=$CAFFE_CUDA_ARCH_BIN")
    [ -z "${CAFFE_CUDA_ARCH_PTX+set}" ] || args+=(--build-arg "CUDA_ARCH_PTX=$CAFFE_CUDA_ARCH_PTX")
  fi
  build "$target" "${args[@]}"
  use "$target"
done

echo
printf '%-20s %10s %10s %10s\n' image build size run
for target in "${TARGETS[@]}"; do
  printf '%-20s %10s %7d MB %10s\n' "caffe-losses:$target" "$(fmt "${BUILD_S[$target]}")" \
    $(( SIZE[$target] / 1000000 )) "$(fmt "${RUN_S[$target]}")"
done
echo "check-docker passed (base image $BASE)"
