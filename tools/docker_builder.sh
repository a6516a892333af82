#!/usr/bin/env bash
# The last step of the Dockerfile's builder stages, after
# tools/install_caffe.sh has built Caffe and wired it into the venv:
#   1. install this package as a user would (`pip install .`, not editable);
#   2. keep only what runs: pycaffe, libcaffe and the `caffe` tool of the
#      build the venv uses (no sources, objects, downloads), and of the CUDA
#      toolkit only the runtime libraries Caffe links (cudart, cuBLAS(Lt),
#      cuRAND; no nvcc);
#   3. write CACHE/runtime-packages.txt: the Debian packages whose libraries
#      what is left loads (found with ldd), which the runtime stage checks
#      it has installed.
# The runtime stage copies CACHE and VENV to the same paths, so the venv's
# pycaffe.pth and its `caffe` wrapper keep working.
#
# Usage: tools/docker_builder.sh SRC VENV    (CAFFE_LOSSES_CACHE: the Caffe cache)
set -Eeuo pipefail

SRC="${1:?source tree}"
VENV="${2:?virtualenv}"
CACHE="${CAFFE_LOSSES_CACHE:?CAFFE_LOSSES_CACHE must name the Caffe cache}"
die() { echo "docker_builder.sh: ERROR: $*" >&2; exit 1; }
log() { echo "docker_builder.sh: $*" >&2; }
trap 'die "step failed at line $LINENO: $BASH_COMMAND"' ERR

# caffe-build.env (written by install_caffe.sh): CAFFE_ROOT, CAFFE_FLAVOUR, CAFFE_LIBDIRS
# shellcheck disable=SC1091
. "$VENV/caffe-build.env"

# 1. The package, non-editable, with the extras the demo and templates use.
log "pip install $SRC[demo]"
"$VENV/bin/python" -m pip install -q "$SRC[demo]"
# the wheel carries the templates
"$VENV/bin/caffe-losses" template --list >/dev/null || die "caffe-losses template --list failed in the built venv"

# 2. Only what runs.
build_root="$(dirname "$CAFFE_ROOT")"
keep="$build_root/src.keep"
mkdir -p "$keep"
(cd "$CAFFE_ROOT" && tar -cf - python/caffe build/lib/libcaffe.so* build/lib/_caffe.so build/tools/caffe) | tar -xf - -C "$keep"
rm -rf "$CAFFE_ROOT" "$build_root"/*.log
mv "$keep" "$CAFFE_ROOT"
if [ "$CAFFE_FLAVOUR" = cuda ]; then
  cuda_lib="${CAFFE_LIBDIRS#*:}"          # "$BUILD/lib:$TK/lib"
  keep="$CACHE/cuda-runtime.keep"
  mkdir -p "$keep"
  (cd "$cuda_lib" && tar -cf - libcudart.so* libcublas.so* libcublasLt.so* libcurand.so*) | tar -xf - -C "$keep"
  rm -rf "$CACHE/cuda13-toolkit"
  mkdir -p "$(dirname "$cuda_lib")"
  mv "$keep" "$cuda_lib"
fi
for entry in "$CACHE"/* "$CACHE"/.[!.]*; do
  case "$entry" in "$build_root"|"$CACHE/cuda13-toolkit") ;; *) rm -rf "$entry" ;; esac
done

# 3. The Debian packages behind every shared library that is left.
libs="$(mktemp)"
ours="$(mktemp)"      # libraries shipped inside CACHE and VENV (wheels' *.libs folders)
find "$CACHE" "$VENV" -name '*.so*' -printf '%f\n' | sort -u > "$ours"
while IFS= read -r -d '' f; do
  out="$(ldd "$f" 2>/dev/null)" || continue          # not a dynamic ELF file
  # unresolved here: a sibling in the same wheel (found through the
  # extension's RPATH at run time), or the driver's libcuda
  missing="$(awk '/not found/ { print $1 }' <<<"$out" | grep -v -x -F -f "$ours" | grep -v '^libcuda\.so' || true)"
  [ -z "$missing" ] || die "$f: unresolved libraries: $missing"
  awk '$2 == "=>" && $3 ~ /^\// { print $3 }' <<<"$out" >> "$libs"
done < <(find "$CACHE" "$VENV" -type f \( -name '*.so' -o -name '*.so.*' -o -perm -u+x \) -print0)
owner() {
  local p="$1" q
  for q in "$p" "$(readlink -f "$p")" "${p#/usr}" "/usr$p"; do
    dpkg -S "$q" 2>/dev/null | head -n1 | cut -d: -f1 && return 0
  done
  return 1
}
sort -u "$libs" | grep -v -e "^$CACHE/" -e "^$VENV/" | while read -r lib; do
  owner "$lib" || die "no Debian package owns $lib"
done | sort -u > "$CACHE/runtime-packages.txt"
rm -f "$libs" "$ours"
log "runtime packages: $(tr '\n' ' ' < "$CACHE/runtime-packages.txt")"
