#!/usr/bin/env bash
# Make the Debian 12 base image locally, for engines that cannot pull
# debian:12-slim (no registry reachable): a minimal Debian 12 root from
# Debian's own packages (debootstrap --variant=minbase bookworm), trimmed as
# the official slim image is, then `docker import`ed.
#
# Usage: tools/docker_base.sh [TAG]        (default: caffe-losses/debian:12-minbase)
#        docker build --build-arg BASE_IMAGE=caffe-losses/debian:12-minbase ...
#
# Needs root (debootstrap), a Debian/Ubuntu host with apt, and its Debian
# archive: the mirror is read from this system's apt sources (bookworm,
# bookworm-updates, bookworm-security), never hard-coded.  Cached: an image
# with TAG is kept; the root's tarball stays in
# ${CAFFE_LOSSES_CACHE:-~/.cache/caffe-losses}/docker/ and is re-imported
# into an empty engine without running debootstrap again.
set -Eeuo pipefail

die() { echo "docker_base.sh: ERROR: $*" >&2; exit 1; }
log() { echo "docker_base.sh: $*" >&2; }

TAG="${1:-caffe-losses/debian:12-minbase}"
DOCKER="${DOCKER:-docker}"
TARBALL="${CAFFE_LOSSES_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/caffe-losses}/docker/debian-bookworm-minbase.tar"

if $DOCKER image inspect "$TAG" >/dev/null 2>&1; then
  log "$TAG exists"
  exit 0
fi

archive() {   # URI of this system's deb entry for suite $1
  apt-get indextargets --no-release-info --format '$(RELEASE) $(REPO_URI)' 'Created-By: Packages' \
    | awk -v s="$1" '$1 == s { print $2; exit }'
}

if [ ! -s "$TARBALL" ]; then
  [ "$(id -u)" = 0 ] || die "debootstrap needs root"
  if ! command -v debootstrap >/dev/null; then
    log "installing debootstrap"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null \
      || die "apt-get install debootstrap failed"
  fi
  mirror="$(archive bookworm)"
  [ -n "$mirror" ] || mirror="$(archive "$(. /etc/os-release && echo "${VERSION_CODENAME:-}")")"
  [ -n "$mirror" ] || die "no Debian archive entry in this system's apt sources"
  security="$(archive bookworm-security)"
  root="$(mktemp -d "${TMPDIR:-/tmp}/debian-minbase.XXXXXX")"
  trap 'rm -rf "$root"' EXIT
  log "debootstrap --variant=minbase bookworm from $mirror (about 30 s)"
  debootstrap --variant=minbase bookworm "$root" "$mirror" > "$root.log" 2>&1 \
    || { tail -n 20 "$root.log" >&2; die "debootstrap failed (log: $root.log)"; }
  rm -f "$root.log"
  {
    echo "deb $mirror bookworm main"
    echo "deb $mirror bookworm-updates main"
    [ -z "$security" ] || echo "deb $security bookworm-security main"
  } > "$root/etc/apt/sources.list"
  # As the official slim image: no documentation, manuals or translations in
  # later layers either, no .deb files or package lists kept.
  cat > "$root/etc/dpkg/dpkg.cfg.d/docker-slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
EOF
  cat > "$root/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
Acquire::Languages "none";
EOF
  find "$root/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
  rm -rf "$root"/usr/share/{man,info,locale,lintian}/* "$root"/var/cache/apt/* "$root"/var/lib/apt/lists/* \
         "$root"/var/log/*.log "$root"/tmp/* "$root/debootstrap"
  mkdir -p "$(dirname "$TARBALL")"
  tar --numeric-owner -C "$root" -cf "$TARBALL.part" . && mv "$TARBALL.part" "$TARBALL"
fi
log "importing $TARBALL as $TAG"
$DOCKER import --change 'CMD ["bash"]' \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' "$TARBALL" "$TAG" >/dev/null
log "$TAG: $($DOCKER image inspect -f '{{.Size}}' "$TAG" | awk '{ printf "%.0f MB", $1 / 1e6 }')"
