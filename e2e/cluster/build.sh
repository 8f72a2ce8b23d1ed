#!/usr/bin/env bash
# Build (once) and cache the Kubernetes 1.20.2 server binaries used by Edgeway's e2e tests.
#
# Usage: e2e/cluster/build.sh [--control-plane-only] [--no-runtime-packages]
#
#   --control-plane-only   build only kube-apiserver and kube-controller-manager (what the
#                          operator tests need) instead of all five server binaries
#   --no-runtime-packages  do not install the packages needed to *run* the cluster
#                          (etcd-server, curl, openssl, and for the full build containerd,
#                          runc, containernetworking-plugins, iptables, conntrack)
#
# Environment:
#   EDGEWAY_CACHE   cache root (default: $HOME/.cache/edgeway); binaries go to
#                   $EDGEWAY_CACHE/k8s-1.20.2/bin/
#
# Idempotent: when the cache already holds the requested binaries (the stamp file lists them)
# nothing is fetched or built. Source comes from Debian's `kubernetes` source package
# (1.20.2, bookworm), built in GOPATH mode as Debian's own packaging does.
# shellcheck source=hack/lib/strict.sh
source "$(dirname "${BASH_SOURCE[0]}")/../../hack/lib/strict.sh"

K8S_VERSION=1.20.2
CACHE_ROOT=${EDGEWAY_CACHE:-${HOME:?HOME is not set}/.cache/edgeway}
K8S_DIR=$CACHE_ROOT/k8s-$K8S_VERSION
BIN_DIR=$K8S_DIR/bin
STAMP=$BIN_DIR/.complete
SRC_PARENT=$K8S_DIR/src
SRC_DIR=$SRC_PARENT/kubernetes-$K8S_VERSION
DEB_SRC_FILE=/etc/apt/sources.list.d/edgeway-deb-src.sources

CONTROL_PLANE=(kube-apiserver kube-controller-manager)
ALL_BINARIES=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy)

# tinyproxy, mosquitto, mosquitto-clients, python3-protobuf, protobuf-compiler: not Kubernetes,
# but the README's test command installs through here; the tunnel's proxy tests run a real
# tinyproxy, the MQTT tests a real Mosquitto broker read back with its own mosquitto_sub, and
# Sparkplug payloads are decoded by Google's protobuf runtime over a schema compiled by protoc.
RUNTIME_PKGS_CP=(etcd-server curl openssl ca-certificates tinyproxy mosquitto mosquitto-clients
  python3-protobuf protobuf-compiler)
RUNTIME_PKGS_FULL=(containerd runc containernetworking-plugins iptables conntrack iproute2 dnsmasq-base gcc libc6-dev python3)
# golang-github-modern-go-reflect2-dev: reflect2 1.0.2 replaces the vendored 1.0.1 (see
# patch_source).
BUILD_PKGS=(golang-go rsync make gcc libc6-dev dpkg-dev ca-certificates golang-github-modern-go-reflect2-dev)
REFLECT2_SYS=/usr/share/gocode/src/github.com/modern-go/reflect2

log() { printf '[build.sh %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

usage() { sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; }

control_plane_only=false
runtime_packages=true
while (($#)); do
  case $1 in
    --control-plane-only) control_plane_only=true ;;
    --no-runtime-packages) runtime_packages=false ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
  shift
done

if $control_plane_only; then
  WANTED=("${CONTROL_PLANE[@]}")
  RUNTIME_PKGS=("${RUNTIME_PKGS_CP[@]}")
else
  WANTED=("${ALL_BINARIES[@]}")
  RUNTIME_PKGS=("${RUNTIME_PKGS_CP[@]}" "${RUNTIME_PKGS_FULL[@]}")
  # cluster.sh waits on the node with kubectl; Debian's client (1.20) when none is here.
  command -v kubectl >/dev/null || RUNTIME_PKGS+=(kubernetes-client)
fi

# ---- timing ---------------------------------------------------------------------------------
declare -a TIMINGS=()
PHASE_NAME=""
PHASE_START=0
T0=$(date +%s)
phase() { # phase NAME: close the previous phase, open a new one
  local now; now=$(date +%s)
  if [[ -n $PHASE_NAME ]]; then TIMINGS+=("$(printf '%-28s %5ss' "$PHASE_NAME" $((now - PHASE_START)))"); fi
  PHASE_NAME=$1; PHASE_START=$now
  [[ -n $PHASE_NAME ]] && log "phase: $PHASE_NAME"
  return 0
}
report_timings() {
  phase ""
  log "timings:"
  local t; for t in "${TIMINGS[@]}"; do printf '    %s\n' "$t" >&2; done
  printf '    %-28s %5ss\n' total $(($(date +%s) - T0)) >&2
}

# ---- helpers --------------------------------------------------------------------------------
SUDO=()
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null || die "not root and no sudo: cannot install Debian packages"
  SUDO=(sudo)
fi

missing_packages() { # print the packages among "$@" that are not installed
  local p
  for p in "$@"; do
    if ! dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null | grep -qx installed; then
      printf '%s\n' "$p"
    fi
  done
}

APT_UPDATED=false
apt_update() {
  $APT_UPDATED && return 0
  "${SUDO[@]}" apt-get update -qq || die "apt-get update failed"
  APT_UPDATED=true
}

ensure_packages() {
  local missing
  mapfile -t missing < <(missing_packages "$@")
  ((${#missing[@]})) || { log "packages already installed: $*"; return 0; }
  log "installing: ${missing[*]}"
  apt_update
  # policy-rc.d-free: services are not needed (and fail harmlessly without an init system).
  DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null || die "apt-get install failed for: ${missing[*]}"
}

cache_complete() { # all wanted binaries present, non-empty, executable, and listed in the stamp
  [[ -f $STAMP ]] || return 1
  local b
  for b in "${WANTED[@]}"; do
    [[ -x $BIN_DIR/$b && -s $BIN_DIR/$b ]] || return 1
    grep -qx "$b" "$STAMP" || return 1
  done
}

# The deb-src entry mirrors the existing `deb` entry for bookworm (same URIs and Signed-By).
ensure_deb_src() {
  local main=/etc/apt/sources.list.d/debian.sources uris="" signed=""
  if [[ -f $main ]]; then
    # First deb822 stanza whose Types has `deb` and whose Suites has plain `bookworm`.
    read -r uris signed < <(awk '
      function flush() {
        if (types ~ /(^| )deb( |$)/ && suites ~ /(^| )bookworm( |$)/ && !done) { print uris, signed; done = 1 }
        types = suites = uris = signed = ""
      }
      /^[[:space:]]*$/ { flush(); next }
      /^#/ { next }
      /^Types:/     { sub(/^Types:[[:space:]]*/, "");     types = $0 }
      /^Suites:/    { sub(/^Suites:[[:space:]]*/, "");    suites = $0 }
      /^URIs:/      { sub(/^URIs:[[:space:]]*/, "");      uris = $1 }
      /^Signed-By:/ { sub(/^Signed-By:[[:space:]]*/, ""); signed = $1 }
      END { flush() }' "$main") || true
  fi
  if [[ -z $uris ]]; then
    uris=http://deb.debian.org/debian
    log "no bookworm deb entry found in $main; using $uris"
  fi
  [[ -n $signed ]] || signed=/usr/share/keyrings/debian-archive-keyring.gpg
  local want
  want=$(printf 'Types: deb-src\nURIs: %s\nSuites: bookworm\nComponents: main\nSigned-By: %s\n' "$uris" "$signed")
  if [[ -f $DEB_SRC_FILE ]] && [[ $(cat "$DEB_SRC_FILE") == "$want" ]]; then
    log "deb-src entry already present: $DEB_SRC_FILE"
  else
    log "writing $DEB_SRC_FILE (deb-src bookworm from $uris)"
    printf '%s\n' "$want" | "${SUDO[@]}" tee "$DEB_SRC_FILE" >/dev/null
    APT_UPDATED=false
  fi
}

source_version() { # the Debian version of source package kubernetes whose upstream is $K8S_VERSION
  apt-cache showsrc kubernetes 2>/dev/null | awk -v up="$K8S_VERSION" '
    /^Version:/ { v = $2; u = v; sub(/^[0-9]+:/, "", u); sub(/-[^-]*$/, "", u)
                  if (u == up || u ~ ("really" up "$")) { print v; exit } }'
}

fetch_source() {
  if [[ -f $SRC_DIR/.edgeway-unpacked ]]; then
    log "source already unpacked: $SRC_DIR"
    return 0
  fi
  ensure_deb_src
  local ver
  ver=$(source_version)
  if [[ -z $ver ]]; then
    APT_UPDATED=false; apt_update
    ver=$(source_version)
  fi
  [[ -n $ver ]] || die "Debian source package kubernetes $K8S_VERSION not found (apt-cache showsrc kubernetes); is the deb-src entry in $DEB_SRC_FILE reachable?"
  log "fetching Debian source package kubernetes=$ver"
  rm -rf "$SRC_PARENT"
  mkdir -p "$SRC_PARENT/dl"
  # apt drops privileges to _apt for downloads; let it write into the download dir.
  if id _apt >/dev/null 2>&1 && [[ $(id -u) -eq 0 ]]; then chown _apt "$SRC_PARENT/dl" 2>/dev/null || true; fi
  (cd "$SRC_PARENT/dl" && apt-get source -qq --download-only "kubernetes=$ver") \
    || die "apt-get source --download-only kubernetes=$ver failed"
  local dsc
  dsc=$(find "$SRC_PARENT/dl" -maxdepth 1 -name 'kubernetes_*.dsc' | head -n1)
  [[ -n $dsc ]] || die "no .dsc downloaded in $SRC_PARENT/dl"
  phase "unpack source"
  local tmp=$SRC_PARENT/unpack.tmp
  rm -rf "$tmp"
  dpkg-source --no-check -x "$dsc" "$tmp" >/dev/null || die "dpkg-source -x $dsc failed"
  [[ -d $tmp/vendor && -f $tmp/Makefile ]] || die "unpacked source lacks vendor/ or Makefile: $tmp"
  patch_source "$tmp"
  rm -rf "$SRC_PARENT/dl"
  touch "$tmp/.edgeway-unpacked"
  mv "$tmp" "$SRC_DIR"
}

# Kubernetes 1.20 vendors github.com/modern-go/reflect2 v1.0.1, which is broken on Go >= 1.18
# (Debian bookworm has Go 1.19): kube-apiserver then panics with a nil pointer dereference in
# reflect2.(*frozenConfig).Type2 / (*UnsafeMapType).Key while json-iterator decodes a request
# body with map fields (e.g. creating a CustomResourceDefinition). reflect2 v1.0.2 fixes it and
# keeps the same API; Debian ships it as golang-github-modern-go-reflect2-dev.
patch_source() { # SRC_TREE: returns 0 when the tree is (now) patched
  local tree=$1 vend=$1/vendor/github.com/modern-go/reflect2
  [[ -f $vend/go_above_118.go ]] && return 0
  [[ -f $REFLECT2_SYS/go_above_118.go ]] \
    || die "$REFLECT2_SYS is not reflect2 >= 1.0.2 (install golang-github-modern-go-reflect2-dev)"
  log "replacing vendored reflect2 v1.0.1 with Debian's $(dpkg-query -W -f='${Version}' golang-github-modern-go-reflect2-dev) (Go >= 1.18 fix)"
  rm -rf "$vend"
  mkdir -p "$vend"
  cp -a "$REFLECT2_SYS"/. "$vend"/
  rm -f "$vend/go.mod"
  # Binaries built from the unpatched tree must not be reused.
  rm -rf "$tree/_output"
}

build_binaries() {
  local targets=() b
  for b in "${WANTED[@]}"; do targets+=("cmd/$b"); done
  local go_home=$K8S_DIR/gohome
  mkdir -p "$go_home"
  local attempt
  for attempt in 1 2; do
    # A build interrupted or failed half way can leave zero-byte generator binaries in
    # _output/ that make keeps using: start from a clean _output/ then.
    if [[ -e $SRC_DIR/.edgeway-building ]]; then
      log "previous build did not finish: removing $SRC_DIR/_output"
      rm -rf "$SRC_DIR/_output"
    fi
    touch "$SRC_DIR/.edgeway-building"
    log "make WHAT=\"${targets[*]}\" (attempt $attempt; log: $K8S_DIR/build.log)"
    if (
      cd "$SRC_DIR"
      export GOPATH=$SRC_DIR/.go CGO_ENABLED=0 HOME=$go_home \
        GO111MODULE=off GOFLAGS='' GOPROXY=off
      mkdir -p .go/src/k8s.io
      ln -sfn ../../.. .go/src/k8s.io/kubernetes
      make WHAT="${targets[*]}"
    ) >"$K8S_DIR/build.log" 2>&1; then
      rm -f "$SRC_DIR/.edgeway-building"
      return 0
    fi
    log "build attempt $attempt failed; last lines of $K8S_DIR/build.log:"
    tail -n 30 "$K8S_DIR/build.log" >&2
  done
  die "building ${WANTED[*]} failed twice (see $K8S_DIR/build.log)"
}

install_binaries() {
  local out=$SRC_DIR/_output/local/bin/linux/amd64 b
  case $(uname -m) in
    x86_64) ;;
    aarch64) out=$SRC_DIR/_output/local/bin/linux/arm64 ;;
    *) die "unsupported machine: $(uname -m)" ;;
  esac
  mkdir -p "$BIN_DIR"
  for b in "${WANTED[@]}"; do
    [[ -s $out/$b ]] || die "build produced no $out/$b"
    install -m 0755 "$out/$b" "$BIN_DIR/.$b.tmp"
    mv -f "$BIN_DIR/.$b.tmp" "$BIN_DIR/$b"
  done
  # The stamp lists every binary known good; written last, atomically.
  { [[ -f $STAMP ]] && cat "$STAMP"; printf '%s\n' "${WANTED[@]}"; } | sort -u >"$STAMP.tmp"
  mv -f "$STAMP.tmp" "$STAMP"
}

# ---- main -----------------------------------------------------------------------------------
mkdir -p "$K8S_DIR"
exec 9>"$K8S_DIR/.lock"
if ! flock -n 9; then
  log "another build.sh holds $K8S_DIR/.lock; waiting for it (up to 60 min)"
  flock -w 3600 9 || die "timed out waiting for $K8S_DIR/.lock"
fi
trap report_timings EXIT

need_build=true
if cache_complete; then need_build=false; fi
# Write the deb-src entry before any `apt-get update`, so one update serves both installs.
if $need_build && [[ ! -f $SRC_DIR/.edgeway-unpacked ]]; then ensure_deb_src; fi

if $runtime_packages; then
  phase "runtime packages"
  ensure_packages "${RUNTIME_PKGS[@]}"
fi

if ! $need_build; then
  log "cache complete: ${WANTED[*]} in $BIN_DIR"
  exit 0
fi

phase "build packages"
ensure_packages "${BUILD_PKGS[@]}"
command -v go >/dev/null || die "go not found after installing golang-go"

phase "fetch source"
fetch_source

patch_source "$SRC_DIR"

phase "build (${#WANTED[@]} binaries)"
build_binaries

phase "install binaries"
install_binaries
log "done: ${WANTED[*]} in $BIN_DIR"
