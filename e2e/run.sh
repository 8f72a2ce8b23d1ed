#!/usr/bin/env bash
# Edgeway's end-to-end run: a real cluster, the real image, the Helm chart, the suite
# (e2e/src: chart install, example gateways, platform, auth, renewal, restart, MQTT, deletion,
# uninstall), and teardown. Prints the time of every phase.
#
#   e2e/run.sh [--cluster local|kind] [--keep]
#
#   local (default; these machines): e2e/cluster/build.sh (Debian packages, Kubernetes 1.20.2
#         from Debian's source, cached in ~/.cache/edgeway), hack/build-image.sh (the image as an
#         OCI tarball, no Docker), e2e/cluster/cluster.sh (containerd, kubelet, kube-proxy, DNS
#         on a bridge of this machine; root needed), `ctr images import`.
#   kind: `docker build`, `kind create cluster`, `kind load docker-image` (the image and
#         eclipse-mosquitto); Services are reached with kubectl port-forward. Needs docker, kind,
#         kubectl, helm, and Mosquitto's clients (mosquitto_sub, mosquitto_pub, mosquitto_passwd)
#         on PATH.
# --keep leaves the cluster running (its directory is printed) for a look after the run.
# helm: the real CLI when on PATH, else e2e/helm.py in a helm-python-sdk venv
# (HELM_VENV, default ~/.cache/edgeway/helmvenv).
# shellcheck source=hack/lib/strict.sh
source "$(dirname "${BASH_SOURCE[0]}")/../hack/lib/strict.sh"

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
mode=local
keep=0
while [ $# -gt 0 ]; do
  case $1 in
    --cluster) mode=$2; shift 2 ;;
    --keep) keep=1; shift ;;
    -h|--help) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done
case $mode in local|kind) ;; *) echo "--cluster must be local or kind" >&2; exit 2 ;; esac

tag=e2e
image=docker.io/edgeway/edgeway
mosquitto_image=edgeway.local/mosquitto:e2e
prometheus_args=()
work=$(mktemp -d /tmp/edgeway-e2e.XXXXXX)
chmod 0755 "$work"
declare -a timings=()
phase_name=""
phase_t0=$SECONDS
phase() {
  [ -n "$phase_name" ] && timings+=("$(printf '%-28s %5ss' "$phase_name" $((SECONDS - phase_t0)))")
  phase_name=$1
  phase_t0=$SECONDS
  printf '\n[e2e %(%H:%M:%S)T] === %s\n' -1 "$1"
}
report() {
  [ -n "$phase_name" ] && timings+=("$(printf '%-28s %5ss' "$phase_name" $((SECONDS - phase_t0)))")
  phase_name=""
  printf '\n[e2e] timings:\n'
  printf '    %s\n' "${timings[@]}"
}

cluster_up=0
cleanup() {
  rc=$?
  if [ "$cluster_up" = 1 ]; then
    if [ "$keep" = 1 ]; then
      echo "[e2e] --keep: cluster left running; KUBECONFIG=$work/cluster/kubeconfig"
      [ "$mode" = local ] && echo "[e2e] stop it with: bash e2e/cluster/cluster.sh stop $work/cluster"
    else
      phase "teardown"
      if [ "$mode" = local ]; then
        bash "$repo/e2e/cluster/cluster.sh" stop "$work/cluster" || rc=1
      else
        kind delete cluster --name edgeway-e2e || rc=1
      fi
    fi
  fi
  report
  if [ "$keep" != 1 ]; then rm -rf "$work"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- helm: the CLI or the helm-python-sdk wrapper -------------------------------------------
helm_cmd() {
  if command -v helm >/dev/null; then echo helm; return; fi
  local venv=${HELM_VENV:-${EDGEWAY_CACHE:-$HOME/.cache/edgeway}/helmvenv}
  if ! "$venv/bin/python" -c 'import helm_python, yaml' 2>/dev/null; then
    python3 -m venv "$venv" >&2
    "$venv/bin/pip" install -q --disable-pip-version-check 'helm-python-sdk==0.2.2' 'pyyaml>=6' >&2
  fi
  echo "$venv/bin/python $repo/e2e/helm.py"
}

cd "$repo"
if [ "$mode" = local ]; then
  phase "packages + Kubernetes build"
  bash e2e/cluster/build.sh
  phase "helm"
  HELM=$(helm_cmd)
  phase "image (OCI tarball)"
  bash hack/build-image.sh --ref "$image:$tag" --out "$work/edgeway.tar"
  # The MQTT scenario's broker: this machine's Debian Mosquitto and its libraries, no Docker.
  python3 hack/oci_image.py write --binary /usr/sbin/mosquitto --out "$work/mosquitto.tar" \
    --ref "$mosquitto_image"
  # The monitoring scenario's Prometheus: Debian's, unpacked into the cache, run on this machine.
  # shellcheck source=hack/lib/prometheus.sh
  source hack/lib/prometheus.sh
  prometheus_fetch
  prometheus_args=(--prometheus "$PROMETHEUS_BIN_DIR/prometheus")
  phase "suite build"
  # --workspace: features unify as in the test phase, so its build of every dependency is reused
  # (-p alone rebuilt kube, tower-http and more with other features: 49 s and a second copy).
  cargo build --locked --workspace --bin edgeway-e2e
  phase "cluster start"
  mkdir -p "$work/cluster"
  cluster_up=1
  bash e2e/cluster/cluster.sh start "$work/cluster"
  phase "image import"
  bash e2e/cluster/cluster.sh import "$work/cluster" "$work/edgeway.tar" "$work/mosquitto.tar"
  access=direct
else
  phase "helm"
  HELM=$(helm_cmd)
  phase "image (docker build)"
  docker build -t "$image:$tag" .
  phase "suite build"
  cargo build --locked -p edgeway-e2e
  phase "cluster start (kind)"
  mkdir -p "$work/cluster"
  cluster_up=1
  # KIND_NODE_IMAGE picks the Kubernetes version (kindest/node:vX.Y.Z; the CI workflow's matrix).
  kind create cluster --name edgeway-e2e --kubeconfig "$work/cluster/kubeconfig" --wait 300s \
    ${KIND_NODE_IMAGE:+--image "$KIND_NODE_IMAGE"}
  phase "image load"
  kind load docker-image --name edgeway-e2e "$image:$tag"
  mosquitto_image=docker.io/library/eclipse-mosquitto:2.0
  docker pull "$mosquitto_image"
  kind load docker-image --name edgeway-e2e "$mosquitto_image"
  access=port-forward
fi

phase "suite"
"${CARGO_TARGET_DIR:-$repo/target}/debug/edgeway-e2e" \
  --kubeconfig "$work/cluster/kubeconfig" --access "$access" --helm "$HELM" \
  --image "$image" --tag "$tag" --mosquitto-image "$mosquitto_image" ${prometheus_args[@]+"${prometheus_args[@]}"}
