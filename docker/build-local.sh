#!/usr/bin/env bash
# The compose stack without any Docker registry, in one command: make the Debian base image with
# debootstrap (docker/make-base-image.sh), build the CPU, HAProxy and Prometheus images on it,
# then start the profile from those local images only (no pull, no build by compose).
#
#   docker/build-local.sh [scale|cpu]        (default scale: BOXGUARD_REPLICAS CPU replicas +
#                                             HAProxy + Prometheus; cpu: one server + Prometheus)
#
# Grafana is left out: its image comes from a registry only. Needs root (debootstrap), a running
# Docker engine and network access to the Debian archive and to PyPI and the PyTorch CPU index
# (or BOXGUARD_WHEELHOUSE=only with the wheels in docker/wheelhouse/, BOXGUARD_TORCH_INDEX_URL=
# empty). Other env: BOXGUARD_BASE_IMAGE (default boxguard/python-base:bookworm),
# BOXGUARD_EXTRA_CA_BUNDLE (a PEM in docker/certs/), and every BOXGUARD_* setting of compose.yaml.
# The GPU image needs a registry (its base is vllm/vllm-openai): build it elsewhere.
set -euo pipefail
cd "$(dirname "$0")/.."

profile="${1:-scale}"
case "$profile" in
    scale) services=(boxguard-replica haproxy prometheus) ;;
    cpu) services=(boxguard-cpu prometheus) ;;
    *)
        echo "build-local: profile must be scale or cpu, not '$profile'" >&2
        exit 2
        ;;
esac

base="${BOXGUARD_BASE_IMAGE:-boxguard/python-base:bookworm}"
args=(
    --build-arg "BASE_IMAGE=$base"
    --build-arg "WHEELHOUSE=${BOXGUARD_WHEELHOUSE:-off}"
    --build-arg "EXTRA_CA_BUNDLE=${BOXGUARD_EXTRA_CA_BUNDLE:-}"
)
torch_index="${BOXGUARD_TORCH_INDEX_URL-https://download.pytorch.org/whl/cpu}"

bash docker/make-base-image.sh "$base"
docker build -f docker/Dockerfile.cpu -t boxguard:cpu "${args[@]}" \
    --build-arg "TORCH_INDEX_URL=$torch_index" .
docker build -f docker/Dockerfile.prometheus -t boxguard/prometheus:bookworm "${args[@]}" .
if [[ "$profile" == scale ]]; then
    docker build -f docker/Dockerfile.haproxy -t boxguard/haproxy:bookworm "${args[@]}" .
fi

export BOXGUARD_PROMETHEUS_IMAGE=boxguard/prometheus:bookworm
# compose.yaml requires it (for Grafana, which is not started here).
export GRAFANA_ADMIN_PASSWORD="${GRAFANA_ADMIN_PASSWORD:-unused-grafana-not-started}"
docker compose -f docker/compose.yaml --profile "$profile" up -d --no-build --pull never \
    "${services[@]}"
echo "build-local: up: ${services[*]} (boxguard on ${BOXGUARD_BIND:-127.0.0.1}:${BOXGUARD_HOST_PORT:-8000})"
