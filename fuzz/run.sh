#!/usr/bin/env bash
# Coverage-guided fuzzing with cargo fuzz (libFuzzer + AddressSanitizer, nightly toolchain).
#   bash fuzz/run.sh smoke [SECONDS]        every target for SECONDS (20), as .ci/run does
#   bash fuzz/run.sh long [RUNS] [TARGET..]  each target for RUNS executions (10000000) or 30 min
# Corpora live in fuzz/corpus/<target> (not committed), seeded on every run from the repository:
# the protocol's golden encodings, example configs and templates, the importer's fixtures.
# Crashes land in fuzz/artifacts/<target>; each becomes a regression test (docs/reliability.md).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
mode=${1:-smoke}
TARGETS=(alwayson_frames infotable_json basic_header oauth_request sidecar_config gateway_render lua_template ems_import ws_inflate mqtt_command)
log() { echo "[fuzz $(date -u +%H:%M:%S)] $*"; }

rustup toolchain list | grep -q '^nightly' || { log "needs the nightly toolchain (rustup toolchain install nightly)"; exit 1; }
if ! cargo fuzz --version >/dev/null 2>&1; then
  log "installing cargo-fuzz (crates.io)"
  cargo install cargo-fuzz --locked -q
fi
[ -f "$here/Cargo.lock" ] || cp "$root/Cargo.lock" "$here/Cargo.lock"

seed() { # target file...: copies files into the target's corpus
  local t=$1; shift
  mkdir -p "$here/corpus/$t"
  for f in "$@"; do [ -f "$f" ] && cp "$f" "$here/corpus/$t/seed-$(basename "$f")"; done
  return 0
}
seeds() {
  python3 - "$root" "$here/corpus" <<'PY'
import json, os, re, sys
root, corpus = sys.argv[1], sys.argv[2]
def put(target, name, data):
    d = os.path.join(corpus, target); os.makedirs(d, exist_ok=True)
    open(os.path.join(d, "seed-" + name), "wb").write(data)
golden = open(os.path.join(root, "protocol/src/tests/golden.rs")).read()
for i, m in enumerate(re.findall(r'"([0-9A-Fa-f\s]{16,})"', golden)):
    raw = bytes.fromhex("".join(m.split()))
    put("alwayson_frames", f"golden-{i}", raw)
    put("alwayson_frames", f"golden-framed-{i}", bytes([min(len(raw), 255)]) + raw[:255])
put("infotable_json", "number", json.dumps({"dataShape": {"fieldDefinitions": {"result": {"name": "result", "baseType": "NUMBER"}}}, "rows": [{"result": 5}]}).encode())
put("infotable_json", "mixed", json.dumps({"dataShape": {"fieldDefinitions": {"s": {"name": "s", "baseType": "STRING"}, "l": {"name": "l", "baseType": "LOCATION"}, "d": {"name": "d", "baseType": "DATETIME"}}}, "rows": [{"s": "x", "l": {"latitude": 1, "longitude": 2, "elevation": 3}, "d": 1700000000000}]}).encode())
put("basic_header", "good", b"Basic dTpw")
put("basic_header", "bad", b"Basic YWRtaW46c2VjcmV")
import zlib
def deflated(data):  # raw deflate, sync-flushed, the 00 00 ff ff tail removed (RFC 7692)
    c = zlib.compressobj(1, zlib.DEFLATED, -15)
    return (c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH))[:-4]
def frame(flags, payload):  # ws_inflate's frame encoding: flags, length / 4, payload
    payload = payload[:1020]
    payload += bytes(-len(payload) % 4)
    return bytes([flags, len(payload) // 4]) + payload
put("ws_inflate", "compressed", b"\0" + frame(0xc2, deflated(b"hello " * 40)))
put("ws_inflate", "plain", b"\0" + frame(0x82, b"abcd" * 8))
put("ws_inflate", "fragmented", b"\0" + frame(0x42, deflated(b"x" * 500)[:8]) + frame(0x80, deflated(b"x" * 500)[8:]))
put("ws_inflate", "bomb", b"\0" + frame(0xc2, deflated(bytes(1 << 20))))
import struct
def metric(name, datatype, tag, value):  # a Sparkplug Payload.Metric, protobuf by hand
    m = b"\x0a" + bytes([len(name)]) + name + b"\x20" + bytes([datatype]) + tag + value
    return b"\x12" + bytes([len(m)]) + m
put("mqtt_command", "azure-method", b"$iothub/methods/POST/Meter1.Add/?$rid=1\n" + b'{"a": 2, "b": 3}')
put("mqtt_command", "azure-desired", b"$iothub/twin/PATCH/properties/desired/?$version=3\n" + b'{"Meter1": {"Setpoint": 1}}')
put("mqtt_command", "generic", b"plant/Meter1/services/Add/request\n" + b'{"id": 1, "params": {}}')
put("mqtt_command", "dcmd", b"spBv1.0/plant/DCMD/gw-0/Meter1\n" + metric(b"Setpoint", 10, b"\x69", struct.pack("<d", 42.0)) + metric(b"Services/Add", 12, b"\x7a", b"\x02{}"))
put("mqtt_command", "ncmd", b"spBv1.0/plant/NCMD/gw-0\n" + metric(b"Node Control/Rebirth", 11, b"\x70", b"\x01"))
put("oauth_request", "rfc", b'OAuth realm="x", oauth_consumer_key="ck", oauth_nonce="n", oauth_signature="s%3D", oauth_signature_method="HMAC-SHA1", oauth_timestamp="1700000000", oauth_version="1.0"\na=1&b=2\nc=3')
PY
  seed sidecar_config "$root"/examples/sidecar/*.yaml
  seed lua_template "$root"/examples/sidecar/lua/*.lua "$root"/sidecar/tests/fixtures/lsr/*.lua "$root"/operator/tests/fixtures/import/complete/templates/*.lua
  seed ems_import "$root"/operator/tests/fixtures/import/*/config.json
  mkdir -p "$here/corpus/gateway_render"
  python3 - "$root" "$here/corpus/gateway_render" <<'PY'
import json, os, sys, glob
try:
    import yaml
except ImportError:
    yaml = None
root, out = sys.argv[1], sys.argv[2]
for i, f in enumerate(sorted(glob.glob(os.path.join(root, "examples/cluster/*.yaml")) + [os.path.join(root, "examples/quickstart.yaml")])):
    if yaml is None: break
    for j, doc in enumerate(yaml.safe_load_all(open(f))):
        if isinstance(doc, dict) and doc.get("kind") == "EdgeGateway":
            open(os.path.join(out, f"seed-{i}-{j}.json"), "w").write(json.dumps(doc["spec"]))
PY
}

run() { # target, extra libFuzzer flags...
  local t=$1; shift
  log "$t: $*"
  local out="$here/logs/$t.log"
  mkdir -p "$here/logs"
  (cd "$here" && cargo +nightly fuzz run -O "$t" "corpus/$t" -- -print_final_stats=1 "$@") > "$out" 2>&1 || {
    tail -40 "$out"; log "$t FAILED: see $out and fuzz/artifacts/$t"; return 1; }
  # The figures docs/reliability.md records.
  local runs cov speed
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$out" | grep -o '[0-9]*$' || true)
  speed=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$out" | grep -o '[0-9]*$' || true)
  cov=$(grep -o 'cov: [0-9]*' "$out" | tail -1 | grep -o '[0-9]*' || true)
  log "$t: ${runs:-?} executions, ${speed:-?}/s, coverage ${cov:-?} edges, no crash"
  echo "| $t | ${runs:-?} | ${speed:-?} | ${cov:-?} | 0 |" >> "$here/logs/summary.md"
}

seeds
log "building the targets (release, ASan, coverage)"
(cd "$here" && cargo +nightly fuzz build -O) > "$here/build.log" 2>&1 || { tail -40 "$here/build.log"; exit 1; }
mkdir -p "$here/logs"
echo "| target | executions | execs/s | coverage (edges) | crashes |" > "$here/logs/summary.md"
echo "|---|---|---|---|---|" >> "$here/logs/summary.md"
case $mode in
  smoke)
    secs=${2:-20}
    for t in "${TARGETS[@]}"; do run "$t" -max_total_time="$secs"; done ;;
  long)
    runs=${2:-10000000}; shift $(( $# > 1 ? 2 : 1 ))
    sel=("${@:-${TARGETS[@]}}")
    for t in "${sel[@]}"; do run "$t" -runs="$runs" -max_total_time=1800; done ;;
  *) echo "usage: bash fuzz/run.sh smoke [SECONDS] | long [RUNS] [TARGET...]" >&2; exit 2 ;;
esac
cat "$here/logs/summary.md"
