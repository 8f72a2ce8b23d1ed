#!/usr/bin/env python3
"""Cluster DNS records for the local e2e cluster, kept in sync with the API server.

No CoreDNS image exists on these machines, so cluster.sh runs Debian's dnsmasq on the pod
bridge and this loop writes its hosts file from the API: every Service's cluster IP as
NAME.NS.svc.DOMAIN, and for headless Services every ready endpoint (and HOSTNAME.NAME.NS.svc.DOMAIN
for StatefulSet pods). After a change it signals dnsmasq (SIGHUP re-reads the file). The same
records kube-dns/CoreDNS serve for A queries; nothing else (no SRV, no PTR).
"""
import argparse
import base64
import json
import os
import re
import signal
import ssl
import sys
import tempfile
import time
import urllib.request


def kubeconfig(path):
    """Server, CA and token from the kubeconfig apiserver.sh writes (one cluster, one user)."""
    text = open(path, encoding="utf-8").read()

    def field(name):
        m = re.search(r"^\s*" + name + r":\s*(\S+)\s*$", text, re.M)
        if not m:
            sys.exit(f"dns_sync: {path} has no {name}")
        return m.group(1)

    ctx = ssl.create_default_context(cadata=base64.b64decode(field("certificate-authority-data")).decode())
    return field("server"), ctx, field("token")


def get(server, ctx, token, path):
    req = urllib.request.Request(server + path, headers={"Authorization": "Bearer " + token})
    with urllib.request.urlopen(req, context=ctx, timeout=10) as r:
        return json.load(r)


def records(services, endpoints, domain):
    """Sorted 'IP NAME' lines."""
    out = set()
    headless = set()
    for s in services.get("items", []):
        ns, name = s["metadata"]["namespace"], s["metadata"]["name"]
        ip = s.get("spec", {}).get("clusterIP")
        fqdn = f"{name}.{ns}.svc.{domain}"
        if ip and ip != "None":
            out.add(f"{ip} {fqdn}")
        elif ip == "None":
            headless.add((ns, name))
    for e in endpoints.get("items", []):
        ns, name = e["metadata"]["namespace"], e["metadata"]["name"]
        if (ns, name) not in headless:
            continue
        for subset in e.get("subsets") or []:
            for a in subset.get("addresses") or []:
                out.add(f"{a['ip']} {name}.{ns}.svc.{domain}")
                if a.get("hostname"):
                    out.add(f"{a['ip']} {a['hostname']}.{name}.{ns}.svc.{domain}")
    return sorted(out)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--kubeconfig", required=True)
    p.add_argument("--hosts", required=True, help="dnsmasq --addn-hosts file to keep current")
    p.add_argument("--dnsmasq-pid", type=int, required=True)
    p.add_argument("--domain", default="cluster.local")
    p.add_argument("--interval", type=float, default=1.0)
    args = p.parse_args()
    server, ctx, token = kubeconfig(args.kubeconfig)
    last = None
    while True:
        try:
            lines = records(get(server, ctx, token, "/api/v1/services"),
                            get(server, ctx, token, "/api/v1/endpoints"), args.domain)
        except Exception as e:  # the API server may restart; keep the last records
            print(f"dns_sync: listing failed: {e}", flush=True)
            time.sleep(args.interval)
            continue
        if lines != last:
            fd, tmp = tempfile.mkstemp(dir=os.path.dirname(args.hosts))
            with os.fdopen(fd, "w") as f:
                f.write("".join(line + "\n" for line in lines))
            os.chmod(tmp, 0o644)
            os.replace(tmp, args.hosts)
            os.kill(args.dnsmasq_pid, signal.SIGHUP)
            print(f"dns_sync: {len(lines)} records", flush=True)
            last = lines
        time.sleep(args.interval)


if __name__ == "__main__":
    main()
