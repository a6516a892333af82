#!/usr/bin/env bash
# Build the official BVLC Caffe (pycaffe + the `caffe` tool, Python layers on)
# on Debian 12, cached outside the clone, and wire it into a virtualenv.
#
# Usage: tools/install_caffe.sh [--cuda] [--venv DIR] [--jobs N] [--no-apt] [--deps-only]
#
#   --cuda     build the CUDA flavour (CUDA 13 toolkit from PyPI wheels)
#   --venv     create/refresh DIR as a virtualenv that imports `caffe`, and
#              write DIR/bin/caffe, a wrapper around the `caffe` tool
#   --jobs N   parallel compile jobs (default: number of cores)
#   --no-apt   never call apt-get (fail if a system package is missing)
#   --deps-only  install the system packages (and the venv with pycaffe's
#              Python requirements), build nothing: the Dockerfile's shared
#              layer under the cpu and cuda builds
#
# Source: Debian's source package `caffe` 1.0.0+git20180821.99bd997-8
# (BVLC master of 2018-08-21) from the bullseye suite of the Debian archive
# this system already uses, fetched through a private apt configuration, so
# the system's own apt sources are never touched.  Both tarballs are checked
# against pinned sha256 sums, Debian's patch series is applied, plus the
# protobuf 3.21 fix (and, for CUDA 13, the DeviceQuery fix).
#
# Cache: ${CAFFE_LOSSES_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/caffe-losses},
# one folder per (source version, flavour, python version).  A finished build
# leaves a stamp; a second run with the same key does no compiling and takes
# seconds.
set -Eeuo pipefail

CAFFE_VERSION="1.0.0+git20180821.99bd997-8"
ORIG_TGZ="caffe_1.0.0+git20180821.99bd997.orig.tar.gz"
ORIG_SHA256="e0eb3f06794f7402c77b7dec8e8480273ee1a1bb192e9122b621a69d4147ad0c"
DEB_TXZ="caffe_1.0.0+git20180821.99bd997-8.debian.tar.xz"
DEB_SHA256="07cf073227494a6b07234e40cb5df91db566616593eef9baafdc4d06ad159f21"
# CUDA 13 toolkit wheels (cuRAND has its own version line: 10.4 ships with CUDA 13).
CUDA_WHEELS="nvidia-cuda-nvcc>=13,<14 nvidia-cuda-runtime>=13,<14 nvidia-cublas>=13,<14 nvidia-curand>=10.4,<11
nvidia-cuda-crt>=13,<14 nvidia-nvvm>=13,<14 nvidia-cuda-cccl>=13,<14"
# Compute capabilities compiled to SASS (Turing .. Hopper), plus PTX of the
# newest for JIT on later GPUs.  CAFFE_CUDA_ARCH_BIN / CAFFE_CUDA_ARCH_PTX
# override them (make check-cuda-build compiles "75 90" only, both ends of
# the range, to keep a CPU-only compile-and-link check short).
CUDA_ARCH_BIN="${CAFFE_CUDA_ARCH_BIN:-75 80 86 89 90}"
CUDA_ARCH_PTX="${CAFFE_CUDA_ARCH_PTX-90}"

die() { echo "install_caffe.sh: ERROR: $*" >&2; exit 1; }
log() { echo "install_caffe.sh: $*" >&2; }
trap 'die "step failed at line $LINENO: $BASH_COMMAND"' ERR

FLAVOUR=cpu
VENV=""
JOBS="$(nproc 2>/dev/null || echo 2)"
USE_APT=1
DEPS_ONLY=0
while [ $# -gt 0 ]; do
  case "$1" in
    --cuda) FLAVOUR=cuda ;;
    --venv) VENV="${2:?--venv needs a directory}"; shift ;;
    --jobs) JOBS="${2:?--jobs needs a number}"; shift ;;
    --no-apt) USE_APT=0 ;;
    --deps-only) DEPS_ONLY=1 ;;
    -h|--help) sed -n '2,26p' "$0"; exit 0 ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
  shift
done

CACHE="${CAFFE_LOSSES_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/caffe-losses}"
mkdir -p "$CACHE/downloads"

# --------------------------------------------------------------------------
# 1. System packages (build and run time), installed only when missing.
# --------------------------------------------------------------------------
PKGS="cmake ninja-build g++ make patch xz-utils ca-certificates python3 python3-venv python3-dev
libboost-system-dev libboost-thread-dev libboost-filesystem-dev libboost-python-dev
libprotobuf-dev protobuf-compiler libgoogle-glog-dev libgflags-dev libhdf5-dev
liblmdb-dev libleveldb-dev libsnappy-dev libopenblas-dev libopencv-dev"
missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  [ "$USE_APT" = 1 ] || die "missing system packages:$missing (run without --no-apt as root)"
  SUDO=""
  if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null || die "missing system packages:$missing; run as root or install them"
    SUDO="sudo"
  fi
  log "installing system packages:$missing"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq || die "apt-get update failed"
  # shellcheck disable=SC2086
  $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null \
    || die "apt-get install failed for:$missing"
fi

# --------------------------------------------------------------------------
# 2. The Python that pycaffe is built for: the venv's when --venv is given.
# --------------------------------------------------------------------------
PY_REQS="numpy>=1.23 protobuf>=3.20 pyyaml>=5.1 six scikit-image scipy"
if [ -n "$VENV" ]; then
  if [ ! -x "$VENV/bin/python" ]; then
    log "creating virtualenv $VENV"
    python3 -m venv "$VENV" || die "python3 -m venv $VENV failed (is python3-venv installed?)"
  fi
  PY="$(cd "$VENV" && pwd)/bin/python"
  "$PY" - <<'EOF' 2>/dev/null || NEED_PIP=1
import numpy, google.protobuf, yaml, six, skimage, scipy
EOF
  if [ "${NEED_PIP:-0}" = 1 ]; then
    log "installing pycaffe's Python requirements into $VENV"
    # shellcheck disable=SC2086
    "$PY" -m pip install -q --upgrade pip >/dev/null
    # shellcheck disable=SC2086
    "$PY" -m pip install -q $PY_REQS || die "pip install of pycaffe requirements failed"
  fi
else
  PY="$(command -v python3)"
  "$PY" -c "import numpy" 2>/dev/null || die "$PY cannot import numpy; pass --venv DIR or install numpy"
fi
PYVER="$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
if [ "$DEPS_ONLY" = 1 ]; then log "dependencies installed (--deps-only: nothing built)"; exit 0; fi

# BUILD_REV: bump when a change to this script changes what gets built.
BUILD_REV=5
FLAVOUR_KEY="$FLAVOUR"
[ "$FLAVOUR" = cuda ] && FLAVOUR_KEY="cuda-sm$(echo "$CUDA_ARCH_BIN" | tr -s ' ' '_')-ptx${CUDA_ARCH_PTX:-none}"
KEY="caffe-${CAFFE_VERSION}-r${BUILD_REV}-${FLAVOUR_KEY}-py${PYVER}"
ROOT="$CACHE/$KEY"
SRC="$ROOT/src"
BUILD="$SRC/build"
STAMP="$ROOT/.complete"

# --------------------------------------------------------------------------
# 3. Official source from Debian bullseye, checked and patched.
# --------------------------------------------------------------------------
debian_uri() {
  # The URI of the system's own Debian archive entry (deb822 or one-line).
  local codename f
  codename="$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")"
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    awk -v cn="$codename" '
      function flush() { if (types ~ /(^| )deb( |$)/ && (" " suites " ") ~ (" " cn " ") && enabled !~ /^[Nn]o/ && uris != "") { split(uris, u, " "); print u[1]; found=1; exit } types=""; suites=""; uris=""; enabled="" }
      /^[ \t]*$/ { flush(); next }
      /^[Tt]ypes:/ { sub(/^[^:]*:[ \t]*/, ""); types=$0 }
      /^URIs:/ { sub(/^[^:]*:[ \t]*/, ""); uris=$0 }
      /^[Ss]uites:/ { sub(/^[^:]*:[ \t]*/, ""); suites=$0 }
      /^[Ee]nabled:/ { sub(/^[^:]*:[ \t]*/, ""); enabled=$0 }
      END { if (!found) flush() }' "$f"
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    sed -e 's/#.*//' -e 's/\[[^]]*\]//' "$f" | awk -v cn="$codename" '$1 == "deb" && $3 == cn { print $2 }'
  done
}

fetch_source() {
  local dl="$CACHE/downloads"
  if [ -f "$dl/$ORIG_TGZ" ] && [ -f "$dl/$DEB_TXZ" ]; then return 0; fi
  local uri
  uri="$(debian_uri | grep -v -e security -e '^$' | head -n1 || true)"
  [ -n "$uri" ] || die "no Debian archive entry for this release found in /etc/apt/sources.list{,.d}; cannot locate the bullseye source package"
  log "fetching Debian source package caffe=$CAFFE_VERSION from $uri (suite bullseye)"
  local apt="$CACHE/apt"
  rm -rf "$apt"; mkdir -p "$apt/lists/partial" "$apt/sources.list.d" "$apt/archives/partial"
  local signed=""
  [ -f /usr/share/keyrings/debian-archive-keyring.gpg ] && signed="[signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] "
  echo "deb-src ${signed}${uri} bullseye main" > "$apt/sources.list"
  local opts=(-o "Dir::Etc::SourceList=$apt/sources.list" -o "Dir::Etc::SourceParts=$apt/sources.list.d"
              -o "Dir::State::Lists=$apt/lists" -o "Dir::Cache::Archives=$apt/archives" -o "APT::Sandbox::User=root")
  apt-get "${opts[@]}" update -qq || die "apt-get update of the private bullseye deb-src list failed ($uri)"
  (cd "$dl" && apt-get "${opts[@]}" source --download-only -qq "caffe=$CAFFE_VERSION") \
    || die "apt-get source caffe=$CAFFE_VERSION failed (is bullseye on $uri?)"
}

verify() {
  local file="$1" want="$2" got
  got="$(sha256sum "$file" | cut -d' ' -f1)"
  [ "$got" = "$want" ] || { rm -f "$file"; die "sha256 mismatch for $(basename "$file"): expected $want, got $got (file removed)"; }
}

prepare_source() {
  fetch_source
  verify "$CACHE/downloads/$ORIG_TGZ" "$ORIG_SHA256"
  verify "$CACHE/downloads/$DEB_TXZ" "$DEB_SHA256"
  rm -rf "$SRC"; mkdir -p "$SRC"
  tar -xzf "$CACHE/downloads/$ORIG_TGZ" -C "$SRC"
  tar -xJf "$CACHE/downloads/$DEB_TXZ" -C "$SRC"
  local p
  while read -r p; do
    case "$p" in ''|'#'*) continue ;; esac
    patch -d "$SRC" -p1 -s --forward < "$SRC/debian/patches/$p" || die "Debian patch $p did not apply"
  done < "$SRC/debian/patches/series"
  # protobuf >= 3.21 (bookworm): SetTotalBytesLimit takes one argument.
  sed -i 's/SetTotalBytesLimit(kProtoReadBytesLimit, 536870912)/SetTotalBytesLimit(kProtoReadBytesLimit)/' \
    "$SRC/src/caffe/util/io.cpp"
  grep -q 'SetTotalBytesLimit(kProtoReadBytesLimit)' "$SRC/src/caffe/util/io.cpp" \
    || die "protobuf 3.21 fix did not apply to src/caffe/util/io.cpp"
  # BVLC's CMake defines WITH_PYTHON_LAYER for libcaffe only (PRIVATE), so the
  # `caffe` tool is compiled without its `catch (bp::error_already_set)`: a
  # Python layer's exception then aborts the tool (SIGABRT, no message).
  # Make the definition, Python's headers and libpython PUBLIC.
  sed -i -e 's/list(APPEND Caffe_DEFINITIONS PRIVATE -DWITH_PYTHON_LAYER)/list(APPEND Caffe_DEFINITIONS PUBLIC -DWITH_PYTHON_LAYER)/' \
         -e 's/list(APPEND Caffe_INCLUDE_DIRS PRIVATE ${PYTHON_INCLUDE_DIRS} ${NUMPY_INCLUDE_DIR} PUBLIC/list(APPEND Caffe_INCLUDE_DIRS PUBLIC ${PYTHON_INCLUDE_DIRS} ${NUMPY_INCLUDE_DIR}/' \
         -e 's/list(APPEND Caffe_LINKER_LIBS PRIVATE ${PYTHON_LIBRARIES} PUBLIC/list(APPEND Caffe_LINKER_LIBS PUBLIC ${PYTHON_LIBRARIES}/' \
         "$SRC/cmake/Dependencies.cmake"
  grep -q 'Caffe_DEFINITIONS PUBLIC -DWITH_PYTHON_LAYER' "$SRC/cmake/Dependencies.cmake" \
    || die "WITH_PYTHON_LAYER fix did not apply to cmake/Dependencies.cmake"
  # GetPythonLayer prints a failed import (wrong module/layer name) with
  # PyErr_Print, which also clears it, then rethrows: pycaffe then raises a
  # bare "SystemError: ... returned NULL without setting an exception".
  # Rethrow with the Python error intact (the caffe tool prints it itself).
  python3 - "$SRC/src/caffe/layer_factory.cpp" <<'PYEOF' || die "layer_factory.cpp fix did not apply"
import sys
path = sys.argv[1]
text = open(path).read()
old = "  } catch (bp::error_already_set) {\n    PyErr_Print();\n    throw;\n  }"
if old not in text:
    sys.exit("pattern not found")
open(path, "w").write(text.replace(old, "  } catch (bp::error_already_set) {\n    throw;\n  }"))
PYEOF
  # A Python layer learns its param_str and phase from PythonLayer::LayerSetUp,
  # but not which layer of the prototxt it is: HED's six unnamed losses of one
  # class could not say which one saw a NaN.  Also hand it the layer's name
  # and top names (self.layer_name, self.top_names), before setup runs.
  python3 - "$SRC/include/caffe/layers/python_layer.hpp" <<'PYEOF' || die "python_layer.hpp fix did not apply"
import sys
path = sys.argv[1]
text = open(path).read()
old = '    self_.attr("phase") = static_cast<int>(this->phase_);\n'
if text.count(old) != 1:
    sys.exit("pattern not found")
new = old + (
    '    self_.attr("layer_name") = bp::str(this->layer_param_.name());\n'
    '    bp::list top_names;\n'
    '    for (int i = 0; i < this->layer_param_.top_size(); ++i) {\n'
    '      top_names.append(bp::str(this->layer_param_.top(i)));\n'
    '    }\n'
    '    self_.attr("top_names") = top_names;\n')
open(path, "w").write(text.replace(old, new))
PYEOF
  # GPU Python layers need a blob's device memory.  BVLC's pycaffe has
  # _gpu_data_ptr / _gpu_diff_ptr in CUDA builds only (an AttributeError
  # elsewhere, and Caffe's FATAL abort without a usable GPU).  Add public
  # gpu_data_ptr / gpu_diff_ptr (the mutable pointers, as integers: taking
  # one moves the blob's head to the GPU, as Caffe's own layers do),
  # gpu_device (the device id holding the blob's GPU memory, None while it
  # has none) and data_head / diff_head ('uninitialized', 'cpu', 'gpu',
  # 'synced': where the valid copy lives, so a test can prove that no host
  # copy happened).  Both flavours; the pointers raise a RuntimeError that
  # says why in a CPU_ONLY build or without a CUDA device.
  python3 - "$SRC/python/caffe/_caffe.cpp" <<'PYEOF' || die "_caffe.cpp device-memory patch did not apply"
import sys
path = sys.argv[1]
text = open(path).read()
anchor = "BOOST_PYTHON_MEMBER_FUNCTION_OVERLOADS(SolveOverloads, Solve, 0, 1);\n"
prop = '    .add_property("data",     bp::make_function(&Blob<Dtype>::mutable_cpu_data,\n'
if text.count(anchor) != 1 or text.count(prop) != 1:
    sys.exit("pattern not found")
helpers = r'''
// caffe-losses: a blob's device memory for GPU Python layers.
const char* HeadName(SyncedMemory::SyncedHead head) {
  switch (head) {
    case SyncedMemory::HEAD_AT_CPU: return "cpu";
    case SyncedMemory::HEAD_AT_GPU: return "gpu";
    case SyncedMemory::SYNCED: return "synced";
    default: return "uninitialized";
  }
}
// A blob of count 0 may have no memory at all (Blob::data() would CHECK-fail).
std::string Blob_DataHead(Blob<Dtype>* self) {
  return self->count() == 0 ? "uninitialized" : HeadName(self->data()->head());
}
std::string Blob_DiffHead(Blob<Dtype>* self) {
  return self->count() == 0 ? "uninitialized" : HeadName(self->diff()->head());
}
void RaiseRuntime(const std::string& message) {
  PyErr_SetString(PyExc_RuntimeError, message.c_str());
  bp::throw_error_already_set();
}
#ifdef CPU_ONLY
uintptr_t Blob_GpuPtr(Blob<Dtype>* self, const char* name) {
  RaiseRuntime(std::string("caffe.Blob.") + name + ": this Caffe is a CPU_ONLY "
      "build, so a blob has no GPU memory (build the CUDA flavour: "
      "tools/install_caffe.sh --cuda)");
  return 0;
}
bp::object Blob_GpuDevice(Blob<Dtype>* self) { return bp::object(); }
#else
uintptr_t Blob_GpuPtr(Blob<Dtype>* self, const char* name) {
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    cudaGetLastError();
    RaiseRuntime(std::string("caffe.Blob.") + name + ": no CUDA device is "
        "usable here (cudaGetDeviceCount found none)");
  }
  if (self->count() == 0) {
    RaiseRuntime(std::string("caffe.Blob.") + name + ": the blob is empty "
        "(count 0), so it has no memory");
  }
  return std::string(name) == "gpu_data_ptr"
      ? reinterpret_cast<uintptr_t>(self->mutable_gpu_data())
      : reinterpret_cast<uintptr_t>(self->mutable_gpu_diff());
}
bp::object Blob_GpuDevice(Blob<Dtype>* self) {
  if (self->count() == 0) return bp::object();
  SyncedMemory::SyncedHead head = self->data()->head();
  if (head != SyncedMemory::HEAD_AT_GPU && head != SyncedMemory::SYNCED) {
    return bp::object();
  }
  cudaPointerAttributes attributes;
  if (cudaPointerGetAttributes(&attributes, self->gpu_data()) != cudaSuccess) {
    cudaGetLastError();
    return bp::object();
  }
  return bp::object(attributes.device);
}
#endif
uintptr_t Blob_GpuDataPtr(Blob<Dtype>* self) {
  return Blob_GpuPtr(self, "gpu_data_ptr");
}
uintptr_t Blob_GpuDiffPtr(Blob<Dtype>* self) {
  return Blob_GpuPtr(self, "gpu_diff_ptr");
}

'''
props = (
    '    .add_property("gpu_data_ptr", &Blob_GpuDataPtr)\n'
    '    .add_property("gpu_diff_ptr", &Blob_GpuDiffPtr)\n'
    '    .add_property("gpu_device", &Blob_GpuDevice)\n'
    '    .add_property("data_head", &Blob_DataHead)\n'
    '    .add_property("diff_head", &Blob_DiffHead)\n')
text = text.replace(anchor, helpers + anchor).replace(prop, props + prop)
open(path, "w").write(text)
PYEOF
  if [ "$FLAVOUR" = cuda ]; then
    # CUDA 13 removed three cudaDeviceProp fields; DeviceQuery only logs them.
    # Drop each whole LOG statement (some span two lines).
    python3 - "$SRC/src/caffe/common.cpp" <<'PYEOF' || die "CUDA 13 DeviceQuery fix did not apply"
import re
import sys
path = sys.argv[1]
text = open(path).read()
pattern = re.compile(r"[ \t]*LOG\(INFO\)[^;]*?prop\.(clockRate|deviceOverlap|kernelExecTimeoutEnabled)[^;]*;\n")
text, n = pattern.subn("", text)
if n != 3 or re.search(r"prop\.(clockRate|deviceOverlap|kernelExecTimeoutEnabled)", text):
    sys.exit(f"expected 3 statements to drop, found {n}")
open(path, "w").write(text)
PYEOF
  fi
}

cuda_toolkit() {
  # CUDA 13 toolkit from PyPI wheels, in a venv of its own inside the cache.
  local tv="$CACHE/cuda13-toolkit"
  if [ ! -x "$tv/bin/python" ]; then python3 -m venv "$tv" || die "cannot create $tv"; fi
  local site
  site="$("$tv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
  TK="$site/nvidia/cu13"
  if [ ! -x "$TK/bin/nvcc" ]; then
    log "installing the CUDA 13 toolkit wheels (about 1.4 GB)"
    # shellcheck disable=SC2086
    "$tv/bin/python" -m pip install -q $CUDA_WHEELS || die "pip install of CUDA wheels failed"
  fi
  [ -x "$TK/bin/nvcc" ] || die "nvcc not found under $TK after installing the CUDA wheels"
  local lib target
  for lib in cudart cublas cublasLt curand; do
    if [ ! -e "$TK/lib/lib$lib.so" ]; then
      target="$(cd "$TK/lib" && ls "lib$lib.so."* 2>/dev/null | sort -V | tail -n1)"
      [ -n "$target" ] || die "lib$lib.so.* missing in $TK/lib"
      ln -sf "$target" "$TK/lib/lib$lib.so"
    fi
  done
}

build() {
  local flags=(-G Ninja -DBLAS=Open -DBUILD_python=ON -DBUILD_python_layer=ON -Dpython_version=3
               -DBUILD_docs=OFF -DBUILD_matlab=OFF -DUSE_OPENCV=ON -DUSE_LMDB=ON -DUSE_LEVELDB=ON
               -DCMAKE_BUILD_TYPE=Release "-DPYTHON_EXECUTABLE=$PY")
  if [ "$FLAVOUR" = cuda ]; then
    cuda_toolkit
    flags+=(-DCPU_ONLY=OFF -DUSE_CUDNN=OFF "-DCUDA_TOOLKIT_ROOT_DIR=$TK" -DCUDA_ARCH_NAME=Manual
            "-DCUDA_ARCH_BIN=$CUDA_ARCH_BIN" "-DCUDA_ARCH_PTX=$CUDA_ARCH_PTX" "-DCMAKE_LIBRARY_PATH=$TK/lib")
  else
    flags+=(-DCPU_ONLY=ON)
  fi
  mkdir -p "$BUILD"
  log "configuring Caffe ($FLAVOUR, python $PYVER) in $BUILD"
  (cd "$BUILD" && cmake "${flags[@]}" .. > "$ROOT/cmake.log" 2>&1) \
    || { tail -n 40 "$ROOT/cmake.log" >&2; die "cmake configure failed (full log: $ROOT/cmake.log)"; }
  log "compiling Caffe with $JOBS jobs (about 2 min on 2 cores for CPU; log: $ROOT/build.log)"
  (cd "$BUILD" && ninja -j "$JOBS" pycaffe caffe.bin > "$ROOT/build.log" 2>&1) \
    || { grep -n -m 20 -E 'error|FAILED' "$ROOT/build.log" >&2 || true; tail -n 20 "$ROOT/build.log" >&2
         die "compiling Caffe failed (full log: $ROOT/build.log)"; }
  [ -f "$SRC/python/caffe/_caffe.so" ] || die "build finished but python/caffe/_caffe.so is missing"
  [ -x "$BUILD/tools/caffe" ] || die "build finished but build/tools/caffe is missing"
}

if [ -f "$STAMP" ]; then
  log "cached build found: $ROOT"
else
  start=$(date +%s)
  rm -rf "$ROOT"; mkdir -p "$ROOT"
  prepare_source
  build
  echo "$KEY built $(date -u +%Y-%m-%dT%H:%M:%SZ) in $(( $(date +%s) - start )) s" > "$STAMP"
  log "built $KEY in $(( $(date +%s) - start )) s"
fi

LIBDIRS="$BUILD/lib"
[ -f "$ROOT/cuda_libdir" ] && LIBDIRS="$LIBDIRS:$(cat "$ROOT/cuda_libdir")"
if [ "$FLAVOUR" = cuda ]; then
  [ -n "${TK:-}" ] || cuda_toolkit
  echo "$TK/lib" > "$ROOT/cuda_libdir"; LIBDIRS="$BUILD/lib:$TK/lib"
fi

# --------------------------------------------------------------------------
# 4. Wire the build into the venv: a .pth for pycaffe and a `caffe` wrapper.
# --------------------------------------------------------------------------
if [ -n "$VENV" ]; then
  VENV_ABS="$(cd "$VENV" && pwd)"
  SITE="$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
  echo "$SRC/python" > "$SITE/pycaffe.pth"
  # The tool embeds the system's libpython, which knows nothing of this venv;
  # a sitecustomize.py on its PYTHONPATH adds the venv's site-packages with
  # site.addsitedir, so its .pth files run too (pycaffe.pth and the editable
  # install's import hook: a plain PYTHONPATH entry would skip them).
  mkdir -p "$VENV_ABS/lib/caffe-tool-site"
  cat > "$VENV_ABS/lib/caffe-tool-site/sitecustomize.py" <<EOF
# Written by tools/install_caffe.sh for the caffe tool's embedded Python:
# make this virtualenv's packages (and their .pth files) importable, ahead of
# the system's; the current folder (your own layer modules) comes last, so a
# ./numpy.py or ./json.py there never shadows an installed module.
import os
import site
import sys

_before = list(sys.path)
site.addsitedir("$SITE")
sys.path[:] = [p for p in sys.path if p not in _before] + _before
sys.path.append(os.getcwd())
EOF
  cat > "$VENV_ABS/bin/caffe" <<EOF
#!/usr/bin/env bash
# Caffe's command-line tool ($KEY), wired to this virtualenv: the tool embeds
# Python for Python layers; lib/caffe-tool-site/sitecustomize.py adds the
# venv (pycaffe, caffe_losses, numpy ...) and, last, the current folder for
# your own layers.  Written by tools/install_caffe.sh.
export PYTHONPATH="$VENV_ABS/lib/caffe-tool-site\${PYTHONPATH:+:\$PYTHONPATH}"
export LD_LIBRARY_PATH="$LIBDIRS\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
exec "$BUILD/tools/caffe" "\$@"
EOF
  chmod +x "$VENV_ABS/bin/caffe"
  cat > "$VENV_ABS/caffe-build.env" <<EOF
CAFFE_ROOT=$SRC
CAFFE_BUILD=$BUILD
CAFFE_FLAVOUR=$FLAVOUR
CAFFE_LIBDIRS=$LIBDIRS
EOF
  GLOG_minloglevel=2 LD_LIBRARY_PATH="$LIBDIRS${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
    "$PY" -c "import caffe; caffe.set_mode_cpu()" \
    || die "the venv's python cannot import caffe from $SRC/python"
  log "ready: $VENV_ABS/bin/python imports caffe; $VENV_ABS/bin/caffe runs the tool"
else
  log "ready: pycaffe in $SRC/python, libraries in $LIBDIRS, tool $BUILD/tools/caffe"
fi
