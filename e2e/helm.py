#!/usr/bin/env python3
"""The few `helm` commands the e2e suite runs, for machines without a helm binary.

Same arguments as the real CLI for what it supports, so the suite calls `$HELM install ...`
either way: `helm` where it exists (kind, laptops), else this script, which drives Helm v4 as a
library through PyPI's helm-python-sdk (run it with that venv's python).

  helm.py install NAME CHART -n NS [--create-namespace] [--set-json K=JSON]... [-f VALUES]...
                             [--wait] [--timeout 300s]
  helm.py upgrade NAME CHART -n NS [--set-json ...] [-f ...] [--wait] [--timeout ...]
  helm.py test NAME -n NS [--timeout 300s] [--logs]
  helm.py uninstall NAME -n NS [--wait] [--timeout 300s]
"""
import argparse
import json
import sys

import helm_python as helm
import yaml


def seconds(t: str) -> int:
    t = t.strip()
    mult = {"s": 1, "m": 60, "h": 3600}.get(t[-1:], None)
    return int(float(t[:-1]) * mult) if mult else int(t)


def merge(dst: dict, src: dict) -> dict:
    for k, v in src.items():
        if isinstance(v, dict) and isinstance(dst.get(k), dict):
            merge(dst[k], v)
        else:
            dst[k] = v
    return dst


def values(args) -> dict:
    out: dict = {}
    for f in args.values or []:
        with open(f, encoding="utf-8") as fh:
            merge(out, yaml.safe_load(fh) or {})
    for kv in args.set_json or []:
        key, _, raw = kv.partition("=")
        node = out
        parts = key.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = json.loads(raw)
    return out


def main() -> int:
    p = argparse.ArgumentParser(prog="helm.py", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("install", "upgrade"):
        s = sub.add_parser(name)
        s.add_argument("release")
        s.add_argument("chart")
        s.add_argument("--create-namespace", action="store_true")
        s.add_argument("--set-json", action="append")
        s.add_argument("-f", "--values", action="append")
    sub.add_parser("test").add_argument("release")
    sub.add_parser("uninstall").add_argument("release")
    for s in sub.choices.values():
        s.add_argument("-n", "--namespace", required=True)
        s.add_argument("--kubeconfig")
        s.add_argument("--timeout", default="300s")
        s.add_argument("--wait", action="store_true")
        s.add_argument("--logs", action="store_true")
    a = p.parse_args()
    cfg = helm.Config(kubeconfig_path=a.kubeconfig, namespace=a.namespace)
    timeout = seconds(a.timeout)
    wait = "watcher" if a.wait else None
    try:
        if a.cmd == "install":
            cfg.install(a.chart, a.release, values(a), namespace=a.namespace, timeout=timeout,
                        wait=wait, create_namespace=a.create_namespace)
        elif a.cmd == "upgrade":
            cfg.upgrade(a.chart, a.release, values(a), namespace=a.namespace, timeout=timeout,
                        wait=wait)
        elif a.cmd == "test":
            rel = cfg.test(a.release, timeout=timeout, logs=a.logs)
            print(rel)
        elif a.cmd == "uninstall":
            cfg.uninstall(a.release, timeout=timeout, wait=wait)
    except helm.HelmError as e:
        print(f"Error: helm {a.cmd} {a.release}: {e}", file=sys.stderr)
        return 1
    print(f"{a.cmd} {a.release}: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
