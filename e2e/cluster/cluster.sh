#!/usr/bin/env bash
# A single-node Kubernetes 1.20 cluster that runs real pods on this machine, without Docker:
# the control plane of apiserver.sh plus containerd + runc, kubelet, kube-proxy (iptables),
# kube-scheduler, a CNI bridge, and cluster DNS (dnsmasq fed from the API by dns_sync.py).
#
# Usage: e2e/cluster/cluster.sh start DIR     start; writes DIR/kubeconfig, DIR/pids, DIR/node.env
#        e2e/cluster/cluster.sh stop DIR      stop every process by pid, remove pods, rules, bridge
#        e2e/cluster/cluster.sh import DIR TAR...  load OCI image tarballs into the node's containerd
#        e2e/cluster/cluster.sh env DIR       print shell exports (eval "$(... env DIR)")
#
# Network: bridge edgeway0 = 10.244.0.1/24 (pods get 10.244.0.2-254), Services 10.96.0.0/16. The
# API server and DNS listen on 10.244.0.1, so pods reach them and nothing outside this machine
# does. One such cluster per machine (the bridge name is fixed).
# Prerequisites: root, e2e/cluster/build.sh (the full build: kubelet, kube-proxy, scheduler).
# Environment: those of apiserver.sh, and EDGEWAY_NODE_TIMEOUT (node Ready, default 180 s).
# shellcheck source=hack/lib/strict.sh
source "$(dirname "${BASH_SOURCE[0]}")/../../hack/lib/strict.sh"

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
K8S_VERSION=1.20.2
CACHE_ROOT=${EDGEWAY_CACHE:-${HOME:?HOME is not set}/.cache/edgeway}
K8S_BIN=${EDGEWAY_K8S_BIN:-$CACHE_ROOT/k8s-$K8S_VERSION/bin}
TIMEOUT=${EDGEWAY_START_TIMEOUT:-120}
NODE_TIMEOUT=${EDGEWAY_NODE_TIMEOUT:-180}
BRIDGE=edgeway0
GATEWAY=10.244.0.1
POD_CIDR=10.244.0.0/24
NODE=edgeway-node
PAUSE_REF=edgeway.local/pause:e2e
CLUSTER_DOMAIN=cluster.local

log() { printf '[cluster.sh %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
usage() { sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; }
# shellcheck source=e2e/cluster/lib.sh
source "$HERE/lib.sh"

# The names in DIR, sorted; nothing (and success) when DIR does not exist.
list_dir() { if [[ -d $1 ]]; then find "$1" -mindepth 1 -maxdepth 1 -printf '%f\n' | sort; fi; }

ctr_() { ctr -a "$1/containerd/containerd.sock" -n k8s.io "${@:2}"; }

# ---- network --------------------------------------------------------------------------------
setup_network() { # DIR: the bridge, forwarding, bridged traffic through iptables
  local dir=$1
  if ip link show "$BRIDGE" >/dev/null 2>&1; then
    die "bridge $BRIDGE exists: another local cluster runs (or was not stopped: cluster.sh stop DIR)"
  fi
  {
    printf 'ip_forward=%s\n' "$(cat /proc/sys/net/ipv4/ip_forward)"
    printf 'bridge_nf=%s\n' "$(cat /proc/sys/net/bridge/bridge-nf-call-iptables 2>/dev/null || echo -)"
  } >"$dir/sysctl.saved"
  ip link add "$BRIDGE" type bridge
  ip addr add "$GATEWAY/24" dev "$BRIDGE"
  ip link set "$BRIDGE" up
  echo 1 >/proc/sys/net/ipv4/ip_forward
  # Pod-to-Service traffic answered by a pod on the same bridge must pass kube-proxy's rules.
  if [[ -w /proc/sys/net/bridge/bridge-nf-call-iptables ]]; then
    echo 1 >/proc/sys/net/bridge/bridge-nf-call-iptables
  fi
  ip netns list 2>/dev/null | awk '{print $1}' | sort >"$dir/netns.before"
  # The kubelet writes container logs under /var/log/pods (fixed in 1.20): remove ours at stop.
  # A machine where no kubelet ever ran has no /var/log/pods: record an empty list then.
  list_dir /var/log/pods >"$dir/podlogs.before"
}

teardown_network() { # DIR
  local -; set +e +o pipefail   # best effort: clean up what can be cleaned
  local dir=$1 ns key val
  if [[ -f $dir/netns.before ]]; then
    # Sandboxes' network namespaces (cni-*) made while this cluster ran.
    for ns in $(comm -13 "$dir/netns.before" <(ip netns list 2>/dev/null | awk '{print $1}' | sort)); do
      [[ $ns == cni-* ]] && ip netns delete "$ns" 2>/dev/null || true
    done
  fi
  if [[ -f $dir/podlogs.before ]]; then
    for ns in $(comm -13 "$dir/podlogs.before" <(list_dir /var/log/pods)); do
      rm -rf "/var/log/pods/${ns:?}"
    done
  fi
  ip link show "$BRIDGE" >/dev/null 2>&1 && ip link delete "$BRIDGE"
  if [[ -f $dir/sysctl.saved ]]; then
    while IFS== read -r key val; do
      case $key in
        ip_forward) echo "$val" >/proc/sys/net/ipv4/ip_forward ;;
        bridge_nf) [[ $val == - ]] || echo "$val" >/proc/sys/net/bridge/bridge-nf-call-iptables ;;
      esac
    done <"$dir/sysctl.saved"
    rm -f "$dir/sysctl.saved"
  fi
  remove_iptables_rules
  return 0
}

# What kubelet (KUBE-FIREWALL, KUBE-MARK-*, ...) and the CNI bridge plugin (CNI-* masquerade
# chains of network "edgeway-e2e") leave in iptables; kube-proxy --cleanup removed its own.
remove_iptables_rules() {
  local -; set +e +o pipefail   # best effort: clean up what can be cleaned
  local t rule chain
  for t in filter nat mangle; do
    iptables-save -t "$t" 2>/dev/null | grep -E '^-A [A-Z]+ ' | grep -E -- '-j KUBE-|edgeway-e2e' \
      | grep -vE '^-A (KUBE|CNI)-' | sed 's/^-A /-D /' | while read -r rule; do
        eval "iptables -t $t $rule" 2>/dev/null || true
      done
    for chain in $(iptables-save -t "$t" 2>/dev/null | grep -oE '^:(KUBE|CNI)-[A-Za-z0-9_-]+' | tr -d :); do
      iptables -t "$t" -F "$chain" 2>/dev/null || true
    done
    for chain in $(iptables-save -t "$t" 2>/dev/null | grep -oE '^:(KUBE|CNI)-[A-Za-z0-9_-]+' | tr -d :); do
      iptables -t "$t" -X "$chain" 2>/dev/null || true
    done
  done
}

# ---- containerd -----------------------------------------------------------------------------
write_containerd_config() { # DIR
  local dir=$1 c=$1/containerd
  mkdir -p "$c/root" "$c/state" "$dir/cni/net.d" "$dir/cni/ipam"
  cat >"$c/config.toml" <<EOF
version = 2
root = "$c/root"
state = "$c/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = "$c/containerd.sock"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_REF"
  # This machine lacks CAP_SYS_RESOURCE: without it every sandbox fails on oom_score_adj.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$dir/cni/net.d"
EOF
  cat >"$dir/cni/net.d/10-edgeway.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "edgeway-e2e",
  "plugins": [
    {"type": "bridge", "bridge": "$BRIDGE", "isGateway": true, "ipMasq": true, "hairpinMode": true,
     "ipam": {"type": "host-local", "subnet": "$POD_CIDR", "gateway": "$GATEWAY",
              "dataDir": "$dir/cni/ipam", "routes": [{"dst": "0.0.0.0/0"}]}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF
}

import_images() { # DIR TAR...
  local dir=$1 t; shift
  for t in "$@"; do
    [[ -s $t ]] || die "no image tarball $t"
    ctr_ "$dir" images import "$t" >/dev/null || die "ctr images import $t failed"
    log "imported $t"
  done
}

build_pause_image() { # DIR
  local dir=$1
  gcc -static -O2 -Wall -o "$dir/pause" "$HERE/node/pause.c" || die "building pause.c failed"
  python3 "$HERE/../../hack/oci_image.py" write --pause "$dir/pause" --out "$dir/pause.tar" \
    --ref "$PAUSE_REF" >/dev/null || die "writing the pause image failed"
}

# ---- kubelet, kube-proxy, scheduler ---------------------------------------------------------
write_node_configs() { # DIR KUBELET_PORT KUBELET_HEALTHZ PROXY_HEALTHZ PROXY_METRICS
  local dir=$1
  mkdir -p "$dir/kubelet"
  printf 'nameserver %s\n' "$GATEWAY" >"$dir/resolv.conf"
  cat >"$dir/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $GATEWAY
port: $2
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $3
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: false}
  x509: {clientCAFile: $dir/pki/ca.crt}
authorization: {mode: AlwaysAllow}
cgroupDriver: cgroupfs
failSwapOn: false
clusterDNS: [$GATEWAY]
clusterDomain: $CLUSTER_DOMAIN
resolvConf: $dir/resolv.conf
# A test node on a shared disk: do not evict pods because the disk is fuller than usual.
evictionHard: {memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%"}
imageGCHighThresholdPercent: 100
serializeImagePulls: false
syncFrequency: 10s
fileCheckFrequency: 10s
maxPods: 60
EOF
  cat >"$dir/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
clusterCIDR: $POD_CIDR
hostnameOverride: $NODE
bindAddress: 127.0.0.1
healthzBindAddress: 127.0.0.1:$4
metricsBindAddress: 127.0.0.1:$5
clientConnection: {kubeconfig: $dir/kubeconfig}
# Leave the machine's conntrack sysctls alone.
conntrack: {maxPerCore: 0, min: 0}
iptables: {masqueradeAll: true, syncPeriod: 5s, minSyncPeriod: 0s}
EOF
}

node_ready() { # DIR
  kubectl --kubeconfig "$1/kubeconfig" get node "$NODE" \
    -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null | grep -qx True
}

show_node_logs() {
  local dir=$1 f
  for f in containerd dnsmasq dns-sync kube-scheduler kubelet kube-proxy; do
    [[ -f $dir/$f.log ]] || continue
    printf '\n===== last lines of %s/%s.log =====\n' "$dir" "$f" >&2
    tail -n 30 "$dir/$f.log" >&2
  done
}

start_node() { # DIR
  local dir=$1 t0=$SECONDS
  local kubelet_port kubelet_healthz proxy_healthz proxy_metrics sched_port
  kubelet_port=$(free_port); kubelet_healthz=$(free_port); proxy_healthz=$(free_port)
  proxy_metrics=$(free_port); sched_port=$(free_port)

  write_containerd_config "$dir"
  launch "$dir" containerd containerd --config "$dir/containerd/config.toml"
  wait_until containerd "$LAUNCHED_PID" "$LAUNCHED_ST" ctr_ "$dir" version || return 1
  build_pause_image "$dir"
  import_images "$dir" "$dir/pause.tar"
  log "containerd ready ($((SECONDS - t0))s)"

  mkdir -p "$dir/dns"
  : >"$dir/dns/hosts"
  launch "$dir" dnsmasq dnsmasq --keep-in-foreground --no-resolv --no-hosts --no-poll \
    --listen-address="$GATEWAY" --bind-interfaces --port=53 --user=root \
    --addn-hosts="$dir/dns/hosts" --local="/$CLUSTER_DOMAIN/" --domain-needed --log-facility=-
  local dns_pid=$LAUNCHED_PID
  launch "$dir" dns-sync python3 "$HERE/node/dns_sync.py" --kubeconfig "$dir/kubeconfig" \
    --hosts "$dir/dns/hosts" --dnsmasq-pid "$dns_pid" --domain "$CLUSTER_DOMAIN"

  launch "$dir" kube-scheduler "$K8S_BIN/kube-scheduler" --kubeconfig "$dir/kubeconfig" \
    --authentication-kubeconfig "$dir/kubeconfig" --authorization-kubeconfig "$dir/kubeconfig" \
    --leader-elect=false --bind-address 127.0.0.1 --secure-port "$sched_port" --port 0 --v=1

  write_node_configs "$dir" "$kubelet_port" "$kubelet_healthz" "$proxy_healthz" "$proxy_metrics"
  launch "$dir" kubelet "$K8S_BIN/kubelet" --config "$dir/kubelet.yaml" \
    --kubeconfig "$dir/kubeconfig" --root-dir "$dir/kubelet" --cert-dir "$dir/kubelet/pki" \
    --container-runtime remote --container-runtime-endpoint "unix://$dir/containerd/containerd.sock" \
    --hostname-override "$NODE" --node-ip "$GATEWAY" --runtime-request-timeout 10m --v=1
  local kubelet_pid=$LAUNCHED_PID kubelet_st=$LAUNCHED_ST
  launch "$dir" kube-proxy "$K8S_BIN/kube-proxy" --config "$dir/kube-proxy.yaml" --v=1

  local deadline=$((SECONDS + NODE_TIMEOUT))
  until node_ready "$dir"; do
    alive "$kubelet_pid" "$kubelet_st" || { log "kubelet exited"; return 1; }
    ((SECONDS < deadline)) || { log "node $NODE not Ready after ${NODE_TIMEOUT}s"; return 1; }
    sleep 1
  done
  log "node $NODE Ready ($((SECONDS - t0))s)"
  printf 'EDGEWAY_NODE=%s\nEDGEWAY_POD_GATEWAY=%s\nEDGEWAY_CONTAINERD_SOCK=%s\n' \
    "$NODE" "$GATEWAY" "$dir/containerd/containerd.sock" >"$dir/node.env"
}

start_dir() {
  local dir=$1 b
  [[ $(id -u) == 0 ]] || die "needs root (bridge, iptables, containerd)"
  for b in kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy; do
    [[ -x $K8S_BIN/$b ]] || die "$K8S_BIN/$b missing: run e2e/cluster/build.sh (full build) first"
  done
  for b in containerd ctr runc dnsmasq iptables ip kubectl gcc python3; do
    command -v "$b" >/dev/null || die "$b not found: run e2e/cluster/build.sh (it installs the packages)"
  done
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd -P)
  chmod 0755 "$dir"
  local t0=$SECONDS
  setup_network "$dir"
  START_DIR=$dir
  trap 'rc=$?; if ((rc != 0)); then show_node_logs "$START_DIR"; stop_dir_all "$START_DIR" || true; fi' EXIT
  EDGEWAY_API_HOST=$GATEWAY bash "$HERE/apiserver.sh" start "$dir"
  start_node "$dir" || die "node start failed (logs in $dir)"
  trap - EXIT
  log "cluster up in $((SECONDS - t0))s; KUBECONFIG=$dir/kubeconfig"
}

remove_containers() { # DIR: every task and container of the node's containerd (pods' processes)
  local -; set +e +o pipefail   # best effort: clean up what can be cleaned
  local dir=$1 id
  [[ -S $dir/containerd/containerd.sock ]] || return 0
  for id in $(ctr_ "$dir" tasks ls -q 2>/dev/null); do
    ctr_ "$dir" tasks kill -s SIGKILL "$id" >/dev/null 2>&1 || true
  done
  for id in $(ctr_ "$dir" tasks ls -q 2>/dev/null); do
    for _ in $(seq 50); do
      ctr_ "$dir" tasks delete "$id" >/dev/null 2>&1 && break
      sleep 0.1
    done
  done
  for id in $(ctr_ "$dir" containers ls -q 2>/dev/null); do
    ctr_ "$dir" containers delete "$id" >/dev/null 2>&1 || true
  done
}

unmount_under() { # DIR: what containerd and the kubelet mounted below DIR (volumes, rootfs, shm)
  local -; set +e +o pipefail   # best effort: clean up what can be cleaned
  local m
  { awk '{print $5}' /proc/self/mountinfo | grep -F "$1/" || true; } | sort -r | while read -r m; do
    umount -l "$m" 2>/dev/null || true
  done
}

stop_dir_all() { # DIR
  local dir=$1 kubelet_pid
  [[ -d $dir ]] || die "no such directory: $dir"
  # Stop the kubelet first so it does not restart what is removed below.
  kubelet_pid=$(awk '$1 == "kubelet" {print $2" "$3}' "$dir/pids" 2>/dev/null || true)
  if [[ -n $kubelet_pid ]]; then
    # shellcheck disable=SC2086
    set -- $kubelet_pid
    if alive "$1" "$2"; then
      kill -TERM "$1" 2>/dev/null || true
      for _ in $(seq 100); do alive "$1" "$2" || break; sleep 0.1; done
    fi
  fi
  remove_containers "$dir"
  stop_dir "$dir" || true
  # kube-proxy's own cleanup of its iptables chains.
  [[ -x $K8S_BIN/kube-proxy ]] && "$K8S_BIN/kube-proxy" --cleanup >/dev/null 2>&1 || true
  unmount_under "$dir"
  teardown_network "$dir"
  log "stopped; state left in $dir"
}

env_dir() {
  local dir
  dir=$(cd "$1" 2>/dev/null && pwd -P) || die "no such directory: $1"
  bash "$HERE/apiserver.sh" env "$dir"
  local line
  [[ -f $dir/node.env ]] && while IFS= read -r line; do printf 'export %s\n' "$line"; done <"$dir/node.env"
  return 0
}

main() {
  (($# >= 2)) || { usage >&2; exit 2; }
  local cmd=$1 dir=$2
  [[ -n $dir ]] || die "DIR must not be empty"
  case $cmd in
    start) start_dir "$dir" ;;
    stop) stop_dir_all "$(cd "$dir" && pwd -P)" ;;
    import) shift 2; import_images "$(cd "$dir" && pwd -P)" "$@" ;;
    env) env_dir "$dir" ;;
    *) usage >&2; die "unknown command: $cmd" ;;
  esac
}

main "$@"
