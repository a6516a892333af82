# caffe-losses in a container: BVLC Caffe built from Debian's official source
# package by the same script that `make test` and CI run, plus this package.
#
#   docker build --target cpu  -t caffe-losses:cpu  .
#   docker build --target cuda -t caffe-losses:cuda .
#   docker run --rm caffe-losses:cpu caffe-losses demo
#   docker run --rm --gpus all caffe-losses:cuda caffe-losses train solver.prototxt --gpu 0
#
# Train your own net: mount its folder at /work (the working directory) and
# run as yourself so snapshots are yours:
#   docker run --rm -v "$PWD":/work --user "$(id -u):$(id -g)" caffe-losses:cpu \
#       caffe-losses train solver.prototxt        # or: caffe train -solver solver.prototxt
#
# The cuda target needs an NVIDIA driver that supports CUDA 13 (>= 580) and
# the NVIDIA Container Toolkit on the host (`docker run --gpus all`).

FROM debian:12-slim AS base
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV DEBIAN_FRONTEND=noninteractive \
    CAFFE_LOSSES_CACHE=/opt/caffe-cache \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MPLCONFIGDIR=/tmp/matplotlib \
    GLOG_minloglevel=1
# install_caffe.sh installs the build dependencies itself; these are what it
# needs to start (and make, for the Makefile targets).  Versions are not
# pinned: Debian 12 point releases replace them, and the Caffe source itself
# is pinned and checksummed by install_caffe.sh.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates make python3 python3-venv \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/caffe-losses
COPY setup.py README.md Makefile ./
COPY tools/ tools/
COPY caffe_losses/ caffe_losses/
COPY prototxt_templates/ prototxt_templates/

FROM base AS cpu
RUN bash tools/install_caffe.sh --venv /opt/venv \
 && /opt/venv/bin/pip install -e '.[demo]' \
 && rm -rf /var/lib/apt/lists/* "$CAFFE_LOSSES_CACHE"/downloads \
 && useradd --create-home --uid 1000 caffe \
 && mkdir -p /work && chown caffe:caffe /work \
 && /opt/venv/bin/python -c "import caffe, caffe_losses"
ENV PATH=/opt/venv/bin:$PATH
USER 1000:1000
WORKDIR /work
CMD ["caffe-losses", "--help"]

FROM base AS cuda
# CUDA 13 toolkit from PyPI wheels (no NVIDIA apt repository needed); Caffe
# is compiled for compute capabilities 7.5 to 9.0 (Turing to Hopper) plus
# PTX for newer GPUs.
RUN bash tools/install_caffe.sh --cuda --venv /opt/venv \
 && /opt/venv/bin/pip install -e '.[demo]' \
 && rm -rf /var/lib/apt/lists/* "$CAFFE_LOSSES_CACHE"/downloads \
 && useradd --create-home --uid 1000 caffe \
 && mkdir -p /work && chown caffe:caffe /work \
 && /opt/venv/bin/python -c "import caffe, caffe_losses"
ENV PATH=/opt/venv/bin:$PATH \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility
USER 1000:1000
WORKDIR /work
CMD ["caffe-losses", "--help"]
