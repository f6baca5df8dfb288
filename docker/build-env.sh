# Sourced (`. /tmp/build/build-env.sh`) by the Dockerfiles' install steps: turns the build args
# into pip's environment. Both are off by default.
#
#   WHEELHOUSE=off    pip uses its indexes only (default)
#   WHEELHOUSE=on     pip also looks in docker/wheelhouse/ (--find-links)
#   WHEELHOUSE=only   pip looks in docker/wheelhouse/ only (--no-index: air-gapped builds)
#   EXTRA_CA_BUNDLE=FILE   a PEM file in docker/certs/ that TLS also trusts during the build
#                          (TLS-intercepting proxies); it is not kept in the image.
# BUILD_DIR is where the Dockerfile put docker/wheelhouse and docker/certs.
BUILD_DIR="${BUILD_DIR:-/tmp/build}"
case "${WHEELHOUSE:-off}" in
    off | "") ;;
    on) export PIP_FIND_LINKS="$BUILD_DIR/wheelhouse" ;;
    only) export PIP_FIND_LINKS="$BUILD_DIR/wheelhouse" PIP_NO_INDEX=1 ;;
    *)
        echo "build-env: WHEELHOUSE must be off, on or only, not '$WHEELHOUSE'" >&2
        exit 2
        ;;
esac
if [ -n "${EXTRA_CA_BUNDLE:-}" ]; then
    extra="$BUILD_DIR/certs/$EXTRA_CA_BUNDLE"
    if [ ! -s "$extra" ]; then
        echo "build-env: EXTRA_CA_BUNDLE: docker/certs/$EXTRA_CA_BUNDLE is missing or empty" >&2
        exit 2
    fi
    bundle=/tmp/ca-bundle.pem
    cat /etc/ssl/certs/ca-certificates.crt "$extra" > "$bundle" 2> /dev/null || cat "$extra" > "$bundle"
    export PIP_CERT="$bundle" SSL_CERT_FILE="$bundle" REQUESTS_CA_BUNDLE="$bundle"
fi
