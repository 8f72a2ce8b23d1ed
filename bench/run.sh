#!/usr/bin/env bash
# Side-by-side benchmarks of Edgeway against peers on this machine; writes bench/results/RESULTS.md.
#
#   bash bench/run.sh [all|https|handshake|lua|tunnel|fleet|smoke|operator|outbox|mqtt] ...
#
# Not tests and not run in CI (`smoke` is a seconds-long run of every scenario that only checks
# the plumbing). Needs root for apt-get (nginx, libnginx-mod-http-lua, lua-cjson, wrk, openssl,
# python3). Everything listens on 127.0.0.1; every process started here is stopped by its pid.
# Knobs: BENCH_DURATION (s, default 10), BENCH_WARMUP (s, 2), BENCH_CONNECTIONS (32),
# BENCH_PORT_BASE (19440), CARGO_BUILD_JOBS (1), BENCH_FLEET_SIZES (fleet devices, default
# "1000 10000 100000"), BENCH_PAIRS (5): every sidecar/nginx and
# operator/floor ratio is the median of that many interleaved pairs, with its min–max.
# `operator` (not part of `all`: minutes per size, a Kubernetes control plane per size) writes
# bench/results/operator-scale.md instead; BENCH_OPERATOR_SIZES (default "100 1000"),
# BENCH_FLOOR_CONCURRENCY (default 32). `outbox` and `mqtt` (the MQTT connector against
# mosquitto_pub on a local Mosquitto) print a table and leave RESULTS.md as it is.
# shellcheck source=hack/lib/strict.sh
source "$(dirname "${BASH_SOURCE[0]}")/../hack/lib/strict.sh"

BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$BENCH")
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$BENCH/target}
export CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-1}
DUR=${BENCH_DURATION:-10}
WARM=${BENCH_WARMUP:-2}
CONNS=${BENCH_CONNECTIONS:-32}
PORT=${BENCH_PORT_BASE:-19440}
W=$BENCH/work          # certs, configs, logs of the last run (gitignored)
RES=$BENCH/results
OUT=$RES/RESULTS.md
SERVER_CPU=0           # the server (and nginx's master + worker) is pinned here
CLIENT_CPU=1           # the load generator is pinned here
SCENARIOS=("$@")
[ ${#SCENARIOS[@]} -eq 0 ] && SCENARIOS=(all)
if [ "${SCENARIOS[0]}" = smoke ]; then
  DUR=1; WARM=1; CONNS=4; SMOKE=1; SCENARIOS=(https handshake lua tunnel fleet)
  OUT=$RES/RESULTS-smoke.md   # never overwrites the real results
else
  SMOKE=0
fi
[ "${SCENARIOS[0]}" = all ] && SCENARIOS=(https handshake lua tunnel fleet)

PIDS=()
CLUSTERS=()            # control planes started by the operator scenario (stopped by their pids)
cleanup() {
  local p d
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$p" 2>/dev/null || true
  done
  PIDS=()
  for d in "${CLUSTERS[@]}"; do bash "$ROOT/e2e/cluster/apiserver.sh" stop "$d" >&2 || true; done
  CLUSTERS=()
}
trap cleanup EXIT INT TERM
stop_pid() { # stop one process we started, bounded wait
  kill "$1" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$1" 2>/dev/null || true
  local keep=() p
  for p in "${PIDS[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
  PIDS=("${keep[@]+"${keep[@]}"}")
}
log() { echo "[bench] $*" >&2; }
md() { echo "$*" >> "$OUT.tmp"; }
cmdlog() { echo "$*" >> "$W/commands.txt"; }

# ---------------------------------------------------------------- setup
install_deps() {
  local need=()
  command -v nginx >/dev/null || need+=(nginx)
  [ -e /usr/lib/nginx/modules/ngx_http_lua_module.so ] || need+=(libnginx-mod-http-lua)
  [ -e /usr/lib/x86_64-linux-gnu/lua/5.1/cjson.so ] || need+=(lua-cjson)
  command -v wrk >/dev/null || need+=(wrk)
  command -v openssl >/dev/null || need+=(openssl)
  command -v python3 >/dev/null || need+=(python3)
  command -v curl >/dev/null || need+=(curl)
  if [ ${#need[@]} -gt 0 ]; then
    log "apt-get install ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"
  fi
}

build() {
  log "building (release, CARGO_BUILD_JOBS=$CARGO_BUILD_JOBS, target $CARGO_TARGET_DIR)"
  [ -f "$BENCH/Cargo.lock" ] || cp "$ROOT/Cargo.lock" "$BENCH/Cargo.lock"
  (cd "$BENCH" && cargo build --release -q \
     -p edgeway-bench --bin edgeway-bench \
     -p edgeway-sidecar --bin edgeway-sidecar \
     -p edgeway-platform --bin edgeway-platform)
  BIN=$CARGO_TARGET_DIR/release
}
build_bench() { # the operator scenario needs only the bench binary (and curl, python3)
  local c
  for c in curl python3; do command -v $c >/dev/null || { log "need $c"; exit 1; }; done
  log "building edgeway-bench (release, CARGO_BUILD_JOBS=$CARGO_BUILD_JOBS, target $CARGO_TARGET_DIR)"
  (cd "$BENCH" && cargo build --release -q -p edgeway-bench --bin edgeway-bench)
  BIN=$CARGO_TARGET_DIR/release
}

certs() { # ECDSA P-256 CA, server (localhost, 127.0.0.1) and client certificates
  local d=$W/certs
  mkdir -p "$d"
  [ -f "$d/client.crt" ] && return
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$d/ca.key" 2>/dev/null
  openssl req -x509 -new -key "$d/ca.key" -subj "/CN=Edgeway Bench CA" -days 30 -sha256 \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -out "$d/ca.crt"
  local who
  for who in server client; do
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$d/$who.key" 2>/dev/null
    openssl req -new -key "$d/$who.key" -subj "/CN=bench-$who" -out "$d/$who.csr"
    if [ $who = server ]; then
      printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature\nbasicConstraints=CA:FALSE\n' > "$d/$who.ext"
    else
      printf 'extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature\nbasicConstraints=CA:FALSE\n' > "$d/$who.ext"
    fi
    openssl x509 -req -in "$d/$who.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" -CAcreateserial \
      -days 30 -sha256 -extfile "$d/$who.ext" -out "$d/$who.crt" 2>/dev/null
  done
}

# ---------------------------------------------------------------- helpers
jget() { python3 -c 'import json,sys
try:
    v=json.loads(sys.argv[1])
    for k in sys.argv[2:]: v=v[k]
    print(v)
except Exception:
    print("n/a")' "$@"; }
ratio() { python3 -c 'import sys
try:
    a,b=float(sys.argv[1]),float(sys.argv[2])
    print("%.2f" % (a/b) if b else "n/a")
except ValueError:
    print("n/a")' "$1" "$2"; }
fmt_int() { python3 -c 'import sys
try: print(f"{float(sys.argv[1]):,.0f}")
except ValueError: print(sys.argv[1])' "$1"; }

cpu_ticks() { # utime+stime (clock ticks) of the given pids, summed
  local t=0 p f
  for p in "$@"; do
    f=$(sed 's/.*) //' "/proc/$p/stat" 2>/dev/null) || continue
    t=$((t + $(echo "$f" | awk '{print $12 + $13}')))
  done
  echo $t
}
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
wait_port() { # host:port answers TCP, within 20 s
  for _ in $(seq 200); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  log "nothing listens on 127.0.0.1:$1"; return 1
}
wait_http() { # URL answers 200 within N seconds
  local url=$1 n=${2:-20}
  for _ in $(seq $((n * 10))); do
    curl -fsS -o /dev/null --max-time 1 "$url" 2>/dev/null && return 0
    sleep 0.1
  done
  log "$url not ready after $n s"; return 1
}

# wrk output -> JSON {rps, p50_ms, p99_ms, errors}
parse_wrk() {
  python3 - "$1" <<'EOF'
import json, re, sys
t = open(sys.argv[1]).read()
def ms(v):
    m = re.match(r"([\d.]+)(us|ms|s|m)", v)
    x, u = float(m.group(1)), m.group(2)
    return x / 1000 if u == "us" else x if u == "ms" else x * 1000 if u == "s" else x * 60000
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", t).group(1))
p = dict(re.findall(r"^\s+(50|99)%\s+(\S+)", t, re.M))
err = re.search(r"Socket errors: (.*)", t)
non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", t)
print(json.dumps({"rps": round(rps), "p50_ms": ms(p["50"]), "p99_ms": ms(p["99"]),
                  "errors": err.group(1) if err else "0",
                  "non2xx": int(non2xx.group(1)) if non2xx else 0}))
EOF
}

# One load run against a server. Args: label kind(wrk|bench) url-or-addr extra...
# Sets RUN_JSON (rps, p50, p99, errors) and RUN_CPU (server CPU % of one core).
RUN_JSON=""; RUN_CPU=""
run_load() {
  local kind=$1; shift
  local pids=("${SERVER_PIDS[@]}") c0 c1 t0 t1
  if [ "$kind" = wrk ]; then
    local url=$1; shift
    local cmd=(taskset -c $CLIENT_CPU wrk -t1 -c"$CONNS" --latency "$@" "$url")
    # wrk has no warm-up: a short discarded run first.
    "${cmd[@]}" -d"${WARM}s" > /dev/null 2>&1 || true
    c0=$(cpu_ticks "${pids[@]}"); t0=$(date +%s.%N)
    "${cmd[@]}" -d"${DUR}s" > "$W/wrk.out" 2>&1
    c1=$(cpu_ticks "${pids[@]}"); t1=$(date +%s.%N)
    cmdlog "$(printf '%q ' "${cmd[@]}")-d${DUR}s"
    RUN_JSON=$(parse_wrk "$W/wrk.out")
  else
    local cmd=(taskset -c $CLIENT_CPU "$BIN/edgeway-bench" load --connections "$CONNS"
               --duration "$DUR" --warmup "$WARM" --ca "$W/certs/ca.crt" "$@")
    c0=$(cpu_ticks "${pids[@]}"); t0=$(date +%s.%N)
    RUN_JSON=$("${cmd[@]}")
    c1=$(cpu_ticks "${pids[@]}"); t1=$(date +%s.%N)
    cmdlog "$(printf '%q ' "${cmd[@]}")"
    # the bench tool's window includes its warm-up; CPU is averaged over both
  fi
  RUN_CPU=$(python3 -c "import sys; print(round(($c1-$c0)/($t1-$t0), 0))")
  cmdlog "  -> $RUN_JSON server_cpu=${RUN_CPU}%"
}

# ---------------------------------------------------------------- servers
SERVER_PIDS=()
SIDECAR_PORT=$PORT; NGINX_PORT=$((PORT + 1)); ADMIN_PORT=$((PORT + 2))
PLATFORM_PORT=$((PORT + 3)); PREST_PORT=$((PORT + 4)); PADMIN_PORT=$((PORT + 5))

lua_template() {
  mkdir -p "$W/lua"
  cat > "$W/lua/bench.lua" <<'EOF'
-- The benchmark thing: one NUMBER property and an Add service (JSON in, JSON out).
module ("templates.bench", thingworx.template.extend)
properties.p = { baseType="NUMBER", pushType="NEVER", value=42.5 }
serviceDefinitions.Add(
    output { baseType="NUMBER", description="a + b" },
    input { name="a", baseType="NUMBER", description="first" },
    input { name="b", baseType="NUMBER", description="second" },
    description { "Adds two numbers" }
)
services.Add = function(me, headers, query, data)
    return 200, data.a + data.b
end
-- LSR style: a data shape, and a service answering an InfoTable of it.
dataShapes.Reading(
    { name = "Temp", baseType = "NUMBER" },
    { name = "Amps", baseType = "NUMBER" },
    { name = "Status", baseType = "STRING", aspects = { defaultValue = "ok" } }
)
serviceDefinitions.Read(
    output { baseType = "INFOTABLE", description = "a reading", aspects = { dataShape = "Reading" } },
    input { name = "a", baseType = "NUMBER", description = "temperature" },
    input { name = "b", baseType = "NUMBER", description = "current" },
    description { "Returns one reading" }
)
services.Read = function(me, headers, query, data)
    local it = tw_infotable.createInfoTable(DataShape.Reading:clone())
    local ok, err = it:addRow({ Temp = data.a, Amps = data.b })
    if not ok then return 400, err end
    return 200, it
end
EOF
}

# sidecar <auth: basic|mtls>
start_sidecar() {
  local auth=$1 client_auth methods
  if [ "$auth" = mtls ]; then client_auth=required; methods="[mtls]"; else client_auth=off; methods="[basic]"; fi
  printf 'u:{PLAIN}p\n' > "$W/users"
  lua_template
  cat > "$W/sidecar-$auth.yaml" <<EOF
server:
  listen: 127.0.0.1:$SIDECAR_PORT
  tls:
    cert: $W/certs/server.crt
    key: $W/certs/server.key
    clientAuth: $client_auth
    clientCa: $W/certs/ca.crt
    watch: false
auth:
  methods: $methods
  basic:
    usersFile: $W/users
lua:
  templates:
    - name: bench
      file: $W/lua/bench.lua
  things:
    - name: T
      template: bench
      scanRateMs: 60000
admin:
  listen: 127.0.0.1:$ADMIN_PORT
logging:
  level: warn
EOF
  taskset -c $SERVER_CPU "$BIN/edgeway-sidecar" --config "$W/sidecar-$auth.yaml" \
    > "$W/sidecar.log" 2>&1 &
  PIDS+=($!); SERVER_PIDS=($!)
  cmdlog "taskset -c $SERVER_CPU $BIN/edgeway-sidecar --config $W/sidecar-$auth.yaml"
  wait_port $SIDECAR_PORT
}

# nginx <auth: basic|mtls>; the /things body is the sidecar's, byte for byte.
start_nginx() {
  local auth=$1 d=$W/nginx
  mkdir -p "$d/tmp"
  printf 'u:{PLAIN}p\n' > "$d/htpasswd"
  local auth_lines="auth_basic \"edgeway\"; auth_basic_user_file $d/htpasswd;"
  local mtls_lines=""
  if [ "$auth" = mtls ]; then
    auth_lines=""
    mtls_lines="ssl_client_certificate $W/certs/ca.crt; ssl_verify_client on;"
  fi
  local body
  body=$(cat "$W/things.json")
  cat > "$d/nginx.conf" <<EOF
worker_processes 1;
daemon off;
master_process on;
pid $d/nginx.pid;
error_log $d/error.log warn;
load_module /usr/lib/nginx/modules/ndk_http_module.so;
load_module /usr/lib/nginx/modules/ngx_http_lua_module.so;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_timeout 75s;
  keepalive_requests 10000000;
  client_body_temp_path $d/tmp/body;
  proxy_temp_path $d/tmp/proxy;
  fastcgi_temp_path $d/tmp/fastcgi;
  uwsgi_temp_path $d/tmp/uwsgi;
  scgi_temp_path $d/tmp/scgi;
  lua_package_cpath "/usr/lib/x86_64-linux-gnu/lua/5.1/?.so;;";
  init_by_lua_block {
    cjson = require "cjson"
    P = 42.5   -- the property value, as the sidecar's thing holds it
  }
  server {
    listen 127.0.0.1:$NGINX_PORT ssl;
    ssl_certificate $W/certs/server.crt;
    ssl_certificate_key $W/certs/server.key;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_session_tickets on;
    $mtls_lines
    default_type application/json;
    location = /things {
      $auth_lines
      return 200 '$body';
    }
    # The same InfoTables the sidecar returns, built and encoded per request.
    location = /Thingworx/Things/T/Properties/p {
      $auth_lines
      content_by_lua_block {
        ngx.header["Content-Type"] = "application/json"
        ngx.print(cjson.encode({
          dataShape = { fieldDefinitions = { p = {
            name = "p", baseType = "NUMBER", description = "", ordinal = 0,
            aspects = {} } } },
          rows = { { p = P } } }))
      }
    }
    # The LSR-style InfoTable service: the data shape and a row with the default filled in.
    location = /Thingworx/Things/T/Services/Read {
      $auth_lines
      content_by_lua_block {
        ngx.req.read_body()
        local data = cjson.decode(ngx.req.get_body_data() or "{}")
        ngx.header["Content-Type"] = "application/json"
        ngx.print(cjson.encode({
          dataShape = { fieldDefinitions = {
            Temp = { name = "Temp", baseType = "NUMBER", description = "", ordinal = 1, aspects = {} },
            Amps = { name = "Amps", baseType = "NUMBER", description = "", ordinal = 2, aspects = {} },
            Status = { name = "Status", baseType = "STRING", description = "", ordinal = 3,
                       aspects = { defaultValue = "ok" } } } },
          rows = { { Temp = data.a, Amps = data.b, Status = "ok" } } }))
      }
    }
    location = /Thingworx/Things/T/Services/Add {
      $auth_lines
      content_by_lua_block {
        ngx.req.read_body()
        local data = cjson.decode(ngx.req.get_body_data() or "{}")
        ngx.header["Content-Type"] = "application/json"
        ngx.print(cjson.encode({
          dataShape = { fieldDefinitions = { result = {
            name = "result", baseType = "NUMBER", description = "", ordinal = 0,
            aspects = {} } } },
          rows = { { result = data.a + data.b } } }))
      }
    }
  }
}
EOF
  taskset -c $SERVER_CPU nginx -c "$d/nginx.conf" -p "$d" > "$d/stderr.log" 2>&1 &
  local master=$!
  PIDS+=($master)
  cmdlog "taskset -c $SERVER_CPU nginx -c $d/nginx.conf -p $d   # worker_processes 1"
  wait_port $NGINX_PORT
  local kids
  kids=$(cat "/proc/$master/task/$master/children" 2>/dev/null || true)
  # shellcheck disable=SC2206
  SERVER_PIDS=($master $kids)
}

stop_servers() { local p; for p in "${SERVER_PIDS[@]}"; do kill -0 "$p" 2>/dev/null && stop_pid "$p" || true; done; SERVER_PIDS=(); }

# ---------------------------------------------------------------- A/B pairs
# One case, sidecar (A) against nginx (B), run as BENCH_PAIRS interleaved pairs (A, B, A, B,
# ...; each run on a freshly started server): on this shared VM one run per side has read
# 1.67x and then 0.74x for the same case minutes apart. The row gives medians, the ratio's
# median with its min–max, and a verdict: "ahead" only when the whole range is above 1.0x.
ab() { # label mode(basic|mtls) kind(wrk|bench) args... (@PORT@ = the server's port)
  local label=$1 mode=$2 kind=$3; shift 3
  local pairs=${BENCH_PAIRS:-5} p side port a args res=()
  [ "$SMOKE" = 1 ] && pairs=1
  for ((p = 1; p <= pairs; p++)); do
    for side in sidecar nginx; do
      "start_$side" "$mode"
      if [ "$side" = sidecar ]; then port=$SIDECAR_PORT; else port=$NGINX_PORT; fi
      args=(); for a in "$@"; do args+=("${a//@PORT@/$port}"); done
      run_load "$kind" "${args[@]}"
      res+=("$side $RUN_CPU $RUN_JSON")
      stop_servers
    done
  done
  md "$(python3 - "$label" "${res[@]}" <<'PY'
import json, statistics, sys
label, runs = sys.argv[1], sys.argv[2:]
side = {"sidecar": [], "nginx": []}
for r in runs:
    name, cpu, j = r.split(" ", 2)
    try:
        j = json.loads(j)
        side[name].append((float(j["rps"]), float(j["p99_ms"]), float(cpu), j))
    except (ValueError, KeyError):
        side[name].append(None)
pairs = [(a, b) for a, b in zip(side["sidecar"], side["nginx"]) if a and b and a[0] and b[0] and b[1]]
med = lambda xs: statistics.median(xs) if xs else float("nan")
rng = lambda xs: f"{med(xs):.2f} ({min(xs):.2f}–{max(xs):.2f})" if xs else "n/a"
tp = [a[0] / b[0] for a, b in pairs]
p99 = [a[1] / b[1] for a, b in pairs]
def col(k, i):
    xs = [x[i] for x in side[k] if x]
    return med(xs) if xs else float("nan")
verdict = "n/a" if not tp else "ahead" if min(tp) > 1 else "behind" if max(tp) < 1 else "level (range spans 1.0)"
extra = ""
res = [x[3].get("resumed") for x in side["sidecar"] + side["nginx"] if x and "resumed" in x[3]]
if res and any(res):
    hs = [x[3]["handshakes"] for x in side["sidecar"] + side["nginx"] if x]
    extra = f" ({sum(res):,} of {sum(hs):,} handshakes resumed)"
print(f"| {label}{extra} | {len(pairs)} | {col('sidecar', 0):,.0f} | {col('sidecar', 1)} | {col('sidecar', 2):.0f} % | "
      f"{col('nginx', 0):,.0f} | {col('nginx', 1)} | {col('nginx', 2):.0f} % | **{rng(tp)}** | {rng(p99)} | {verdict} |")
PY
)"
}
ab_header() {
  md "| case | pairs | sidecar req/s | sidecar p99 ms | sidecar CPU | nginx req/s | nginx p99 ms | nginx CPU | req/s ratio sidecar/nginx, median (min–max) | p99 ratio | verdict |"
  md "|---|---|---|---|---|---|---|---|---|---|---|"
}

# ---------------------------------------------------------------- scenario 1: HTTPS
BASIC="Authorization: Basic $(printf 'u:p' | base64)"
row3() { # label sidecar-json sidecar-cpu nginx-json nginx-cpu
  local s=$2 n=$4
  local sr nr
  sr=$(jget "$s" rps); nr=$(jget "$n" rps)
  md "| $1 | $(fmt_int "$sr") | $(jget "$s" p50_ms) / $(jget "$s" p99_ms) | $3 % | $(fmt_int "$nr") | $(jget "$n" p50_ms) / $(jget "$n" p99_ms) | $5 % | **$(ratio "$sr" "$nr")** | $(ratio "$(jget "$s" p99_ms)" "$(jget "$n" p99_ms)") |"
}
scenario_https() {
  log "scenario 1: HTTPS resource server vs nginx"
  # The body nginx returns for /things is the sidecar's own.
  start_sidecar basic
  curl -fsS --cacert "$W/certs/ca.crt" -u u:p "https://localhost:$SIDECAR_PORT/things" > "$W/things.json"
  local proto_s proto_n
  proto_s=$(echo | openssl s_client -connect 127.0.0.1:$SIDECAR_PORT -servername localhost 2>/dev/null | grep -E '^(New|Server Temp Key)' | tr '\n' ' ')
  stop_servers
  start_nginx basic
  proto_n=$(echo | openssl s_client -connect 127.0.0.1:$NGINX_PORT -servername localhost 2>/dev/null | grep -E '^(New|Server Temp Key)' | tr '\n' ' ')
  stop_servers
  md ""
  md "## 1. HTTPS resource server: edgeway-sidecar vs nginx $(nginx -v 2>&1 | sed 's/.*nginx\///')"
  md ""
  md "Both servers pinned to CPU $SERVER_CPU (\`taskset -c $SERVER_CPU\`; nginx \`worker_processes 1\`, the sidecar's tokio runtime then has one worker), load generator pinned to CPU $CLIENT_CPU, $CONNS connections, ${DUR} s measured after ${WARM} s warm-up. Same ECDSA P-256 server certificate (openssl, CA-signed). \`GET /things\`: nginx returns the sidecar's own response body (\`return 200\`). Basic auth: the same user with a **plaintext \`{PLAIN}\` password** on both sides. Negotiated: sidecar \`$proto_s\`, nginx \`$proto_n\`."
  md ""
  ab_header
  ab "(a) keep-alive, basic auth (wrk)" basic wrk "https://127.0.0.1:@PORT@/things" -H "$BASIC"
  ab "(a) keep-alive, basic auth (edgeway-bench load)" basic bench --addr "127.0.0.1:@PORT@" --path /things --header "$BASIC"
  ab "(b) keep-alive, mTLS required (edgeway-bench load)" mtls bench --addr "127.0.0.1:@PORT@" --path /things --cert "$W/certs/client.crt" --key "$W/certs/client.key"
  ab "(c) new TLS 1.3 handshake per request, basic auth (wrk, Connection: close)" basic wrk "https://127.0.0.1:@PORT@/things" -H "$BASIC" -H "Connection: close"
  md ""
  md "CPU is the server's user+system time over the run, in % of one core (nginx: master + worker), median of the runs. Latencies are client-side; wrk's are per request after connect, edgeway-bench's include a reconnect when one happens."
}

# ---------------------------------------------------------------- scenario 1b: handshakes
# New connections only: what the server spends per TLS handshake, full and resumed. The client
# (edgeway-bench load, one core) does not verify the server's signature: with its two ECDSA
# verifications per handshake it, not the server, was the limit (wrk: 65 % of the sidecar's
# core used). Both servers issue stateless session tickets (rustls Ticketer / nginx
# ssl_session_tickets), so a resumed handshake needs no server-side session store.
scenario_handshake() {
  log "scenario 1b: TLS handshakes vs nginx"
  md ""
  md "## 1b. New TLS handshakes: edgeway-sidecar vs nginx"
  md ""
  md "Same pinning and certificate as scenario 1; every request a new TCP connection with \`Connection: close\` and basic auth; client \`edgeway-bench load --close --no-verify\` ($CONNS connections) — it skips the server-signature checks so that the server, not the client, is the limit. Resumed: \`--resume\`, TLS 1.3 session tickets (PSK with ECDHE)."
  md ""
  ab_header
  ab "full handshake (ECDHE + ECDSA P-256 signature)" basic bench --addr "127.0.0.1:@PORT@" --path /things --header "$BASIC" --close --no-verify
  ab "resumed handshake (session ticket)" basic bench --addr "127.0.0.1:@PORT@" --path /things --header "$BASIC" --close --resume --no-verify
}

# ---------------------------------------------------------------- scenario 2: Lua
scenario_lua() {
  log "scenario 2: Lua property read / service call vs nginx + lua"
  [ -f "$W/things.json" ] || { start_sidecar basic; curl -fsS --cacert "$W/certs/ca.crt" -u u:p "https://localhost:$SIDECAR_PORT/things" > "$W/things.json"; stop_servers; }
  cat > "$W/post.lua" <<'EOF'
wrk.method = "POST"
wrk.body = '{"a": 2, "b": 3}'
wrk.headers["Content-Type"] = "application/json"
EOF
  local prop=/Thingworx/Things/T/Properties/p svc=/Thingworx/Things/T/Services/Add read=/Thingworx/Things/T/Services/Read side port
  for side in sidecar nginx; do
    "start_$side" basic
    if [ "$side" = sidecar ]; then port=$SIDECAR_PORT; else port=$NGINX_PORT; fi
    curl -fsS --cacert "$W/certs/ca.crt" -u u:p "https://localhost:$port$prop" > "$W/$side-prop.json"
    curl -fsS --cacert "$W/certs/ca.crt" -u u:p -H 'Content-Type: application/json' -d '{"a": 2, "b": 3}' "https://localhost:$port$svc" > "$W/$side-svc.json"
    curl -fsS --cacert "$W/certs/ca.crt" -u u:p -H 'Content-Type: application/json' -d '{"a": 2, "b": 3}' "https://localhost:$port$read" > "$W/$side-read.json"
    stop_servers
  done
  md ""
  md "## 2. Lua things: edgeway-sidecar vs nginx + lua-nginx-module (LuaJIT, lua-cjson)"
  md ""
  md "Same pinning, TLS, keep-alive and basic auth as scenario 1 (wrk, $CONNS connections). Sidecar: a Lua thing \`T\` (LSR-style template \`bench/work/lua/bench.lua\`: property \`p\` NUMBER, service \`Add(a, b)\` returning \`a + b\`, service \`Read(a, b)\` returning an InfoTable of the data shape \`Reading\` built with \`tw_infotable.createInfoTable(DataShape.Reading:clone())\` and \`addRow\`, the default of \`Status\` filled in). nginx: \`content_by_lua_block\` handlers building the same InfoTables with cjson per request (the services decode the JSON body). Responses (JSON key order may differ):"
  md ""
  for side in sidecar nginx; do
    md "- $side property: \`$(cat "$W/$side-prop.json")\`"
    md "- $side \`Add\`: \`$(cat "$W/$side-svc.json")\`"
    md "- $side \`Read\`: \`$(cat "$W/$side-read.json")\`"
  done
  md ""
  ab_header
  ab "GET property \`T.p\`" basic wrk "https://127.0.0.1:@PORT@$prop" -H "$BASIC"
  ab "POST service \`T.Add\` \`{\"a\":2,\"b\":3}\`" basic wrk "https://127.0.0.1:@PORT@$svc" -H "$BASIC" -s "$W/post.lua"
  ab "POST LSR-style service \`T.Read\` (InfoTable of a data shape)" basic wrk "https://127.0.0.1:@PORT@$read" -H "$BASIC" -s "$W/post.lua"
  md ""
  md "The sidecar's property read is served from the thing's value snapshot (no Lua VM entry, see docs/lua.md); its service calls enter the thing's VM behind the thing's async mutex and run inline on the async worker (moving off it only past a 100 µs slice; see docs/lua.md, Execution model). nginx runs them in the worker's LuaJIT VM."
}

# ---------------------------------------------------------------- scenario 3: tunnel
tunnel_run() { # args for edgeway-bench tunnel/ws-ceiling; echo JSON
  local cmd=("$BIN/edgeway-bench" "$@")
  cmdlog "$(printf '%q ' "${cmd[@]}")"
  local j
  j=$(timeout $((DUR + WARM + 180)) "${cmd[@]}" 2> "$W/tunnel-stderr.log") || j="{\"error\": \"$(grep -m1 -E '^Error' "$W/tunnel-stderr.log" | tr -d '"')\"}"
  cmdlog "  -> $j"
  echo "$j"
}
scenario_tunnel() {
  log "scenario 3: tunnel throughput and latency"
  local c="--certs $W/certs --duration $DUR --warmup $WARM"
  local p1 pk f20 f100 w500 w1 l1k l10k lk
  # shellcheck disable=SC2086
  {
    p1=$(tunnel_run tunnel $c --source push --things 1)
    pk=$(tunnel_run tunnel $c --source push --things 1000)
    w500=$(tunnel_run ws-ceiling $c --rows 500)
    w1=$(tunnel_run ws-ceiling $c --rows 1)
    f20=$(tunnel_run tunnel $c --source fleet --things 20000 --interval-ms 100)
    f100=$(tunnel_run tunnel $c --source fleet --things 50000 --interval-ms 250)
    l1k=$(tunnel_run tunnel $c --source push --things 1 --rate 1000)
    l10k=$(tunnel_run tunnel $c --source push --things 1 --rate 10000)
    lk=$(tunnel_run tunnel $c --source push --things 1000 --rate 10000)
  }
  md ""
  md "## 3. Tunnel: one sidecar → platform websocket (TLS 1.3, 127.0.0.1)"
  md ""
  md "Platform (\`edgeway_platform::start\`) and sidecar (\`edgeway_sidecar::start\`, tunnel defaults: batchRows 500, maxInFlight 1024, maxInFlightBytes 1 MiB, chunkSize 8192, in-memory queue of 100,000) in one process, one tokio runtime with 2 workers on this ${NPROC}-CPU machine (not pinned). An update counts when the platform has stored it (its \`updates_stored\`, served as \`updatesStored\` by \`/api/stats\`). \`push\`: the bench pushes into the tunnel's queue (\`Queue::push_many\`) in batches of 1,000, keeping the queue under 50,000 (no drops); \`fleet\`: the sidecar's simulated fleet generates the updates. CPU = process user+system time / wall time (2.0 = both cores)."
  md ""
  md "### Throughput"
  md ""
  md "| source | things | offered/s | stored updates/s | AlwaysOn messages/s | CPU cores | vs raw websocket ceiling (same rows/message) | goal ≥ 200,000/s |"
  md "|---|---|---|---|---|---|---|---|"
  local tr
  tr() { # label json ceiling-json
    local u; u=$(jget "$2" updates_per_s)
    local off; off=$(jget "$2" offered_rate)
    [ "$off" = "0.0" ] && off="max" || off=$(fmt_int "$off")
    md "| $1 | $(jget "$2" things) | $off | **$(fmt_int "$u")**$(jget "$2" error | sed -e 's/^n\/a$//' -e 's/^./ (&/' -e 's/.$/&)/') | $(fmt_int "$(jget "$2" messages_per_s)") | $(printf %.2f "$(jget "$2" cpu_cores)") | $(ratio "$u" "$(jget "$3" updates_per_s)") | $(python3 -c "print('met' if '$u' != 'n/a' and float('$u') >= 200000 else 'not met')") |"
  }
  tr "push_many, one thing (500 rows/message)" "$p1" "$w500"
  tr "push_many, round-robin over 1,000 things" "$pk" "$w1"
  tr "simulated fleet, 20,000 devices × 1 property @ 100 ms" "$f20" "$w1"
  tr "simulated fleet, 50,000 devices × 1 property @ 250 ms" "$f100" "$w1"
  md ""
  md "Queue drops (dropOldest) during the fleet runs: $(jget "$f20" queue_dropped) (20,000 @ 100 ms), $(jget "$f100" queue_dropped) (50,000 @ 250 ms); queue length at the end: $(jget "$f20" queue_len_at_end), $(jget "$f100" queue_len_at_end). Session set-up (AUTH, BIND, one GetPropertySubscriptions per thing): $(jget "$f20" connect_secs) s for 20,000 things, $(jget "$f100" connect_secs) s for 50,000. Scenario 4 runs 100,000 devices through one tunnel."
  md ""
  md "**Raw websocket ceiling** (\`edgeway-bench ws-ceiling\`): tokio-tungstenite over tokio-rustls, the client sending the tunnel's own encoded \`UpdateSubscribedPropertyValues\` frames with the tunnel's window of 1024 messages in flight, one flush per window (like the tunnel; echoes flushed once per burst, like the platform), the server echoing every frame back (so each byte crosses TLS twice as often as in the tunnel, whose answers are small):"
  md ""
  md "| rows/message | bytes/message | messages/s | updates/s equivalent | MB/s each way | CPU cores |"
  md "|---|---|---|---|---|---|"
  local w
  for w in "$w500" "$w1"; do
    md "| $(jget "$w" rows_per_message) | $(jget "$w" bytes_per_message) | $(fmt_int "$(jget "$w" messages_per_s)") | $(fmt_int "$(jget "$w" updates_per_s)") | $(jget "$w" mbytes_per_s_each_way) | $(printf %.2f "$(jget "$w" cpu_cores)") |"
  done
  md ""
  md "### Latency at a fixed rate (push instant carried in the value → platform stores and broadcasts it)"
  md ""
  md "| source | things | rate/s | stored/s | p50 ms | p99 ms | max ms | samples |"
  md "|---|---|---|---|---|---|---|---|"
  local j
  for j in "$l1k" "$l10k" "$lk"; do
    md "| push_many | $(jget "$j" things) | $(fmt_int "$(jget "$j" offered_rate)") | $(fmt_int "$(jget "$j" updates_per_s)") | $(jget "$j" p50_ms) | $(jget "$j" p99_ms) | $(jget "$j" max_ms) | $(jget "$j" latency_samples) |"
  done
  for j in "$f20" "$f100"; do
    md "| fleet (sample time → stored, ms clock, includes the 20 ms driver tick) | $(jget "$j" things) | $(fmt_int "$(jget "$j" offered_rate)") | $(fmt_int "$(jget "$j" updates_per_s)") | $(jget "$j" p50_ms) | $(jget "$j" p99_ms) | $(jget "$j" max_ms) | $(jget "$j" latency_samples) |"
  done
}

# ---------------------------------------------------------------- scenario 4: fleet scale
fleet_yaml() { # devices tunnel(0|1)
  local n=$1 t=$2 f=$W/fleet-$1-$2.yaml
  printf 'u:{PLAIN}p\n' > "$W/users"
  cat > "$f" <<EOF
server:
  listen: 127.0.0.1:$SIDECAR_PORT
  plaintext: true
auth:
  methods: [basic]
  basic:
    usersFile: $W/users
simulation:
  namePrefix: sensor-
  count: $n
  properties:
    - name: temperature
      baseType: NUMBER
      intervalMs: 1000
      generator: { kind: sine, min: 15, max: 30, periodMs: 60000 }
admin:
  listen: 127.0.0.1:$ADMIN_PORT
logging:
  level: warn
EOF
  if [ "$t" = 1 ]; then
    cat >> "$f" <<EOF
tunnel:
  url: wss://localhost:$PLATFORM_PORT/Thingworx/WS
  appKeyFile: $W/app-key
  gateway:
    name: gw-fleet
  server:
    ca: $W/certs/ca.crt
  timing:
    startupJitterMs: 0
EOF
  fi
  echo "$f"
}
start_platform() {
  printf 'bench:bench-app-key-0123456789\n' > "$W/app-keys"
  printf 'bench-app-key-0123456789\n' > "$W/app-key"
  cat > "$W/platform.yaml" <<EOF
listen: 127.0.0.1:$PLATFORM_PORT
tls:
  cert: $W/certs/server.crt
  key: $W/certs/server.key
  clientAuth: off
  watch: false
auth:
  appKeysFile: $W/app-keys
historySize: 10
maxThingsPerSession: 1100000   # the fleet scenario's 1,000,000 devices (BENCH_FLEET_SIZES)
rest:
  listen: 127.0.0.1:$PREST_PORT
admin:
  listen: 127.0.0.1:$PADMIN_PORT
logging:
  level: warn
EOF
  taskset -c $CLIENT_CPU "$BIN/edgeway-platform" --config "$W/platform.yaml" > "$W/platform.log" 2>&1 &
  PLATFORM_PID=$!; PIDS+=($PLATFORM_PID)
  cmdlog "taskset -c $CLIENT_CPU $BIN/edgeway-platform --config $W/platform.yaml"
  wait_port $PLATFORM_PORT
}
stored() { curl -fsS "http://127.0.0.1:$PREST_PORT/api/stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["updatesStored"])'; }
metric() { curl -fsS "http://127.0.0.1:$ADMIN_PORT/metrics" | awk -v m="$1" '$1 == m {print $2; exit}'; }

# fleet_run devices tunnel -> "rss_kib cpu_pct stored_per_s platform_cpu_pct dropped"
fleet_run() {
  local n=$1 t=$2 f; f=$(fleet_yaml "$n" "$t")
  [ "$t" = 1 ] && start_platform
  taskset -c $SERVER_CPU "$BIN/edgeway-sidecar" --config "$f" > "$W/fleet.log" 2>&1 &
  local pid=$!; PIDS+=($pid)
  cmdlog "taskset -c $SERVER_CPU $BIN/edgeway-sidecar --config $f"
  wait_http "http://127.0.0.1:$ADMIN_PORT/readyz" 60
  if [ "$t" = 1 ]; then # bounded wait for the tunnel (BIND + subscriptions of every device)
    for _ in $(seq 600); do [ "$(metric edgeway_sidecar_tunnel_up)" = 1 ] && break; sleep 0.1; done
  fi
  sleep "$((WARM + 3))"
  local c0 t0 s0=0 p0=0 c1 t1 s1=0 p1=0
  c0=$(cpu_ticks $pid); t0=$(date +%s.%N)
  [ "$t" = 1 ] && { s0=$(stored); p0=$(cpu_ticks "$PLATFORM_PID"); }
  sleep "$DUR"
  c1=$(cpu_ticks $pid); t1=$(date +%s.%N)
  [ "$t" = 1 ] && { s1=$(stored); p1=$(cpu_ticks "$PLATFORM_PID"); }
  local rss; rss=$(rss_kib $pid)
  local dropped=0
  [ "$t" = 1 ] && dropped=$(metric edgeway_sidecar_tunnel_queue_dropped_total || echo 0)
  stop_pid $pid
  [ "$t" = 1 ] && stop_pid "$PLATFORM_PID"
  python3 -c "
el=$t1-$t0
print($rss, round(($c1-$c0)/el,1), round(($s1-$s0)/el), round(($p1-$p0)/el,1), '${dropped:-0}')"
}
scenario_fleet() {
  log "scenario 4: simulated fleet scale"
  local sizes
  read -r -a sizes <<< "${BENCH_FLEET_SIZES:-1000 10000 100000}"
  [ "$SMOKE" = 1 ] && sizes=(1000)
  md ""
  md "## 4. Simulated fleet scale (\`edgeway-sidecar\` process, one NUMBER property per device, 1 update/device/s)"
  md ""
  md "Sidecar pinned to CPU $SERVER_CPU; with a tunnel, the platform process (historySize 10) pinned to CPU $CLIENT_CPU. RSS per device = (RSS with N devices − RSS of the same config with 1 device) / N, RSS read after $((WARM + 3)) s of running + ${DUR} s measured; CPU over the ${DUR} s, % of one core. Goal: < 2 KiB/device and 100,000 devices on one core."
  md ""
  md "| devices | tunnel | sidecar RSS KiB | RSS/device (bytes) | sidecar CPU % of a core | platform stored/s | platform CPU % | queue drops | goal |"
  md "|---|---|---|---|---|---|---|---|---|"
  local t base n r
  for t in 0 1; do
    read -r base _ <<< "$(fleet_run 1 "$t")"
    md "| 1 (baseline) | $([ $t = 1 ] && echo yes || echo no) | $base | – | – | – | – | – | |"
    for n in "${sizes[@]}"; do
      r=$(fleet_run "$n" "$t")
      local rss cpu st pc dr per
      read -r rss cpu st pc dr <<< "$r"
      per=$(python3 -c "print(round(($rss-$base)*1024/$n))")
      local ok="met"
      python3 -c "import sys; sys.exit(0 if $per < 2048 and $cpu < 100 and ($t == 0 or $st >= 0.97*$n) else 1)" || ok="not met"
      md "| $(fmt_int "$n") | $([ $t = 1 ] && echo yes || echo no) | $rss | $per | $cpu | $([ $t = 1 ] && fmt_int "$st" || echo –) | $([ $t = 1 ] && echo "$pc" || echo –) | $([ $t = 1 ] && echo "$dr" || echo –) | $ok |"
    done
  done
}

# ---------------------------------------------------------------- scenario 6: outbox fsync
# The persisted queue's cost per fsync policy, on the disk under bench/work (docs/performance.md
# "Persisted queue"); printed as a table, RESULTS.md untouched.
scenario_outbox() {
  log "scenario 6: persisted queue per fsync policy"
  local cmd=("$BIN/edgeway-bench" outbox --dir "$W/outbox" --rounds "${BENCH_ROUNDS:-5}")
  cmdlog "$(printf '%q ' "${cmd[@]}")"
  local j; j=$("${cmd[@]}")
  cmdlog "  -> $j"
  echo "| case | updates/s (median of $(jget "$j" rounds)) | min – max | vs in memory |"
  echo "|---|---|---|---|"
  python3 -c 'import json,sys
j = json.loads(sys.argv[1])
for c in j["cases"]:
    print("| {} | {:,.0f} | {:,.0f} – {:,.0f} | {:.2f}× |".format(c["case"], c["median_updates_per_s"], c["min"], c["max"], c["vs_memory"]))' "$j"
}

# ---------------------------------------------------------------- scenario 7: MQTT
# The sidecar's MQTT connector against mosquitto_pub on one local Mosquitto (docs/performance.md
# "MQTT"); printed as a table, RESULTS.md untouched.
scenario_mqtt() {
  log "scenario 7: MQTT connector vs mosquitto_pub"
  if ! command -v mosquitto >/dev/null || ! command -v mosquitto_pub >/dev/null; then
    log "apt-get install mosquitto mosquitto-clients"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends mosquitto mosquitto-clients
  fi
  local cmd=("$BIN/edgeway-bench" mqtt --certs "$W/certs" --dir "$W/mqtt" --rounds "${BENCH_ROUNDS:-5}")
  cmdlog "$(printf '%q ' "${cmd[@]}")"
  local j; j=$("${cmd[@]}")
  cmdlog "  -> $j"
  python3 -c 'import json,sys
j = json.loads(sys.argv[1])
print("| side | QoS 1 updates/s, median of {} rounds of {:,} | min – max |".format(j["rounds"], j["updates"]))
print("|---|---|---|")
for k, name in (("edgeway_per_s", "edgeway-sidecar MQTT connector"), ("mosquitto_pub_per_s", "mosquitto_pub -l")):
    v = sorted(j[k]); print("| {} | {:,.0f} | {:,.0f} – {:,.0f} |".format(name, v[len(v)//2], v[0], v[-1]))
print()
print("edgeway / mosquitto_pub, median of the per-round ratios: {:.2f}× ({:.2f}–{:.2f}); in flight: {} on both".format(j["ratio_median"], j["ratio_min"], j["ratio_max"], j["in_flight"]))' "$j"
}

# ---------------------------------------------------------------- scenario 5: operator scale
# A fresh Kubernetes 1.20 control plane per size (e2e/cluster/apiserver.sh), the release
# edgeway-operator, N EdgeGateways; then the operator is stopped and a plain client writes the
# same objects into another namespace of the same API server (the floor).
OPMD=$RES/operator-scale.md
scenario_operator() {
  log "scenario 5: operator scale"
  local sizes conc=${BENCH_FLOOR_CONCURRENCY:-32} pairs=${BENCH_PAIRS:-5}
  read -r -a sizes <<< "${BENCH_OPERATOR_SIZES:-100 1000}"
  [ "$SMOKE" = 1 ] && { sizes=(10); pairs=1; }
  log "building edgeway-operator (release, main workspace)"
  (cd "$ROOT" && cargo build --release --locked -q -p edgeway-operator --bin edgeway-operator)
  local op=$CARGO_TARGET_DIR/release/edgeway-operator
  bash "$ROOT/e2e/cluster/build.sh" --control-plane-only >&2
  "$op" crd > "$W/operator-crd.yaml"
  local mport=$((PORT + 40)) rows=() n p
  # A pair is the operator (A) then the floor (B) on one fresh control plane; pairs repeat, so
  # a ratio is reported as the median of the pairs with its range, never from one run.
  for n in "${sizes[@]}"; do
    for ((p = 1; p <= pairs; p++)); do
      log "operator scale: $n gateways, pair $p of $pairs"
      local d=$W/cluster-$n-$p
      rm -rf "$d"; mkdir -p "$d"
      cmdlog "bash e2e/cluster/apiserver.sh start $d"
      CLUSTERS+=("$d")
      bash "$ROOT/e2e/cluster/apiserver.sh" start "$d" >&2
      local kc=$d/kubeconfig cp_pids
      read -r -a cp_pids <<< "$(awk '{print $2}' "$d/pids" | tr '\n' ' ')"
      local crd=("$BIN/edgeway-bench" operator-crd --kubeconfig "$kc" --file "$W/operator-crd.yaml")
      cmdlog "$(printf '%q ' "${crd[@]}")"
      "${crd[@]}" >&2
      local run=("$op" run --metrics-addr "127.0.0.1:$mport" --leader-elect=false)
      cmdlog "KUBECONFIG=$kc $(printf '%q ' "${run[@]}")"
      KUBECONFIG=$kc "${run[@]}" > "$W/operator-$n-$p.log" 2>&1 &
      local opid=$!; PIDS+=("$opid")
      wait_http "http://127.0.0.1:$mport/readyz" 60
      local sc=("$BIN/edgeway-bench" operator-scale --kubeconfig "$kc" --gateways "$n" --operator-pid "$opid")
      cmdlog "$(printf '%q ' "${sc[@]}")"
      local j f m c0 c1 c2
      c0=$(cpu_ticks "${cp_pids[@]}")
      j=$(timeout 1800 "${sc[@]}" 2> "$W/operator-scale-$n-$p.err") || j="{\"error\": \"$(grep -m1 -E '^Error' "$W/operator-scale-$n-$p.err" | tr -d '"')\"}"
      c1=$(cpu_ticks "${cp_pids[@]}")
      local api_mib
      api_mib=$(awk '/^VmHWM:/ {printf "%.0f", $2/1024}' "/proc/${cp_pids[1]}/status" 2>/dev/null || echo n/a)
      cmdlog "  -> $j"
      cmdlog "  -> kube-apiserver peak RSS after the operator side: $api_mib MiB"
      curl -fsS "http://127.0.0.1:$mport/metrics" > "$W/operator-metrics-$n-$p.txt" || true
      m=$(awk '/^edgeway_operator_reconciles_total /{r=$2} /^edgeway_operator_certificates_issued_total /{c=$2} /^edgeway_operator_reconcile_errors_total/{e+=$2} /^edgeway_operator_api_calls_saved_total/{s+=$2} END{printf "%s %s %s %s", r+0, c+0, e+0, s+0}' "$W/operator-metrics-$n-$p.txt")
      cmdlog "  -> operator /metrics: reconciles certificates_issued errors api_calls_saved = $m"
      stop_pid "$opid"
      local fl=("$BIN/edgeway-bench" operator-floor --kubeconfig "$kc" --gateways "$n" --concurrency "$conc")
      cmdlog "$(printf '%q ' "${fl[@]}")"
      c1=$(cpu_ticks "${cp_pids[@]}")
      f=$(timeout 1800 "${fl[@]}" 2> "$W/operator-floor-$n-$p.err") || f="{\"error\": \"$(grep -m1 -E '^Error' "$W/operator-floor-$n-$p.err" | tr -d '"')\"}"
      c2=$(cpu_ticks "${cp_pids[@]}")
      cmdlog "  -> $f"
      cmdlog "  -> control plane CPU ticks: operator side $((c1 - c0)), floor side $((c2 - c1))"
      cmdlog "bash e2e/cluster/apiserver.sh stop $d"
      bash "$ROOT/e2e/cluster/apiserver.sh" stop "$d" >&2
      CLUSTERS=()
      rows+=("$n|$p|$j|$f|$m|$((c1 - c0))|$((c2 - c1))|$api_mib")
    done
  done
  local r t fs rec saved cpa cpb api_mib
  {
    echo "# Operator scale"
    echo
    echo "Generated by \`bash bench/run.sh operator\` on $(date -u '+%Y-%m-%d %H:%M UTC') (commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$ROOT" diff --quiet 2>/dev/null || echo ', with uncommitted changes')), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), \`nproc\` = $(nproc), $(free -h | awk '/^Mem:/ {print $2}'), load average before $LOAD_BEFORE. API server, etcd, controller manager, operator and bench share these cores. $pairs pairs per size (operator, then floor, on a fresh control plane each)."
    echo
    echo "| gateways | pair | operator: all objects (s) | floor (s) | ratio operator/floor | objects created | certs/s | operator RSS peak (MiB) | operator CPU (s) | control plane CPU, operator / floor side (s) | kube-apiserver RSS peak, operator side (MiB) | all statuses (s) | per gateway p50 / p99 (s) | reconciles | API calls saved | floor 429 retries |"
    echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    : > "$W/operator-ratios.txt"
    for r in "${rows[@]}"; do
      IFS='|' read -r n p j f m cpa cpb api_mib <<< "$r"
      read -r rec _ _ saved <<< "$m"
      t=$(jget "$j" all_objects_s); fs=$(jget "$f" floor_s)
      echo "$n $(ratio "$t" "$fs") $t $fs" >> "$W/operator-ratios.txt"
      echo "| $(fmt_int "$n") | $p | $t | $fs | $(ratio "$t" "$fs") | $(jget "$j" objects) | $(jget "$j" certs_per_s) | $(python3 -c "print(round($(jget "$j" operator_hwm_kib)/1024, 1))" 2>/dev/null || echo n/a) | $(jget "$j" operator_cpu_s) | $(python3 -c "print($cpa/100, '/', $cpb/100)") | $api_mib | $(jget "$j" all_status_s) | $(python3 -c "print($(jget "$j" gateway_to_children_p50_ms)/1000, '/', $(jget "$j" gateway_to_children_p99_ms)/1000)" 2>/dev/null || echo n/a) | $rec | $saved | $(jget "$f" retries_429) |"
    done
    echo
    echo "Summary (median of the pairs, min–max in brackets):"
    echo
    python3 - "$W/operator-ratios.txt" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    n, r, t, f = line.split()
    try:
        rows.setdefault(int(n), []).append((float(r), float(t), float(f)))
    except ValueError:
        rows.setdefault(int(n), [])
for n, v in rows.items():
    if not v:
        print(f"- {n:,} gateways: no complete pair")
        continue
    col = lambda i: [x[i] for x in v]
    fmt = lambda xs, d: f"{statistics.median(xs):.{d}f} ({min(xs):.{d}f}–{max(xs):.{d}f})"
    print(f"- {n:,} gateways, {len(v)} pairs: operator/floor **{fmt(col(0), 2)}**, operator {fmt(col(1), 1)} s, floor {fmt(col(2), 1)} s")
PY
    echo
    echo "Objects: per gateway 3 Secrets (server and client certificate, basic-auth), 1 ConfigMap, 2 Services, 1 StatefulSet, plus the namespace CA Secret. Operator time: from the first EdgeGateway create (the bench creates them 32 at a time) to the last of these objects seen by the bench's watches. Floor: the same objects (captured from the operator's first 3 gateways, renamed, same sizes) plus the EdgeGateways themselves, server-side applied by one client, $conc gateways at a time, each gateway's objects in sequence. Control plane CPU: etcd, kube-apiserver and kube-controller-manager, while each side ran."
    echo
    echo "## Commands"
    echo
    echo '```'
    cat "$W/commands.txt"
    echo '```'
  } > "$OPMD"
  log "wrote $OPMD"
}

# ---------------------------------------------------------------- main
mkdir -p "$W" "$RES"
: > "$W/commands.txt"
PEERS=0                # any scenario besides operator needs nginx, wrk, certificates, RESULTS.md
for s in "${SCENARIOS[@]}"; do case $s in operator|outbox|mqtt) ;; *) PEERS=1 ;; esac; done
if [ "$PEERS" = 1 ]; then install_deps; build; certs
elif [[ " ${SCENARIOS[*]} " == *" mqtt "* ]]; then build; certs   # certificates, not the peers
else build_bench; fi
NPROC=$(nproc)
: > "$OUT.tmp"
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
for s in "${SCENARIOS[@]}"; do
  case $s in
    https) scenario_https ;;
    handshake) scenario_handshake ;;
    lua) scenario_lua ;;
    tunnel) scenario_tunnel ;;
    fleet) scenario_fleet ;;
    operator) scenario_operator ;;
    outbox) scenario_outbox ;;
    mqtt) scenario_mqtt ;;
    *) echo "unknown scenario $s (all|https|handshake|lua|tunnel|fleet|smoke|operator|outbox|mqtt)" >&2; exit 2 ;;
  esac
done
[ "$PEERS" = 1 ] || { rm -f "$OUT.tmp"; exit 0; }   # operator alone: RESULTS.md stays as it is

{
  echo "# Edgeway benchmark results"
  echo
  echo "Generated by \`bash bench/run.sh ${*:-all}\` on $(date -u '+%Y-%m-%d %H:%M UTC') (commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$ROOT" diff --quiet 2>/dev/null || echo ', with uncommitted changes')).$([ "$SMOKE" = 1 ] && echo ' **Smoke run: durations of 1 s, figures are meaningless.**')"
  echo
  echo "| machine | |"
  echo "|---|---|"
  echo "| CPU | $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), \`nproc\` = $NPROC |"
  echo "| memory | $(free -h | awk '/^Mem:/ {print $2}') |"
  echo "| kernel | $(uname -r) |"
  echo "| load average (1/5/15 min) before / after | $LOAD_BEFORE / $(cut -d' ' -f1-3 /proc/loadavg) (other work on the machine disturbs every figure) |"
  echo "| rustc | $(rustc --version) |"
  echo "| peers | nginx $(nginx -v 2>&1 | sed 's/.*nginx\///'), libnginx-mod-http-lua $(dpkg-query -W -f='${Version}' libnginx-mod-http-lua 2>/dev/null), wrk $(dpkg-query -W -f='${Version}' wrk 2>/dev/null), OpenSSL $(openssl version | awk '{print $2}') |"
  echo
  echo "Ratios are sidecar / peer from the same run: throughput > 1 and p99 < 1 favour the sidecar."
  cat "$OUT.tmp"
  echo
  echo "## Commands"
  echo
  echo "Every figure above came from one of these (in order; \`->\` lines are the raw results):"
  echo
  echo '```'
  cat "$W/commands.txt"
  echo '```'
} > "$OUT"
rm -f "$OUT.tmp"
log "wrote $OUT"
