#!/usr/bin/env python3
"""Lint, render and check charts/edgeway (driven by hack/chart-check.sh; needs helm-python-sdk).

  chart_check.py offline CHART OUTDIR
      lint (strict), schema checks (a typo and a wrong type must be refused), render the value
      sets in CASES into OUTDIR/<case>.yaml (hooks in OUTDIR/<case>.hooks.yaml), and check the
      rendered objects (security context, operator args, RBAC has no wildcards or deletes).
  chart_check.py install CHART KUBECONFIG NAMESPACE
      a real `helm install` into the (node-less) control plane with the platform on, then an
      `helm upgrade`, checking that the generated platform credentials and certificate survive.
  chart_check.py uninstall KUBECONFIG NAMESPACE
"""

import json
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
        "metrics": {"serviceMonitor": {"enabled": True}},
        "operator": {"replicas": 2, "logLevel": "info,edgeway_operator=debug"},
    },
    "namespaced": {
        "operator": {"watchNamespaces": ["edgeway-a", "edgeway-b"], "logFormat": "text",
                     "allowedImages": ["registry.plant.example/", "docker.io/edgeway/"]},
        "platform": {"enabled": True, "appKeys": {"existingSecret": "my-keys"},
                     "rest": {"requireToken": False}},
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
]

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
    return 1 if problems else 0


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


def show(rel):
    r = rel if isinstance(rel, dict) else getattr(rel, "__dict__", {})
    info = {k: r.get(k) for k in ("name", "namespace", "version", "revision", "status") if r.get(k)}
    info.update({k: v for k, v in (r.get("info") or {}).items() if k == "status"})
    print("  release:", json.dumps(info) if info else str(rel)[:160])


def install(chart_dir, kubeconfig, namespace):
    cfg = helm.Config(kubeconfig_path=kubeconfig, namespace=namespace)
    vals = {"platform": {"enabled": True}, "image": {"tag": "dev", "pullPolicy": "Never"}}
    print(f"== helm install {RELEASE} (namespace {namespace}, platform on, no wait: no nodes)")
    rel = cfg.install(chart_dir, RELEASE, vals, namespace=namespace, timeout=120)
    show(rel)
    return cfg, vals


def upgrade(chart_dir, kubeconfig, namespace):
    cfg = helm.Config(kubeconfig_path=kubeconfig, namespace=namespace)
    vals = {"platform": {"enabled": True}, "image": {"tag": "dev", "pullPolicy": "Never"},
            "operator": {"replicas": 2}}
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
    if cmd == "uninstall":
        uninstall(sys.argv[2], sys.argv[3])
        return 0
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main())
