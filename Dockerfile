# caffe-losses in a container: BVLC Caffe built from Debian's official source
# package by the same tools/install_caffe.sh that `make test` and CI run,
# plus this package (pip install ., as a user installs it).  Needs BuildKit
# (Docker 23+ uses it by default; Debian 12's docker.io: DOCKER_BUILDKIT=1).
#
#   docker build --target cpu  -t caffe-losses:cpu  .
#   docker build --target cuda -t caffe-losses:cuda .
#   docker run --rm -v "$PWD":/work --user "$(id -u):$(id -g)" caffe-losses:cpu \
#       caffe-losses train solver.prototxt      # or: caffe train -solver solver.prototxt
#   docker run --rm --gpus all -v "$PWD":/work --user "$(id -u):$(id -g)" caffe-losses:cuda \
#       caffe-losses train solver.prototxt --gpu 0
#
# Build arguments and secrets (README, "Docker"):
#   BASE_IMAGE     Debian 12; tools/docker_base.sh makes one where debian:12-slim
#                  cannot be pulled (--build-arg BASE_IMAGE=caffe-losses/debian:12-minbase)
#   CUDA_ARCH_BIN  compute capabilities compiled for (cuda), default Turing..Hopper
#   CUDA_ARCH_PTX  PTX for newer GPUs (cuda), default 90; "" for none
#   secret ca_bundle  a CA bundle for pip/apt behind a TLS-intercepting proxy:
#                  --secret id=ca_bundle,src=/etc/ssl/certs/ca-certificates.crt
#                  (mounted in the builder's RUN steps only, never in an image)
#
# The builder stages compile; the cpu and cuda images get only what runs: the
# Debian runtime libraries, the pruned Caffe build, the virtualenv.

ARG BASE_IMAGE=debian:12-slim

# ---------------------------------------------------------------- builders
FROM ${BASE_IMAGE} AS build-deps
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV DEBIAN_FRONTEND=noninteractive \
    CAFFE_LOSSES_CACHE=/opt/caffe \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt
# ca-certificates first: the ca_bundle secret is mounted over its bundle.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/caffe-losses
COPY tools/install_caffe.sh tools/
# System packages and the venv with pycaffe's requirements: shared by both builds.
RUN --mount=type=secret,id=ca_bundle,target=/etc/ssl/certs/ca-certificates.crt \
    --mount=type=cache,target=/root/.cache/pip \
    bash tools/install_caffe.sh --deps-only --venv /opt/venv

FROM build-deps AS build-cpu
RUN --mount=type=secret,id=ca_bundle,target=/etc/ssl/certs/ca-certificates.crt \
    bash tools/install_caffe.sh --venv /opt/venv
COPY . /src
RUN --mount=type=secret,id=ca_bundle,target=/etc/ssl/certs/ca-certificates.crt \
    --mount=type=cache,target=/root/.cache/pip \
    bash /src/tools/docker_builder.sh /src /opt/venv

FROM build-deps AS build-cuda
# CUDA 13 toolkit from PyPI wheels (no NVIDIA apt repository); compute
# capabilities 7.5 to 9.0 (Turing to Hopper) plus PTX for newer GPUs.
ARG CUDA_ARCH_BIN="75 80 86 89 90"
ARG CUDA_ARCH_PTX="90"
RUN --mount=type=secret,id=ca_bundle,target=/etc/ssl/certs/ca-certificates.crt \
    --mount=type=cache,target=/root/.cache/pip \
    CAFFE_CUDA_ARCH_BIN="$CUDA_ARCH_BIN" CAFFE_CUDA_ARCH_PTX="$CUDA_ARCH_PTX" \
    bash tools/install_caffe.sh --cuda --venv /opt/venv
COPY . /src
RUN --mount=type=secret,id=ca_bundle,target=/etc/ssl/certs/ca-certificates.crt \
    --mount=type=cache,target=/root/.cache/pip \
    bash /src/tools/docker_builder.sh /src /opt/venv

# ---------------------------------------------------------------- runtime
FROM ${BASE_IMAGE} AS runtime
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# The libraries libcaffe, pycaffe and the caffe tool load (no -dev packages,
# no compilers); each image checks that it has all that its build lists.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 libpython3.11 \
      libboost-filesystem1.74.0 libboost-python1.74.0 libboost-thread1.74.0 \
      libgflags2.2 libgoogle-glog0v6 libprotobuf32 libhdf5-103-1 libhdf5-hl-100 \
      liblmdb0 libleveldb1d libopenblas0-pthread \
      libopencv-core406 libopencv-imgproc406 libopencv-imgcodecs406 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --create-home --uid 1000 caffe \
 && mkdir -p /work && chown caffe:caffe /work
# Any uid may run the image (docker run --user "$(id -u):$(id -g)", often
# with no home): caches go to /tmp.
ENV PATH=/opt/venv/bin:$PATH \
    MPLCONFIGDIR=/tmp/matplotlib \
    XDG_CACHE_HOME=/tmp/.cache
USER 1000:1000
WORKDIR /work
CMD ["caffe-losses", "--help"]

# Each image checks, as its user, that it has every library its build loads.
FROM runtime AS cpu
COPY --from=build-cpu /opt/caffe /opt/caffe
COPY --from=build-cpu /opt/venv /opt/venv
RUN xargs -a /opt/caffe/runtime-packages.txt dpkg-query -W > /dev/null \
 && python -c "import caffe, caffe_losses" && caffe --version

FROM runtime AS cuda
# The host needs an NVIDIA driver for CUDA 13 (R580+) and the NVIDIA
# Container Toolkit (docker run --gpus all).
ENV NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility
COPY --from=build-cuda /opt/caffe /opt/caffe
COPY --from=build-cuda /opt/venv /opt/venv
RUN xargs -a /opt/caffe/runtime-packages.txt dpkg-query -W > /dev/null \
 && python -c "import caffe, caffe_losses" && caffe --version
