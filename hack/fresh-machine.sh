#!/usr/bin/env bash
# Runs CI as a fresh machine would: `CI=true bash .ci/run` on a clean clone of HEAD, inside a
# private mount namespace where the state that earlier runs leave behind is not visible.
#
#   hack/fresh-machine.sh [--no-k8s-cache] [--keep] [-- COMMAND...]
#
# Inside the namespace (unshare -m, private propagation):
#   - /tmp, and each of /var/log/pods /var/lib/kubelet /var/lib/containerd /var/lib/cni /etc/cni
#     /opt/cni /run/containerd that exists here, are empty directories (bind mounts of fresh
#     directories under a scratch dir on disk, not tmpfs: the builds need gigabytes);
#   - HOME is a new empty directory, so ~/.cache (the helm venv, the Kubernetes source and
#     build) starts empty; only the built Kubernetes binaries are mounted read-only at
#     ~/.cache/edgeway/k8s-1.20.2/bin (unless --no-k8s-cache: then they are built, ~10 min);
#   - rustup's and cargo's homes stay the machine's (the toolchain; crates come from crates.io
#     on a fresh machine too, with --locked);
#   - ip_forward is set to 0 for the run (a fresh machine's value) and restored afterwards.
# Before: the run is refused while a bridge edgeway0 or KUBE-/CNI- iptables chains exist (a
# cluster that is running or was not stopped). After: such leftovers, and any state directory
# that the run created on the machine (paths that did not exist, so nothing was mounted over
# them), are reported; the created directories are removed again.
#
# What it cannot reproduce: Debian packages that are already installed stay installed (the
# install path of e2e/cluster/build.sh runs only where they are missing), and kernel modules.
#
# COMMAND defaults to `bash .ci/run`; it runs in the clone with CI=true. --keep keeps the
# scratch dir (the clone, its target/, the logs).
# shellcheck source=hack/lib/strict.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/strict.sh"

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
k8s_cache=1
keep=0
cmd=(bash .ci/run)
while (($#)); do
  case $1 in
    --no-k8s-cache) k8s_cache=0 ;;
    --keep) keep=1 ;;
    --) shift; cmd=("$@"); break ;;
    -h|--help) sed -n '2,29p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "fresh-machine.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
[[ $(id -u) == 0 ]] || { echo "fresh-machine.sh: needs root (mount namespace)" >&2; exit 1; }
command -v unshare >/dev/null || { echo "fresh-machine.sh: unshare (util-linux) not found" >&2; exit 1; }

log() { printf '[fresh-machine %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
STATE_DIRS=(/var/log/pods /var/lib/kubelet /var/lib/containerd /var/lib/cni /etc/cni /opt/cni
  /run/containerd)
K8S_BIN=${EDGEWAY_CACHE:-$HOME/.cache/edgeway}/k8s-1.20.2/bin

network_leftovers() { # print what a cluster leaves in the network: the bridge, iptables chains
  local t
  ip link show edgeway0 >/dev/null 2>&1 && echo "bridge edgeway0"
  for t in filter nat mangle; do
    iptables-save -t "$t" 2>/dev/null | grep -oE '^:(KUBE|CNI)-[A-Za-z0-9_-]+' | sed "s/^:/iptables -t $t chain /"
  done
  return 0
}

leftovers=$(network_leftovers)
if [[ -n $leftovers ]]; then
  log "refusing to start: a local cluster runs or was not stopped (e2e/cluster/cluster.sh stop DIR):"
  printf '    %s\n' "$leftovers" >&2
  exit 1
fi

scratch=$(mktemp -d /var/tmp/edgeway-fresh.XXXXXX)
mkdir -p "$scratch/tmp" "$scratch/home" "$scratch/state"
chmod 1777 "$scratch/tmp"
absent=()
for d in "${STATE_DIRS[@]}"; do [[ -e $d ]] || absent+=("$d"); done
saved_ip_forward=$(cat /proc/sys/net/ipv4/ip_forward)

finish() {
  local rc=$? d created=() left
  echo "$saved_ip_forward" >/proc/sys/net/ipv4/ip_forward
  for d in "${absent[@]}"; do
    if [[ -e $d ]]; then created+=("$d"); rm -rf "$d"; fi
  done
  ((${#created[@]})) && log "the run created on this machine (removed again): ${created[*]}"
  left=$(network_leftovers)
  if [[ -n $left ]]; then
    log "FAILED: the run left network state behind:"
    printf '    %s\n' "$left" >&2
    ((rc != 0)) || rc=1
  fi
  if ((keep)) || ((rc != 0)); then log "scratch kept: $scratch"; else rm -rf "$scratch"; fi
  log "exit $rc"
  exit "$rc"
}
trap finish EXIT

log "clone of $(git -C "$repo" rev-parse --short HEAD) into $scratch/tmp/ci/main"
git clone -q --no-local "$repo" "$scratch/tmp/ci/main"
if [[ -d $repo/../shared ]]; then
  cp -r "$repo/../shared" "$scratch/tmp/ci/shared"
  chmod -R a-w "$scratch/tmp/ci/shared"
fi
k8s_mount=""
if ((k8s_cache)); then
  [[ -f $K8S_BIN/.complete ]] \
    || { log "no Kubernetes build in $K8S_BIN (run e2e/cluster/build.sh, or use --no-k8s-cache)"; exit 1; }
  k8s_mount=$K8S_BIN
fi
echo 0 >/proc/sys/net/ipv4/ip_forward

log "running ${cmd[*]} in a private mount namespace (HOME, /tmp and state dirs fresh)"
# The inner script gets its inputs as arguments; it mounts, then execs the command.
set +e
unshare --mount --propagation private env -i \
  PATH="$PATH" TERM="${TERM:-dumb}" LANG=C.UTF-8 CI=true \
  HOME="$scratch/home" RUSTUP_HOME="${RUSTUP_HOME:-$HOME/.rustup}" CARGO_HOME="${CARGO_HOME:-$HOME/.cargo}" \
  bash -euo pipefail -c '
    scratch=$1 k8s_bin=$2; shift 2
    n=0
    for d in /var/log/pods /var/lib/kubelet /var/lib/containerd /var/lib/cni /etc/cni /opt/cni /run/containerd; do
      [[ -e $d ]] || continue
      n=$((n + 1)); mkdir -p "$scratch/state/$n"
      mount --bind "$scratch/state/$n" "$d"
    done
    home=$scratch/home
    if [[ -n $k8s_bin ]]; then
      mkdir -p "$home/.cache/edgeway/k8s-1.20.2/bin"
      mount --bind "$k8s_bin" "$home/.cache/edgeway/k8s-1.20.2/bin"
      mount -o remount,bind,ro "$home/.cache/edgeway/k8s-1.20.2/bin"
    fi
    # /tmp last: the scratch paths above are outside it.
    mount --bind "$scratch/tmp" /tmp
    cd /tmp/ci/main
    exec "$@"
  ' fresh-machine "$scratch" "$k8s_mount" "${cmd[@]}"
rc=$?
set -e
exit "$rc"
