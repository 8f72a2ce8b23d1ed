#!/usr/bin/env bash
# A throw-away Kubernetes 1.20 control plane on loopback for Edgeway's e2e tests:
# etcd + kube-apiserver + kube-controller-manager, all state, logs and pids in DIR.
#
# Usage: e2e/cluster/apiserver.sh start DIR   start; writes DIR/kubeconfig and DIR/pids
#        e2e/cluster/apiserver.sh stop DIR    stop the processes recorded in DIR/pids
#        e2e/cluster/apiserver.sh env DIR     print shell exports (eval "$(... env DIR)")
#        e2e/cluster/apiserver.sh status DIR  exit 0 if every recorded process is running
#
# Environment:
#   EDGEWAY_CACHE        cache root used by build.sh (default: $HOME/.cache/edgeway)
#   EDGEWAY_K8S_BIN      directory holding kube-apiserver and kube-controller-manager
#                        (default: $EDGEWAY_CACHE/k8s-1.20.2/bin)
#   EDGEWAY_ETCD         etcd binary (default: etcd from PATH, Debian's etcd-server)
#   EDGEWAY_START_TIMEOUT seconds to wait for readiness of each component (default: 120)
#   EDGEWAY_API_HOST     address to listen on (default 127.0.0.1). cluster.sh sets its pod
#                        bridge's address, so pods reach the API server through the `kubernetes`
#                        Service (the endpoint reconciler is then on).
#
# Everything listens on 127.0.0.1 only (by default), on free ports chosen at start, so several
# clusters can run side by side. Prerequisite: e2e/cluster/build.sh --control-plane-only (or the full build).
# shellcheck source=hack/lib/strict.sh
source "$(dirname "${BASH_SOURCE[0]}")/../../hack/lib/strict.sh"

K8S_VERSION=1.20.2
CACHE_ROOT=${EDGEWAY_CACHE:-${HOME:?HOME is not set}/.cache/edgeway}
K8S_BIN=${EDGEWAY_K8S_BIN:-$CACHE_ROOT/k8s-$K8S_VERSION/bin}
ETCD=${EDGEWAY_ETCD:-etcd}
TIMEOUT=${EDGEWAY_START_TIMEOUT:-120}
SERVICE_CIDR=10.96.0.0/16
HOST=${EDGEWAY_API_HOST:-127.0.0.1}
LOOP=127.0.0.1   # etcd and the controller manager stay on loopback

log() { printf '[apiserver.sh %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
usage() { sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; }

# Process bookkeeping, ports, waiting and launching are shared with cluster.sh.
# shellcheck source=e2e/cluster/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# ---- certificates and credentials -----------------------------------------------------------
make_pki() { # DIR
  local dir=$1 pki=$1/pki
  mkdir -p "$pki"
  (
    umask 077
    cd "$pki"
    openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 3650 \
      -subj "/CN=edgeway-e2e-ca" \
      -addext "basicConstraints=critical,CA:TRUE" \
      -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -keyout apiserver.key -out apiserver.csr \
      -subj "/CN=kube-apiserver" 2>/dev/null
    printf '%s\n' \
      "subjectAltName=IP:127.0.0.1,IP:$HOST,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,IP:10.96.0.1" \
      "basicConstraints=critical,CA:FALSE" \
      "keyUsage=critical,digitalSignature,keyEncipherment" \
      "extendedKeyUsage=serverAuth" >apiserver.ext
    openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial \
      -out apiserver.crt -days 3650 -extfile apiserver.ext 2>/dev/null
    # The API server's client certificate towards kubelets (logs, exec) when a node runs.
    openssl req -newkey rsa:2048 -nodes -keyout kubelet-client.key -out kubelet-client.csr \
      -subj "/O=system:masters/CN=kube-apiserver-kubelet-client" 2>/dev/null
    printf '%s\n' "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature,keyEncipherment" \
      "extendedKeyUsage=clientAuth" >kubelet-client.ext
    openssl x509 -req -in kubelet-client.csr -CA ca.crt -CAkey ca.key -CAcreateserial \
      -out kubelet-client.crt -days 3650 -extfile kubelet-client.ext 2>/dev/null
    openssl genrsa -out sa.key 2048 2>/dev/null
    openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
    chmod 0644 ca.crt apiserver.crt sa.pub
  ) || die "creating certificates with openssl failed"
}

write_kubeconfig() { # FILE SERVER CA USER TOKEN
  local ca_data
  ca_data=$(base64 -w0 <"$3")
  (umask 077; cat >"$1" <<KUBECONFIG
apiVersion: v1
kind: Config
clusters:
- name: edgeway-e2e
  cluster:
    server: $2
    certificate-authority-data: $ca_data
users:
- name: $4
  user:
    token: $5
contexts:
- name: edgeway-e2e
  context:
    cluster: edgeway-e2e
    user: $4
    namespace: default
current-context: edgeway-e2e
KUBECONFIG
  )
}

# ---- start ----------------------------------------------------------------------------------
show_logs() {
  local dir=$1 f
  for f in "$dir"/etcd.log "$dir"/kube-apiserver.log "$dir"/kube-controller-manager.log; do
    [[ -f $f ]] || continue
    printf '\n===== last lines of %s =====\n' "$f" >&2
    tail -n 25 "$f" >&2
  done
}

start_attempt() { # DIR -> 0 ok, 1 failed, 2 failed on a port clash (worth retrying)
  local dir=$1
  rm -rf "$dir/etcd" "$dir/pids" "$dir"/*.log
  mkdir -p "$dir/etcd" && chmod 0700 "$dir/etcd" || return 1

  local etcd_port etcd_peer api_port kcm_port
  # (errexit is off inside this function since it is called with ||: check explicitly.)
  etcd_port=$(free_port) && etcd_peer=$(free_port) && api_port=$(free_port) && kcm_port=$(free_port) \
    || return 1
  local etcd_url=http://$LOOP:$etcd_port api_url=https://$HOST:$api_port
  local t0=$SECONDS

  launch "$dir" etcd "$ETCD" --name edgeway-e2e --data-dir "$dir/etcd" \
    --listen-client-urls "$etcd_url" --advertise-client-urls "$etcd_url" \
    --listen-peer-urls "http://$LOOP:$etcd_peer" --initial-advertise-peer-urls "http://$LOOP:$etcd_peer" \
    --initial-cluster "edgeway-e2e=http://$LOOP:$etcd_peer" --initial-cluster-state new \
    --snapshot-count 10000 --logger zap --log-level warn
  wait_until "etcd" "$LAUNCHED_PID" "$LAUNCHED_ST" \
    sh -c "curl -fsS --max-time 2 '$etcd_url/health' | grep -q '\"health\":\"true\"'" || return "$(failure_kind "$dir")"
  log "etcd ready on $etcd_url ($((SECONDS - t0))s)"

  local pki=$dir/pki reconciler=none
  # On loopback no pod can use the `kubernetes` Service, so it gets no endpoints.
  [[ $HOST == 127.0.0.1 ]] || reconciler=lease
  launch "$dir" kube-apiserver "$K8S_BIN/kube-apiserver" \
    --etcd-servers "$etcd_url" \
    --bind-address "$HOST" --secure-port "$api_port" --insecure-port 0 \
    --advertise-address "$HOST" --endpoint-reconciler-type "$reconciler" \
    --kubelet-client-certificate "$pki/kubelet-client.crt" --kubelet-client-key "$pki/kubelet-client.key" \
    --kubelet-preferred-address-types InternalIP \
    --tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" \
    --client-ca-file "$pki/ca.crt" \
    --token-auth-file "$dir/tokens.csv" \
    --authorization-mode Node,RBAC \
    --service-cluster-ip-range "$SERVICE_CIDR" \
    --service-account-key-file "$pki/sa.pub" \
    --service-account-signing-key-file "$pki/sa.key" \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --api-audiences https://kubernetes.default.svc.cluster.local \
    --allow-privileged=true --profiling=false \
    --v=1
  local api_pid=$LAUNCHED_PID api_st=$LAUNCHED_ST
  wait_until "kube-apiserver" "$api_pid" "$api_st" \
    curl -fsS --max-time 5 --cacert "$pki/ca.crt" -H "Authorization: Bearer $ADMIN_TOKEN" "$api_url/readyz" \
    || return "$(failure_kind "$dir")"
  log "kube-apiserver ready on $api_url ($((SECONDS - t0))s)"

  write_kubeconfig "$dir/kcm.kubeconfig" "$api_url" "$pki/ca.crt" kube-controller-manager "$KCM_TOKEN" \
    || return 1

  launch "$dir" kube-controller-manager "$K8S_BIN/kube-controller-manager" \
    --kubeconfig "$dir/kcm.kubeconfig" \
    --authentication-kubeconfig "$dir/kcm.kubeconfig" \
    --authorization-kubeconfig "$dir/kcm.kubeconfig" \
    --authentication-skip-lookup \
    --bind-address "$LOOP" --secure-port "$kcm_port" --port 0 \
    --leader-elect=false \
    --controllers '*,-cloud-node-lifecycle,-route,-service' \
    --service-account-private-key-file "$pki/sa.key" \
    --root-ca-file "$pki/ca.crt" \
    --cluster-signing-cert-file "$pki/ca.crt" --cluster-signing-key-file "$pki/ca.key" \
    --service-cluster-ip-range "$SERVICE_CIDR" \
    --profiling=false \
    --v=1
  local kcm_pid=$LAUNCHED_PID kcm_st=$LAUNCHED_ST
  wait_until "kube-controller-manager healthz" "$kcm_pid" "$kcm_st" \
    curl -fsS --max-time 5 -k "https://$LOOP:$kcm_port/healthz" || return "$(failure_kind "$dir")"
  # The service-account controller creating default/default proves the controllers run
  # and reach the API server.
  wait_until "kube-controller-manager controllers" "$kcm_pid" "$kcm_st" \
    curl -fsS --max-time 5 --cacert "$pki/ca.crt" -H "Authorization: Bearer $ADMIN_TOKEN" \
    "$api_url/api/v1/namespaces/default/serviceaccounts/default" || return "$(failure_kind "$dir")"
  log "kube-controller-manager ready ($((SECONDS - t0))s)"

  write_kubeconfig "$dir/kubeconfig" "$api_url" "$pki/ca.crt" edgeway-admin "$ADMIN_TOKEN"
  printf 'EDGEWAY_APISERVER_URL=%s\nEDGEWAY_ETCD_URL=%s\nEDGEWAY_KCM_HEALTHZ=https://%s:%s/healthz\n' \
    "$api_url" "$etcd_url" "$LOOP" "$kcm_port" >"$dir/endpoints"
  return 0
}

failure_kind() { # print 2 when a log shows a port clash, else 1
  if grep -qsi 'address already in use' "$1"/*.log; then echo 2; else echo 1; fi
}

start_dir() {
  local dir=$1
  command -v curl >/dev/null || die "curl not found (apt-get install curl)"
  command -v openssl >/dev/null || die "openssl not found (apt-get install openssl)"
  command -v "$ETCD" >/dev/null || die "etcd not found (apt-get install etcd-server, or set EDGEWAY_ETCD)"
  local b
  for b in kube-apiserver kube-controller-manager; do
    [[ -x $K8S_BIN/$b ]] || die "$K8S_BIN/$b missing: run e2e/cluster/build.sh --control-plane-only first"
  done
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd -P)
  if [[ -f $dir/pids ]]; then
    if status_dir "$dir" >/dev/null 2>&1; then die "a cluster is already running in $dir (stop it first)"; fi
    log "stale $dir/pids found: stopping what is left of it"
    stop_dir "$dir"
  fi
  rm -f "$dir/kubeconfig" "$dir/endpoints"

  make_pki "$dir"
  ADMIN_TOKEN=$(openssl rand -hex 24)
  KCM_TOKEN=$(openssl rand -hex 24)
  (umask 077; printf '%s\n' \
    "$ADMIN_TOKEN,edgeway-admin,edgeway-admin,\"system:masters\"" \
    "$KCM_TOKEN,system:kube-controller-manager,system:kube-controller-manager,\"system:masters\"" \
    >"$dir/tokens.csv")

  # On any failure: show the logs and stop what was started.
  START_DIR=$dir
  trap 'rc=$?; if ((rc != 0)); then show_logs "$START_DIR"; stop_dir "$START_DIR" || true; fi' EXIT

  local t0=$SECONDS attempt rc
  for attempt in 1 2 3; do
    rc=0; start_attempt "$dir" || rc=$?
    ((rc == 0)) && break
    if ((rc == 2 && attempt < 3)); then
      log "port clash on attempt $attempt: retrying with other ports"
      show_logs "$dir"
      stop_dir "$dir"
      continue
    fi
    die "start failed (logs in $dir)"
  done
  trap - EXIT
  log "control plane up in $((SECONDS - t0))s; KUBECONFIG=$dir/kubeconfig"
}

env_dir() {
  local dir
  dir=$(cd "$1" 2>/dev/null && pwd -P) || die "no such directory: $1"
  [[ -f $dir/kubeconfig ]] || die "$dir/kubeconfig missing: start the cluster first"
  printf 'export KUBECONFIG=%q\n' "$dir/kubeconfig"
  local line
  while IFS= read -r line; do printf 'export %s\n' "$line"; done <"$dir/endpoints"
}

main() {
  (($# == 2)) || { usage >&2; exit 2; }
  local cmd=$1 dir=$2
  [[ -n $dir ]] || die "DIR must not be empty"
  case $cmd in
    start) start_dir "$dir" ;;
    stop)
      [[ -d $dir ]] || die "no such directory: $dir"
      stop_dir "$dir" ;;
    env) env_dir "$dir" ;;
    status) status_dir "$dir" ;;
    -h|--help|help) usage ;;
    *) usage >&2; die "unknown command: $cmd" ;;
  esac
}

main "$@"
