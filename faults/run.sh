#!/usr/bin/env bash
# The fault-injection suite: builds the sidecar, the platform, the operator and the suite (debug,
# as the tests do), then runs every scenario (or those named: faults/run.sh --only half_open).
# Needs root for network namespaces, iptables and a tmpfs, `ip`/`iptables` (iproute2, iptables)
# and, for the operator's faults, the Kubernetes 1.20 control plane: all installed by
# e2e/cluster/build.sh. Configs and logs go to target/faults; the figures table is printed last
# (docs/reliability.md holds the runs').
# shellcheck source=hack/lib/strict.sh
source "$(dirname "${BASH_SOURCE[0]}")/../hack/lib/strict.sh"
cd "$(dirname "$0")/.."
if ((EUID != 0)); then
  echo "faults/run.sh: needs root (network namespaces, iptables, tmpfs)" >&2
  exit 1
fi
for tool in ip iptables mount; do
  command -v "$tool" >/dev/null || { echo "faults/run.sh: $tool not found (apt-get install iproute2 iptables)" >&2; exit 1; }
done
cargo build --locked -p edgeway-sidecar -p edgeway-platform -p edgeway-operator -p edgeway-faults --bins
exec target/debug/edgeway-faults "$@"
