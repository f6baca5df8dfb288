#!/usr/bin/env bash
# Make the base image that docker/Dockerfile.cpu names, without any Docker registry:
# debootstrap Debian bookworm (minbase + python3, python3-venv, python3-pip, ca-certificates)
# from the Debian archive and `docker import` it. Idempotent: skips when the tag exists, and
# reuses a cached root-filesystem tarball when one is there.
#
#   docker/make-base-image.sh [TAG]           (default boxguard/python-base:bookworm)
#
# Env: BOXGUARD_DOCKER_CACHE (tarball cache, default ~/.cache/boxguard-docker),
#      DEBIAN_MIRROR (default http://deb.debian.org/debian), FORCE=1 (rebuild the tarball).
# Needs root (debootstrap), debootstrap and a running Docker engine.
set -euo pipefail

TAG="${1:-boxguard/python-base:bookworm}"
SUITE=bookworm
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
CACHE="${BOXGUARD_DOCKER_CACHE:-${HOME}/.cache/boxguard-docker}"
TARBALL="${CACHE}/python-base-${SUITE}.tar.gz"
PACKAGES=python3,python3-venv,python3-pip,ca-certificates

if [[ "${FORCE:-0}" != 1 ]] && docker image inspect "$TAG" > /dev/null 2>&1; then
    echo "make-base-image: $TAG exists, nothing to do"
    exit 0
fi

mkdir -p "$CACHE"
if [[ "${FORCE:-0}" == 1 || ! -s "$TARBALL" ]]; then
    command -v debootstrap > /dev/null || {
        echo "make-base-image: debootstrap missing (apt-get install -y debootstrap)" >&2
        exit 1
    }
    root="$(mktemp -d "${CACHE}/rootfs.XXXXXX")"
    trap 'rm -rf "$root"' EXIT
    echo "make-base-image: debootstrap $SUITE from $MIRROR into $root"
    debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$root" "$MIRROR"
    cat > "$root/etc/apt/sources.list" <<SOURCES
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
deb http://deb.debian.org/debian-security $SUITE-security main
SOURCES
    # Slim it like the official images: no apt lists, caches, docs or man pages.
    rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb \
        "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* \
        "$root"/var/log/*.log "$root"/tmp/* "$root"/root/.cache
    tar --numeric-owner -C "$root" -czf "${TARBALL}.tmp" .
    mv "${TARBALL}.tmp" "$TARBALL"
fi

echo "make-base-image: docker import $TARBALL as $TAG"
docker import \
    --change 'ENV LANG=C.UTF-8' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["/bin/bash"]' \
    "$TARBALL" "$TAG"
docker image inspect --format '{{.Id}} {{.Size}}' "$TAG"
