# Debian's Prometheus (`prometheus` and `promtool`), unpacked from its package into the cache
# rather than installed: no daemon starts on this machine and no root is needed once the
# package lists exist. Sourced (not run):
#
#   source hack/lib/prometheus.sh; prometheus_fetch   # sets PROMETHEUS_BIN_DIR
#
# Environment: EDGEWAY_CACHE (default ~/.cache/edgeway); the files go to
# $EDGEWAY_CACHE/prometheus/usr/bin/.
# shellcheck shell=bash

prometheus_fetch() {
  local dir=${EDGEWAY_CACHE:-$HOME/.cache/edgeway}/prometheus sudo=()
  PROMETHEUS_BIN_DIR=$dir/usr/bin
  if "$PROMETHEUS_BIN_DIR/promtool" --version >/dev/null 2>&1 \
      && "$PROMETHEUS_BIN_DIR/prometheus" --version >/dev/null 2>&1; then
    return 0
  fi
  [ "$(id -u)" = 0 ] || sudo=(sudo)
  rm -rf "$dir/deb" && mkdir -p "$dir/deb"
  # A fresh machine may not have the package lists yet.
  (cd "$dir/deb" && apt-get download -q prometheus >/dev/null 2>&1) \
    || { "${sudo[@]}" apt-get update -qq && (cd "$dir/deb" && apt-get download -q prometheus); } \
    || { echo "apt-get download prometheus failed" >&2; return 1; }
  dpkg-deb -x "$(ls "$dir"/deb/prometheus_*.deb | head -1)" "$dir"
  rm -rf "$dir/deb"
  "$PROMETHEUS_BIN_DIR/promtool" --version >/dev/null
}
