#!/usr/bin/env bash
# Checks the Helm chart charts/edgeway without a helm binary and without Docker:
#
#   1. the chart's CRD copy is in sync with crds/ (hack/sync-chart-crds.sh --check);
#   2. `helm lint --strict` and the values schema (helm-python-sdk, which bundles Helm v4, in a
#      venv); render four value sets (default, full, namespaced, no-leader-election) and check
#      the objects (restricted security contexts, operator args, RBAC without wildcards);
#   3. against a REAL Kubernetes 1.20.2 control plane (e2e/cluster/apiserver.sh, on loopback;
#      stopped by pid at exit): install the chart's CRD and our typed stand-ins for the
#      Prometheus Operator's (hack/monitoring/crds.yaml), server-side dry-run apply of every
#      rendered manifest (schema errors surface here; a monitoring object must come back with
#      every field it was sent with), a dry run of the example gateway;
#   3b. promtool (Debian's prometheus package, unpacked into the cache): `check rules` on the
#      alert file and each rendered PrometheusRule, `test rules` (hack/monitoring/
#      alerts_test.yaml), and every dashboard query parsed as a recording rule;
#   4. a real `helm install` + `helm upgrade` (platform and monitoring on) into that control
#      plane: the ServiceMonitor, PodMonitors, PrometheusRule and dashboard exist; generated
#      platform credentials and certificate must survive the upgrade; `kubectl auth can-i` as
#      the operator's ServiceAccount for what it needs and what it must not have;
#   5. when the release binaries exist (hack/build-image.sh builds them; or EDGEWAY_BIN_DIR):
#      `edgeway-platform --check` on the rendered platform config with the generated
#      certificate (what the platform `helm test` pod runs), and the operator itself run as the
#      chart's ServiceAccount (its token, the chart's RBAC) reconciling a gateway: it must create
#      the Secrets, ConfigMap, Services and StatefulSet and write status with no 403; the
#      installed gateway PodMonitor selects that StatefulSet's pods and names a port they have.
#
#   hack/chart-check.sh [--keep-dir]
#
# Environment: HELM_VENV (default ${EDGEWAY_CACHE:-~/.cache/edgeway}/helmvenv), EDGEWAY_BIN_DIR
# (default ${CARGO_TARGET_DIR:-target}/x86_64-unknown-linux-gnu/release), and those of
# e2e/cluster/apiserver.sh. Prints PASS/FAIL per step; exits non-zero on any problem.
# shellcheck source=hack/lib/strict.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/strict.sh"

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
chart=$repo/charts/edgeway
venv=${HELM_VENV:-${EDGEWAY_CACHE:-$HOME/.cache/edgeway}/helmvenv}
bin_dir=${EDGEWAY_BIN_DIR:-${CARGO_TARGET_DIR:-$repo/target}/x86_64-unknown-linux-gnu/release}
keep=0
[ "${1:-}" = "--keep-dir" ] && keep=1
ns=edgeway
t0=$(date +%s)
step() { printf '\n######## %s (%ss)\n' "$*" "$(( $(date +%s) - t0 ))"; }
fail() { echo "FAIL: $*" >&2; exit 1; }

work=$(mktemp -d /tmp/edgeway-chart-check.XXXXXX)
cluster=$work/cluster
started=0
op_pid=
cleanup() {
    rc=$?
    if [ -n "$op_pid" ] && kill -0 "$op_pid" 2>/dev/null; then
        kill -TERM "$op_pid" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$op_pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$op_pid" 2>/dev/null || true
    fi
    if [ "$started" = 1 ]; then
        bash "$repo/e2e/cluster/apiserver.sh" stop "$cluster" >/dev/null 2>&1 || true
    fi
    if [ "$keep" = 1 ] || [ "$rc" != 0 ]; then echo "work directory kept: $work"; else rm -rf "$work"; fi
    if [ "$rc" = 0 ]; then echo "chart-check: PASS ($(( $(date +%s) - t0 ))s)"; else echo "chart-check: FAIL" >&2; fi
}
trap cleanup EXIT

step "helm-python-sdk venv ($venv)"
if ! "$venv/bin/python" -c 'import helm_python, yaml' 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check 'helm-python-sdk==0.2.2' 'pyyaml>=6'
fi
py=$venv/bin/python
"$py" -c 'import helm_python as h; print("helm", h.helm_sdk_version(), "via helm-python-sdk", h.__version__)'

step "chart CRDs in sync with crds/"
bash "$here/sync-chart-crds.sh" --check

step "lint, schema, render"
mkdir -p "$work/rendered"
"$py" "$here/chart_check.py" offline "$chart" "$work/rendered" || fail "lint/render checks"

step "control plane (e2e/cluster)"
bash "$repo/e2e/cluster/build.sh" --control-plane-only >"$work/build.log" 2>&1 \
    || { tail -20 "$work/build.log"; fail "e2e/cluster/build.sh"; }
mkdir -p "$cluster"
started=1
bash "$repo/e2e/cluster/apiserver.sh" start "$cluster" 2>&1 | tail -3
export KUBECONFIG=$cluster/kubeconfig
# kubectl, without the 1.32-client/1.20-server skew warning; keeps kubectl's exit status.
k() {
    local out rc=0
    out=$(kubectl --kubeconfig "$KUBECONFIG" "$@" 2>&1) || rc=$?
    out=$(printf '%s\n' "$out" | grep -v 'version difference\|^W[0-9]' || true)
    if [ "$rc" -ne 0 ]; then
        printf 'kubectl %s failed (exit %s):\n%s\n' "$*" "$rc" "$out" >&2
    elif [ -n "$out" ]; then
        printf '%s\n' "$out"
    fi
    return $rc
}
# A just-started API server may refuse a first write while its caches fill: try a few times.
retry() {
    local i
    for i in 1 2 3 4 5; do
        "$@" && return 0
        echo "  (attempt $i failed; retrying)" >&2
        sleep 2
    done
    return 1
}
kubectl --kubeconfig "$KUBECONFIG" version 2>/dev/null | sed 's/^/  /' || true

step "server-side dry run of the rendered manifests"
retry k apply --server-side -f "$chart/crds/" >/dev/null || fail "applying the chart's CRD"
k wait --for condition=established --timeout=60s crd/edgegateways.edgeway.io >/dev/null
# Our own CRDs for the Prometheus Operator kinds the chart can make (typed for the fields it uses).
retry k apply --server-side -f "$repo/hack/monitoring/crds.yaml" >/dev/null
for crd in servicemonitors podmonitors prometheusrules; do
    k wait --for condition=established --timeout=60s "crd/$crd.monitoring.coreos.com" >/dev/null
done
for n in "$ns" edgeway-a edgeway-b monitoring; do k create namespace "$n" >/dev/null; done
for f in "$work"/rendered/*.yaml; do
    case_name=$(basename "$f" .yaml)
    [ -s "$f" ] || continue
    # The offline render targets a current cluster (policy/v1 PodDisruptionBudget); this 1.20
    # server has only policy/v1beta1, with the same fields. (On a real install the chart picks
    # the version the cluster serves: the upgrade step below installs the v1beta1 budget.)
    sed -i '/^apiVersion: policy\/v1$/{N;s/^apiVersion: policy\/v1\nkind: PodDisruptionBudget$/apiVersion: policy\/v1beta1\nkind: PodDisruptionBudget/}' "$f"
    if kubectl --kubeconfig "$KUBECONFIG" apply --server-side --dry-run=server \
            --field-manager=chart-check -o json -f "$f" >"$work/applied.json" 2>"$work/applied.err"; then
        echo "  $case_name:"
        "$py" "$here/chart_check.py" unpruned "$f" "$work/applied.json" || fail "monitoring objects of $case_name"
    else
        grep -v 'version difference' "$work/applied.err" >&2
        fail "server-side dry run of $case_name"
    fi
done
k apply --server-side --dry-run=server -n "$ns" -f "$repo/examples/cluster/gateway.yaml" \
    || fail "dry run of examples/cluster/gateway.yaml against the chart's CRD"

step "promtool: the alert rules, their unit tests, the dashboard's queries"
# shellcheck source=hack/lib/prometheus.sh
source "$here/lib/prometheus.sh"
prometheus_fetch || fail "fetching Debian's prometheus package"
promtool=$PROMETHEUS_BIN_DIR/promtool
"$promtool" --version 2>&1 | head -1 | sed 's/^/  /'
"$promtool" check rules "$chart/files/alerts.yaml" "$work"/rendered/promtool/*.rules.yaml \
    || fail "promtool check rules"
"$promtool" test rules "$repo/hack/monitoring/alerts_test.yaml" || fail "promtool test rules (hack/monitoring/alerts_test.yaml)"

step "helm install + upgrade into the control plane"
"$py" "$here/chart_check.py" install "$chart" "$KUBECONFIG" "$ns" || fail "helm install"
secret_of() { kubectl --kubeconfig "$KUBECONFIG" -n "$ns" get secret "$1" -o "jsonpath={.data.$2}"; }
before="$(secret_of edgeway-platform appKey) $(secret_of edgeway-platform rest-token) $(secret_of edgeway-platform-tls 'tls\.crt')"
"$py" "$here/chart_check.py" upgrade "$chart" "$KUBECONFIG" "$ns" || fail "helm upgrade"
after="$(secret_of edgeway-platform appKey) $(secret_of edgeway-platform rest-token) $(secret_of edgeway-platform-tls 'tls\.crt')"
[ "$before" = "$after" ] || fail "the upgrade regenerated the platform's credentials or certificate"
echo "  generated platform app key, REST token and certificate kept across the upgrade"
[ "$(kubectl --kubeconfig "$KUBECONFIG" -n "$ns" get deploy edgeway-operator -o 'jsonpath={.spec.replicas}')" = 2 ] \
    || fail "upgrade did not apply operator.replicas=2"
k -n "$ns" get deploy,sa,svc,secret,cm,role,rolebinding -l app.kubernetes.io/instance=edgeway
k -n "$ns" get servicemonitor/edgeway-operator podmonitor/edgeway-gateways podmonitor/edgeway-platform \
    prometheusrule/edgeway configmap/edgeway-dashboard >/dev/null \
    || fail "helm install did not make the monitoring objects"
echo "  ServiceMonitor, PodMonitors (gateways, platform), PrometheusRule and dashboard ConfigMap installed"

step "RBAC of the operator's ServiceAccount (kubectl auth can-i)"
sa=system:serviceaccount:$ns:edgeway-operator
can() { # EXPECT VERB RESOURCE NS [NAME] [SUBRESOURCE]
    local got what="$3${5:+/$5}${6:+ (subresource $6)}"
    got=$(kubectl --kubeconfig "$KUBECONFIG" auth can-i --as "$sa" "$2" "$3${5:+/$5}" \
        ${4:+-n "$4"} ${6:+--subresource="$6"} 2>/dev/null || true)
    if [ "$got" = "$1" ]; then printf '  ok   %-3s %-6s %s %s\n' "$got" "$2" "$what" "${4:+in $4}"
    else printf '  FAIL %-3s %-6s %s %s (expected %s)\n' "$got" "$2" "$what" "${4:+in $4}" "$1"; rbac_bad=1; fi
}
rbac_bad=0
for v in get list watch; do can yes "$v" edgegateways.edgeway.io other; done
can yes patch edgegateways.edgeway.io other "" status
can no update edgegateways.edgeway.io other "" status
can yes update edgegateways.edgeway.io other "" finalizers
for v in get list watch create update patch; do can yes "$v" secrets other; done
for v in create patch get; do can yes "$v" configmaps other; can yes "$v" statefulsets.apps other; done
can yes create services other; can yes patch services other
can yes list pods other
can yes create events.events.k8s.io other; can yes patch events.events.k8s.io other
can yes create leases.coordination.k8s.io "$ns"
can yes patch leases.coordination.k8s.io "$ns" edgeway-operator
can no patch leases.coordination.k8s.io "$ns" someone-elses-lease
can no create leases.coordination.k8s.io other
can no delete secrets other
can no delete statefulsets.apps other
can no update edgegateways.edgeway.io other
can no create pods other
can no get nodes ""
can no list namespaces ""
can no create clusterroles.rbac.authorization.k8s.io ""
[ "$rbac_bad" = 0 ] || fail "RBAC expectations"

if [ -x "$bin_dir/edgeway-platform" ] && [ -x "$bin_dir/edgeway-operator" ]; then
    step "edgeway-platform --check on the installed platform config (the helm test pod's check)"
    pdir=$work/platform
    mkdir -p "$pdir/config" "$pdir/tls" "$pdir/secret"
    kubectl --kubeconfig "$KUBECONFIG" -n "$ns" get cm edgeway-platform -o 'jsonpath={.data.platform\.yaml}' \
        | sed "s#/etc/edgeway-platform/#$pdir/#g" >"$pdir/config/platform.yaml"
    for key in tls.crt tls.key ca.crt; do secret_of edgeway-platform-tls "${key//./\\.}" | base64 -d >"$pdir/tls/$key"; done
    for key in app-keys rest-token; do secret_of edgeway-platform "$key" | base64 -d >"$pdir/secret/$key"; done
    "$bin_dir/edgeway-platform" --config "$pdir/config/platform.yaml" --check \
        || fail "edgeway-platform --check on the chart's platform config"
    openssl verify -CAfile "$pdir/tls/ca.crt" "$pdir/tls/tls.crt" >/dev/null \
        || fail "generated platform certificate does not chain to its ca.crt"
    echo "  platform config, generated certificate and app keys load"

    step "the operator, as the chart's ServiceAccount, reconciles a gateway"
    # The 1.20 token controller makes a token Secret for the ServiceAccount.
    token=
    for _ in $(seq 60); do
        tsec=$(kubectl --kubeconfig "$KUBECONFIG" -n "$ns" get sa edgeway-operator -o 'jsonpath={.secrets[0].name}' 2>/dev/null || true)
        [ -n "$tsec" ] && token=$(secret_of "$tsec" token | base64 -d) && [ -n "$token" ] && break
        sleep 0.5
    done
    [ -n "$token" ] || fail "no token Secret for the operator's ServiceAccount"
    server=$(kubectl --kubeconfig "$KUBECONFIG" config view --minify -o 'jsonpath={.clusters[0].cluster.server}')
    ca_data=$(kubectl --kubeconfig "$KUBECONFIG" config view --raw --minify -o 'jsonpath={.clusters[0].cluster.certificate-authority-data}')
    cat >"$work/operator.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "$server", certificate-authority-data: "$ca_data"}}]
users: [{name: operator, user: {token: "$token"}}]
contexts: [{name: c, context: {cluster: c, user: operator, namespace: $ns}}]
current-context: c
EOF
    gwns=edgeway-a
    k -n "$gwns" create secret generic platform-app-key --from-literal=appKey="$(secret_of edgeway-platform appKey | base64 -d)" >/dev/null
    k -n "$gwns" create configmap platform-ca --from-file=ca.crt="$pdir/tls/ca.crt" >/dev/null
    k -n "$gwns" create configmap pump-template --from-file=pump.lua="$repo/examples/sidecar/lua/pump.lua" >/dev/null
    # The operator's args as the chart renders them (lease in the release namespace).
    KUBECONFIG=$work/operator.kubeconfig POD_NAME=chart-check POD_NAMESPACE=$ns RUST_LOG=info \
        "$bin_dir/edgeway-operator" run --leader-elect=true --lease-namespace="$ns" \
        --sidecar-image=docker.io/edgeway/edgeway:dev --metrics-addr=127.0.0.1:0 \
        >"$work/operator.log" 2>&1 &
    op_pid=$!
    k -n "$gwns" apply -f "$repo/examples/cluster/gateway.yaml" >/dev/null
    ok=0
    for _ in $(seq 90); do
        if kubectl --kubeconfig "$KUBECONFIG" -n "$gwns" get statefulset plant-a >/dev/null 2>&1 \
            && [ -n "$(kubectl --kubeconfig "$KUBECONFIG" -n "$gwns" get egw plant-a -o 'jsonpath={.status.observedGeneration}' 2>/dev/null)" ]; then
            ok=1; break
        fi
        kill -0 "$op_pid" 2>/dev/null || break
        sleep 1
    done
    k -n "$gwns" get egw,statefulset,svc,cm,secret
    k -n "$ns" get lease edgeway-operator -o 'jsonpath={.spec.holderIdentity}{"\n"}' | sed 's/^/  lease holder: /'
    if grep -qi 'forbidden\|403' "$work/operator.log"; then
        grep -i 'forbidden\|403' "$work/operator.log" | head -10 >&2
        fail "the operator hit RBAC denials with the chart's ClusterRole"
    fi
    [ "$ok" = 1 ] || { tail -30 "$work/operator.log" >&2; fail "the operator did not reconcile the gateway"; }
    k -n "$gwns" get egw plant-a -o 'jsonpath={range .status.conditions[*]}  {.type}={.status} {.reason}{"\n"}{end}'
    for obj in secret/edgeway-ca secret/edgeway-tunnel-ca secret/plant-a-server-tls secret/plant-a-client-tls secret/plant-a-basic-auth \
               configmap/plant-a-config service/plant-a service/plant-a-headless statefulset/plant-a; do
        kubectl --kubeconfig "$KUBECONFIG" -n "$gwns" get "$obj" >/dev/null 2>&1 || fail "operator did not make $obj"
    done
    kubectl --kubeconfig "$KUBECONFIG" get events.events.k8s.io -n "$gwns" >/dev/null 2>&1 || true
    echo "  operator reconciled plant-a with the chart's RBAC: no 403 in its log"
    # The installed gateway PodMonitor selects this gateway's pods and names a port they have.
    kubectl --kubeconfig "$KUBECONFIG" -n "$ns" get podmonitor edgeway-gateways -o json >"$work/podmonitor.json"
    kubectl --kubeconfig "$KUBECONFIG" -n "$gwns" get statefulset plant-a -o json >"$work/statefulset.json"
    "$py" "$here/chart_check.py" selects "$work/podmonitor.json" "$work/statefulset.json" \
        || fail "the gateway PodMonitor does not match the operator's pods"
    kill -TERM "$op_pid"; wait "$op_pid" 2>/dev/null || true; op_pid=
else
    step "SKIPPED: platform --check and the operator run (no binaries in $bin_dir; run hack/build-image.sh)"
fi

step "helm uninstall"
"$py" "$here/chart_check.py" uninstall "$KUBECONFIG" "$ns" || fail "helm uninstall"
left=$(kubectl --kubeconfig "$KUBECONFIG" -n "$ns" get deploy,svc,sa,role -l app.kubernetes.io/instance=edgeway -o name 2>/dev/null | wc -l)
[ "$left" = 0 ] || fail "$left objects left after uninstall"
echo "  release objects removed (the CRD stays, as Helm does with crds/)"
