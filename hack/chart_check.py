#!/usr/bin/env python3
"""Lint, render and check charts/edgeway (driven by hack/chart-check.sh; needs helm-python-sdk).

  chart_check.py offline CHART OUTDIR
      lint (strict), schema checks (a typo and a wrong type must be refused), render the value
      sets in CASES into OUTDIR/<case>.yaml (hooks in OUTDIR/<case>.hooks.yaml), and check the
      rendered objects (security context, operator args, RBAC has no wildcards or deletes, the
      monitoring objects). Writes rule files for promtool into OUTDIR/promtool/: each rendered
      PrometheusRule's groups, and every dashboard query as a recording rule.
  chart_check.py install CHART KUBECONFIG NAMESPACE
      a real `helm install` into the (node-less) control plane with the platform on, then an
      `helm upgrade`, checking that the generated platform credentials and certificate survive.
  chart_check.py unpruned RENDERED.yaml APPLIED.json
      counts the objects a server-side (dry-run) apply accepted (`kubectl ... -o json`), and
      checks that the monitoring objects of RENDERED.yaml came back with every field they were
      sent with: the stand-in CRDs (hack/monitoring/crds.yaml) prune what they do not know, so
      a misspelt field shows here.
  chart_check.py selects PODMONITOR.json STATEFULSET.json
      the installed gateway PodMonitor selects the pods of a StatefulSet the operator made and
      names a port they have.
  chart_check.py uninstall KUBECONFIG NAMESPACE
"""

import json
import os
import sys

import yaml

import helm_python as helm

RELEASE = "edgeway"
NAMESPACE = "edgeway"
CASES = {
    "default": {},
    "full": {
        "platform": {"enabled": True},
        "networkPolicy": {"enabled": True, "apiServerCidrs": ["10.0.0.1/32"]},
        "metrics": {"serviceMonitor": {"enabled": True}, "podMonitor": {"enabled": True},
                    "prometheusRule": {"enabled": True, "additionalRuleLabels": {"team": "ot"},
                                       "runbookBaseUrl": "https://wiki.plant.example/edgeway"},
                    "dashboard": {"enabled": True, "namespace": "monitoring",
                                  "annotations": {"grafana_folder": "Edgeway"}}},
        "operator": {"replicas": 2, "logLevel": "info,edgeway_operator=debug"},
    },
    "namespaced": {
        "operator": {"watchNamespaces": ["edgeway-a", "edgeway-b"], "logFormat": "text",
                     "allowedImages": ["registry.plant.example/", "docker.io/edgeway/"]},
        "platform": {"enabled": True, "appKeys": {"existingSecret": "my-keys"},
                     "rest": {"requireToken": False}},
        "metrics": {"podMonitor": {"enabled": True}, "prometheusRule": {"enabled": True}},
    },
    "no-leader-election": {
        "operator": {"leaderElection": {"enabled": False}, "sidecarImage": "example.org/sc:1"},
        "image": {"digest": "sha256:" + "0" * 64},
        "tests": {"enabled": False},
    },
}
BAD_VALUES = [
    ({"operator": {"replicaz": 2}}, "unknown key"),
    ({"operator": {"replicas": "two"}}, "wrong type"),
    ({"image": {"pullPolicy": "Sometimes"}}, "bad enum"),
    ({"platform": {"bindPolicy": "anyoneWins"}}, "bad enum"),
    ({"operator": {"allowedImages": [""]}}, "empty image prefix"),
    ({"metrics": {"podMonitor": {"enable": True}}}, "unknown key"),
    ({"metrics": {"dashboard": {"labels": {"grafana_dashboard": 1}}}}, "label not a string"),
]
# The labels the operator puts on every gateway pod (operator/src/resources/mod.rs; the chart
# check's operator run compares them with a real StatefulSet's pod template).
GATEWAY_POD_LABELS = {"app.kubernetes.io/name": "edgeway-gateway",
                      "app.kubernetes.io/managed-by": "edgeway-operator"}

problems = []


def problem(msg):
    problems.append(msg)
    print("  PROBLEM:", msg)


def docs(text):
    return [d for d in yaml.safe_load_all(text) if d]


def offline(chart_dir, outdir):
    print("== helm lint (strict)")
    report = helm.lint(chart_dir, strict=True)
    for m in report.get("messages", []):
        print(f"  [{['unknown', 'info', 'warning', 'error'][m['severity']]}] {m['path']}: {m['error']}")
    for e in report.get("errors", []):
        problem(f"lint: {e}")
    for case, vals in CASES.items():
        r = helm.lint(chart_dir, vals, strict=True, namespace=NAMESPACE)
        for e in r.get("errors", []):
            problem(f"lint ({case}): {e}")
    print(f"  lint: {len(report.get('errors', []))} errors")

    chart = helm.Chart.load(chart_dir)
    print("== values schema refuses bad values")
    for vals, why in BAD_VALUES:
        try:
            chart.validate_schema(vals)
            problem(f"schema accepted {json.dumps(vals)} ({why})")
        except helm.HelmError as e:
            print(f"  refused ({why}): {' '.join(str(e).split())[:150]}")
    crds = [c for c in chart.crds] if hasattr(chart, "crds") else []
    print(f"== chart CRDs: {len(crds)}")

    with open(f"{chart_dir}/files/alerts.yaml") as f, open(f"{chart_dir}/files/dashboard.json") as g:
        shipped = {"alerts": yaml.safe_load(f), "dashboard": json.load(g)}
    for case, vals in CASES.items():
        print(f"== render {case}: {json.dumps(vals)}")
        out = chart.render(vals, name=RELEASE, namespace=NAMESPACE, is_install=True)
        manifests, hooks = [], []
        for path, text in sorted(out.items()):
            if path.endswith("NOTES.txt") or not text.strip():
                continue
            for d in docs(text):
                ann = (d.get("metadata") or {}).get("annotations") or {}
                (hooks if "helm.sh/hook" in ann else manifests).append(d)
        with open(f"{outdir}/{case}.yaml", "w") as f:
            yaml.safe_dump_all(manifests, f, sort_keys=False)
        with open(f"{outdir}/{case}.hooks.yaml", "w") as f:
            yaml.safe_dump_all(hooks, f, sort_keys=False)
        notes = out.get(f"{chart.name}/templates/NOTES.txt", "")
        if "kubectl get egw" not in notes:
            problem(f"{case}: NOTES.txt does not say `kubectl get egw`")
        print("  " + ", ".join(f"{d['kind']}/{d['metadata']['name']}" for d in manifests + hooks))
        check_objects(case, vals, manifests + hooks)
        check_monitoring(shipped, case, vals, manifests, f"{outdir}/promtool")
    check_dashboard(shipped["dashboard"], f"{outdir}/promtool/dashboard.rules.yaml")
    return 1 if problems else 0


def check_monitoring(shipped, case, vals, objs, promdir):
    """The PodMonitors, PrometheusRule and dashboard ConfigMap a value set asks for (`shipped`:
    the chart's alert file and dashboard, read once)."""
    os.makedirs(promdir, exist_ok=True)
    m = vals.get("metrics") or {}
    on = {k: (m.get(k) or {}).get("enabled", False)
          for k in ("serviceMonitor", "podMonitor", "prometheusRule", "dashboard")}
    by_kind = {}
    for o in objs:
        by_kind.setdefault(o["kind"], []).append(o)
    platform = (vals.get("platform") or {}).get("enabled", False)
    want = {"ServiceMonitor": int(on["serviceMonitor"]),
            "PodMonitor": (1 + int(platform)) if on["podMonitor"] else 0,
            "PrometheusRule": int(on["prometheusRule"])}
    for kind, n in want.items():
        if len(by_kind.get(kind, [])) != n:
            problem(f"{case}: {n} {kind} expected, got {len(by_kind.get(kind, []))}")
    for sm in by_kind.get("ServiceMonitor", []):
        if not all(e.get("honorLabels") for e in sm["spec"]["endpoints"]):
            problem(f"{case}: the operator's ServiceMonitor must honour the metrics' namespace label")
    watch = (vals.get("operator") or {}).get("watchNamespaces", [])
    for pm in by_kind.get("PodMonitor", []):
        spec = pm["spec"]
        ep = spec["podMetricsEndpoints"]
        if [e["port"] for e in ep] != ["admin"] or ep[0]["path"] != "/metrics":
            problem(f"{case}: PodMonitor/{pm['metadata']['name']} endpoints {ep}")
        if pm["metadata"]["name"].endswith("-gateways"):
            if spec["selector"]["matchLabels"] != GATEWAY_POD_LABELS:
                problem(f"{case}: gateway PodMonitor selects {spec['selector']}")
            ns_sel = {"matchNames": watch} if watch else {"any": True}
            if spec["namespaceSelector"] != ns_sel:
                problem(f"{case}: gateway PodMonitor namespaces {spec['namespaceSelector']}, want {ns_sel}")
            targets = {r.get("targetLabel") for r in ep[0].get("relabelings", [])}
            if not {"gateway", "shard"} <= targets:
                problem(f"{case}: gateway PodMonitor does not set gateway and shard: {targets}")
    source = shipped["alerts"]
    pr_vals = m.get("prometheusRule") or {}
    for pr in by_kind.get("PrometheusRule", []):
        groups = pr["spec"]["groups"]
        extra = pr_vals.get("additionalRuleLabels") or {}
        base = pr_vals.get("runbookBaseUrl")
        expect = []
        for g in source["groups"]:
            rules = []
            for r in g["rules"]:
                r = json.loads(json.dumps(r))
                r["labels"] = {**r.get("labels", {}), **extra}
                if base:
                    r["annotations"]["runbook_url"] = f"{base}#{r['alert'].lower()}"
                rules.append(r)
            expect.append({"name": g["name"], "rules": rules})
        if groups != expect:
            problem(f"{case}: the PrometheusRule's groups are not files/alerts.yaml's with the values applied")
        with open(f"{promdir}/{case}.rules.yaml", "w") as f:
            yaml.safe_dump({"groups": groups}, f, sort_keys=False)
    dashboards = [o for o in by_kind.get("ConfigMap", []) if o["metadata"]["name"].endswith("-dashboard")]
    if len(dashboards) != int(on["dashboard"]):
        problem(f"{case}: {len(dashboards)} dashboard ConfigMaps")
    d_vals = m.get("dashboard") or {}
    for cm in dashboards:
        meta = cm["metadata"]
        if meta["labels"].get("grafana_dashboard") != "1":
            problem(f"{case}: dashboard ConfigMap lacks the grafana_dashboard label: {meta['labels']}")
        if meta["namespace"] != (d_vals.get("namespace") or NAMESPACE):
            problem(f"{case}: dashboard ConfigMap in {meta['namespace']}")
        if (meta.get("annotations") or {}) != (d_vals.get("annotations") or {}):
            problem(f"{case}: dashboard ConfigMap annotations {meta.get('annotations')}")
        if json.loads(cm["data"]["edgeway.json"]) != shipped["dashboard"]:
            problem(f"{case}: the ConfigMap's dashboard is not files/dashboard.json")


# What Grafana puts in for its variables, so promtool can parse each query.
GRAFANA_VARS = {"$__rate_interval": "5m", "$__range": "6h", "$__interval": "30s",
                "$namespace": ".*", "$gateway": ".*"}


def check_dashboard(dash, rules_out):
    """The dashboard's structure; its queries become recording rules for `promtool check`."""
    panels = [p for p in dash["panels"] if p["type"] != "row"]
    ids = [p["id"] for p in dash["panels"]]
    if len(set(ids)) != len(ids):
        problem(f"dashboard: panel ids repeat: {ids}")
    if dash.get("uid") != "edgeway-fleet" or not dash.get("title"):
        problem("dashboard: uid/title")
    names = {v["name"] for v in dash["templating"]["list"]}
    for p in panels:
        if p["datasource"] != {"type": "prometheus", "uid": "${datasource}"}:
            problem(f"dashboard: panel {p['title']!r} does not use the datasource variable")
        g = p["gridPos"]
        if g["x"] + g["w"] > 24:
            problem(f"dashboard: panel {p['title']!r} is wider than the grid")
        if not p["targets"]:
            problem(f"dashboard: panel {p['title']!r} has no query")
    exprs = [(p["title"], t["expr"]) for p in panels for t in p["targets"]]
    exprs += [(f"variable {v['name']}", v["query"]["query"]) for v in dash["templating"]["list"]
              if v["type"] == "query"]
    rules = []
    for i, (title, expr) in enumerate(exprs):
        if title.startswith("variable "):
            # label_values(METRIC, LABEL) is Grafana's, not PromQL: check its series selector.
            inner = expr[len("label_values("):].rsplit(",", 1)[0]
            expr = f"count by ({expr.rsplit(',', 1)[1].strip(' )')}) ({inner})"
        for var, val in GRAFANA_VARS.items():
            expr = expr.replace(var, val)
        if "$" in expr:
            problem(f"dashboard: {title}: an unknown variable in {expr}")
        for v in ("namespace", "gateway"):
            if f"${v}" in expr and v not in names:
                problem(f"dashboard: {title} uses ${v}, which is not a variable")
        rules.append({"record": f"edgeway:dashboard_query_{i}", "expr": expr})
    with open(rules_out, "w") as f:
        yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}, f, sort_keys=False)
    print(f"  dashboard: {len(panels)} panels, {len(exprs)} queries written for promtool")


def check_objects(case, vals, objs):
    image_digest = (vals.get("image") or {}).get("digest")
    replicas = (vals.get("operator") or {}).get("replicas", 1)
    budgets = [o for o in objs if o["kind"] == "PodDisruptionBudget"]
    if (replicas > 1) != bool(budgets):
        problem(f"{case}: {replicas} operator replica(s) but {len(budgets)} PodDisruptionBudget(s)")
    for o in objs:
        kind, name = o["kind"], o["metadata"]["name"]
        labels = o["metadata"].get("labels") or {}
        for k in ("app.kubernetes.io/name", "app.kubernetes.io/instance",
                  "app.kubernetes.io/managed-by", "helm.sh/chart"):
            if k not in labels:
                problem(f"{case}: {kind}/{name} lacks label {k}")
        pod = None
        if kind == "Deployment":
            pod = o["spec"]["template"]["spec"]
        elif kind == "Pod":
            pod = o["spec"]
        if pod is not None:
            psc = pod.get("securityContext") or {}
            if not (psc.get("runAsNonRoot") and psc.get("runAsUser") == 65532
                    and (psc.get("seccompProfile") or {}).get("type") == "RuntimeDefault"):
                problem(f"{case}: {kind}/{name}: pod securityContext not restricted")
            for c in pod["containers"]:
                sc = c.get("securityContext") or {}
                ok = (sc.get("readOnlyRootFilesystem") is True
                      and sc.get("allowPrivilegeEscalation") is False
                      and (sc.get("capabilities") or {}).get("drop") == ["ALL"])
                if not ok:
                    problem(f"{case}: {kind}/{name}/{c['name']}: container securityContext")
                if image_digest and not c["image"].endswith(image_digest):
                    problem(f"{case}: {kind}/{name}/{c['name']}: image {c['image']} not by digest")
        if kind == "Deployment" and name.endswith("-operator"):
            c = pod["containers"][0]
            args = c["args"]
            le = (vals.get("operator") or {}).get("leaderElection", {}).get("enabled", True)
            want = [f"--leader-elect={'true' if le else 'false'}"]
            if le:
                want += [f"--lease-namespace={NAMESPACE}"]
            sidecar = (vals.get("operator") or {}).get("sidecarImage") or c["image"]
            want += [f"--sidecar-image={sidecar}"]
            want += [f"--namespace={n}" for n in
                     (vals.get("operator") or {}).get("watchNamespaces", [])]
            want += [f"--allowed-image={p}" for p in
                     (vals.get("operator") or {}).get("allowedImages", [])]
            for w in want:
                if w not in args:
                    problem(f"{case}: operator args lack {w}: {args}")
            if c["command"] != ["/usr/local/bin/edgeway-operator"] or args[0] != "run":
                problem(f"{case}: operator command/args: {c['command']} {args}")
            env = {e["name"] for e in c.get("env", [])}
            if not {"POD_NAME", "POD_NAMESPACE"} <= env:
                problem(f"{case}: operator env lacks POD_NAME/POD_NAMESPACE")
            if c["livenessProbe"]["httpGet"]["path"] != "/healthz" or \
                    c["readinessProbe"]["httpGet"]["path"] != "/readyz":
                problem(f"{case}: operator probes")
        if kind == "PodDisruptionBudget" and name.endswith("-operator"):
            sel = o["spec"]["selector"]["matchLabels"]
            if sel.get("app.kubernetes.io/component") != "operator":
                problem(f"{case}: {kind}/{name} does not select the operator: {sel}")
        if kind in ("ClusterRole", "Role"):
            for rule in o.get("rules", []):
                if "*" in rule.get("verbs", []) or "*" in rule.get("resources", []):
                    problem(f"{case}: {kind}/{name} has a wildcard: {rule}")
                if {"delete", "deletecollection", "escalate", "bind", "impersonate"} & \
                        set(rule.get("verbs", [])):
                    problem(f"{case}: {kind}/{name} has a verb the operator never uses: {rule}")


MONITORING_KINDS = ("ServiceMonitor", "PodMonitor", "PrometheusRule")
MONITORING_ON = {k: {"enabled": True}
                 for k in ("serviceMonitor", "podMonitor", "prometheusRule", "dashboard")}


def unpruned(rendered, applied):
    with open(rendered) as f:
        sent = [d for d in yaml.safe_load_all(f) if d and d["kind"] in MONITORING_KINDS]
    with open(applied) as f:
        got = json.load(f)
    items = got["items"] if got.get("kind") == "List" else [got]
    print(f"  {len(items)} objects accepted")
    back = {(o["kind"], o["metadata"]["name"]): o for o in items}
    for o in sent:
        key = (o["kind"], o["metadata"]["name"])
        if key not in back:
            problem(f"{key} was not applied")
        elif back[key]["spec"] != o["spec"]:
            problem(f"{key}: the API server's copy differs (a field the schema does not know?):\n"
                    f"    sent {json.dumps(o['spec'], sort_keys=True)[:600]}\n"
                    f"    kept {json.dumps(back[key]['spec'], sort_keys=True)[:600]}")
    if sent:
        print(f"  {len(sent)} monitoring objects kept every field")
    return 1 if problems else 0


def selects(pod_monitor, statefulset):
    with open(pod_monitor) as f:
        pm = json.load(f)
    with open(statefulset) as f:
        pod = json.load(f)["spec"]["template"]
    want = pm["spec"]["selector"]["matchLabels"]
    labels = pod["metadata"]["labels"]
    ports = {p.get("name") for c in pod["spec"]["containers"] for p in c.get("ports", [])}
    port = pm["spec"]["podMetricsEndpoints"][0]["port"]
    print(f"  PodMonitor selects {want}: pod labels {labels}; port {port!r} in {sorted(ports)}")
    if any(labels.get(k) != v for k, v in want.items()):
        problem("the PodMonitor's selector does not match the pods")
    if port not in ports:
        problem(f"the pods have no port {port!r}")
    if "app.kubernetes.io/instance" not in labels:
        problem("the pods lack app.kubernetes.io/instance, the PodMonitor's gateway label")
    return 1 if problems else 0


def show(rel):
    r = rel if isinstance(rel, dict) else getattr(rel, "__dict__", {})
    info = {k: r.get(k) for k in ("name", "namespace", "version", "revision", "status") if r.get(k)}
    info.update({k: v for k, v in (r.get("info") or {}).items() if k == "status"})
    print("  release:", json.dumps(info) if info else str(rel)[:160])


def install(chart_dir, kubeconfig, namespace):
    cfg = helm.Config(kubeconfig_path=kubeconfig, namespace=namespace)
    vals = {"platform": {"enabled": True}, "image": {"tag": "dev", "pullPolicy": "Never"},
            "metrics": MONITORING_ON}
    print(f"== helm install {RELEASE} (namespace {namespace}, platform and monitoring on, no wait: no nodes)")
    rel = cfg.install(chart_dir, RELEASE, vals, namespace=namespace, timeout=120)
    show(rel)
    return cfg, vals


def upgrade(chart_dir, kubeconfig, namespace):
    cfg = helm.Config(kubeconfig_path=kubeconfig, namespace=namespace)
    vals = {"platform": {"enabled": True}, "image": {"tag": "dev", "pullPolicy": "Never"},
            "operator": {"replicas": 2}, "metrics": MONITORING_ON}
    print(f"== helm upgrade {RELEASE} (operator.replicas=2)")
    rel = cfg.upgrade(chart_dir, RELEASE, vals, namespace=namespace, timeout=120)
    show(rel)


def uninstall(kubeconfig, namespace):
    cfg = helm.Config(kubeconfig_path=kubeconfig, namespace=namespace)
    print(f"== helm uninstall {RELEASE}")
    cfg.uninstall(RELEASE)


def main():
    cmd = sys.argv[1]
    if cmd == "offline":
        return offline(sys.argv[2], sys.argv[3])
    if cmd == "install":
        install(sys.argv[2], sys.argv[3], sys.argv[4])
        return 0
    if cmd == "upgrade":
        upgrade(sys.argv[2], sys.argv[3], sys.argv[4])
        return 0
    if cmd == "selects":
        return selects(sys.argv[2], sys.argv[3])
    if cmd == "unpruned":
        return unpruned(sys.argv[2], sys.argv[3])
    if cmd == "uninstall":
        uninstall(sys.argv[2], sys.argv[3])
        return 0
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main())
