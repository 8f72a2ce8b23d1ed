#!/usr/bin/env bash
# The README's test command: every test of the workspace, against real TLS, real Lua, real
# websockets and a real Kubernetes API server.
#
# The operator's cluster tests need etcd, kube-apiserver and kube-controller-manager 1.20.2.
# e2e/cluster/build.sh provides them: it installs these Debian packages when missing (it says so
# before it does): etcd-server curl openssl ca-certificates tinyproxy (the tunnel's proxy test)
# mosquitto mosquitto-clients python3-protobuf protobuf-compiler (the MQTT tests) golang-go rsync make gcc libc6-dev dpkg-dev
# golang-github-modern-go-reflect2-dev, then builds the two binaries from Debian's
# Kubernetes source once (about 8 minutes on 2 cores) into ~/.cache/edgeway. Everything started
# here is stopped by pid on exit.
# shellcheck source=hack/lib/strict.sh
source "$(dirname "${BASH_SOURCE[0]}")/../hack/lib/strict.sh"
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
t0=$(date +%s)
phase() { echo "== [test.sh $(( $(date +%s) - t0 ))s] $*"; }

phase "Kubernetes control plane for the operator tests (e2e/cluster/build.sh --control-plane-only)"
bash e2e/cluster/build.sh --control-plane-only

dir=$(mktemp -d "${TMPDIR:-/tmp}/edgeway-test-cluster.XXXXXX")
cleanup() {
  local rc=$?
  bash e2e/cluster/apiserver.sh stop "$dir" || true
  if ((rc == 0)); then rm -rf "$dir"; else echo "cluster logs kept in $dir" >&2; fi
  exit "$rc"
}
trap cleanup EXIT
phase "starting etcd + kube-apiserver + kube-controller-manager in $dir"
bash e2e/cluster/apiserver.sh start "$dir"
export EDGEWAY_TEST_KUBECONFIG=$dir/kubeconfig

phase "cargo test --workspace"
cargo test --workspace --locked "$@"
phase "done"
