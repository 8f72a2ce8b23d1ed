#!/usr/bin/env bash
# Builds the Edgeway image WITHOUT Docker: the same contents as the top-level Dockerfile, written
# as an OCI image tarball (oci-layout, index.json, blobs/sha256/...; also `docker load`-able).
#
#   hack/build-image.sh [--ref docker.io/edgeway/edgeway:dev] [--out FILE] [--no-build]
#                       [--ctr-check]
#
# One image, three binaries: /usr/local/bin/edgeway-{sidecar,operator,platform}; the ENTRYPOINT
# is edgeway-sidecar (the operator's StatefulSets give the sidecar only args); the chart sets
# `command:` for the operator and the platform. User 65532:65532, no shell, no /etc/passwd.
#
# Steps: 1. cargo build --release with crt-static for x86_64-unknown-linux-gnu (the Dockerfile's
# exact command); 2. copy and strip the binaries (as the Dockerfile does), check each is static
# (`file`, `ldd`) and runs `--help`; 3. write the
# tarball (hack/oci_image.py write); 4. verify it (json parses, digests and sizes match, the layer
# lists the three binaries, User 65532:65532); 5. with --ctr-check, import it into a throw-away
# containerd (own root, state, socket and config under a temp dir, stopped by pid at exit) with
# `ctr images import` and check the image name and that the content is unpacked.
#
# Load it into a node's containerd:  ctr -n k8s.io images import FILE
# (then pods use it with imagePullPolicy: Never or IfNotPresent).
#
# Environment: CARGO_TARGET_DIR (default: target), CARGO_BUILD_JOBS, SOURCE_DATE_EPOCH (mtimes).
# shellcheck source=hack/lib/strict.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/strict.sh"

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
target_dir=${CARGO_TARGET_DIR:-$repo/target}
triple=x86_64-unknown-linux-gnu
ref=docker.io/edgeway/edgeway:dev
out=
build=1
ctr_check=0
while [ $# -gt 0 ]; do
    case "$1" in
        --ref) ref=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        --no-build) build=0; shift ;;
        --ctr-check) ctr_check=1; shift ;;
        -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
        *) echo "build-image.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
out=${out:-$target_dir/edgeway-image.oci.tar}
bins=(edgeway-operator edgeway-sidecar edgeway-platform)
bin_dir=$target_dir/$triple/release
version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$repo/Cargo.toml" | head -1)
t0=$(date +%s)
step() { printf '\n== %s (%ss)\n' "$*" "$(( $(date +%s) - t0 ))"; }

if [ "$build" = 1 ]; then
    step "cargo build --release (crt-static, $triple)"
    # Same command as the Dockerfile. --target keeps RUSTFLAGS off build scripts and proc macros.
    (cd "$repo" && CARGO_TARGET_DIR=$target_dir RUSTFLAGS='-C target-feature=+crt-static' \
        cargo build --release --locked --target "$triple" \
        -p edgeway-operator -p edgeway-sidecar -p edgeway-platform --bins)
fi

step "staging (stripped) and checking the binaries"
stage=$target_dir/edgeway-image-bin
rm -rf "$stage" && mkdir -p "$stage"
for b in "${bins[@]}"; do
    [ -x "$bin_dir/$b" ] || { echo "missing $bin_dir/$b (run without --no-build)" >&2; exit 1; }
    install -m 0755 "$bin_dir/$b" "$stage/$b"
    strip --strip-all "$stage/$b"     # as the Dockerfile does: no debug info in the image
    f=$stage/$b
    desc=$(file -b "$f")
    case "$desc" in
        *"statically linked"*|*"static-pie linked"*) ;;
        *) echo "$b is not static: $desc" >&2; exit 1 ;;
    esac
    # ldd exits 0 and says "statically linked" for static-pie: dynamic means a "=>" line.
    if ldd "$f" 2>&1 | grep -q '=>'; then
        echo "$b: ldd finds dynamic dependencies:" >&2; ldd "$f" >&2; exit 1
    fi
    # Run from outside any image, in an empty environment: nothing but the binary is needed.
    env -i "$f" --help >/dev/null
    printf '  %-17s %6s MB  %s, ldd: %s; --help ok\n' "$b" \
        "$(awk -v s="$(stat -c %s "$f")" 'BEGIN{printf "%.1f", s/1e6}')" \
        "$(echo "$desc" | grep -o 'static[-a-z]* linked')" "$(ldd "$f" 2>&1 | tr -d '\t' | head -1)"
done

step "writing $out"
mkdir -p "$(dirname "$out")"
python3 "$here/oci_image.py" write --bin-dir "$stage" --out "$out" --ref "$ref" --version "$version"

step "verifying the tarball"
python3 "$here/oci_image.py" verify "$out" --ref "$ref"

if [ "$ctr_check" = 1 ]; then
    step "ctr images import into a throw-away containerd"
    command -v containerd >/dev/null && command -v ctr >/dev/null \
        || { echo "containerd/ctr not installed (e2e/cluster/build.sh installs them)" >&2; exit 1; }
    tmp=$(mktemp -d /tmp/edgeway-ctr.XXXXXX)
    ctrd_pid=
    cleanup() {
        if [ -n "$ctrd_pid" ] && kill -0 "$ctrd_pid" 2>/dev/null; then
            kill -TERM "$ctrd_pid" 2>/dev/null || true
            for _ in $(seq 50); do kill -0 "$ctrd_pid" 2>/dev/null || break; sleep 0.1; done
            kill -KILL "$ctrd_pid" 2>/dev/null || true
        fi
        # overlay snapshots may be mounted under root/
        grep -o " $tmp/[^ ]*" /proc/mounts 2>/dev/null | sort -r | xargs -r -n1 umount 2>/dev/null || true
        rm -rf "$tmp"
    }
    trap cleanup EXIT
    cat > "$tmp/config.toml" <<EOF
version = 2
root = "$tmp/root"
state = "$tmp/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$tmp/containerd.sock"
[ttrpc]
  address = "$tmp/containerd.sock.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
EOF
    containerd --config "$tmp/config.toml" >"$tmp/containerd.log" 2>&1 &
    ctrd_pid=$!
    for _ in $(seq 100); do
        [ -S "$tmp/containerd.sock" ] && ctr -a "$tmp/containerd.sock" version >/dev/null 2>&1 && break
        sleep 0.1
    done
    ctr -a "$tmp/containerd.sock" -n edgeway-check images import "$out"
    ctr -a "$tmp/containerd.sock" -n edgeway-check images ls
    ctr -a "$tmp/containerd.sock" -n edgeway-check images ls -q | grep -qx "$ref" \
        || { echo "image $ref not found after import" >&2; exit 1; }
    ctr -a "$tmp/containerd.sock" -n edgeway-check images check | tee "$tmp/check"
    grep -q "complete" "$tmp/check" || { echo "image content incomplete" >&2; exit 1; }
    echo "containerd imported $ref"
fi

step "done: $out ($ref)"
