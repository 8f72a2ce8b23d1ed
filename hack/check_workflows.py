#!/usr/bin/env python3
"""Checks what can be checked here of .github/workflows (no docker on these machines): each
file parses as YAML, names jobs with steps, and every `bash <script> <flags>` it runs names a
script in the repository that accepts those flags (the script's usage line mentions each)."""
import pathlib
import re
import sys

import yaml

root = pathlib.Path(__file__).resolve().parent.parent
problems = []
files = sorted((root / ".github" / "workflows").glob("*.y*ml"))
if not files:
    problems.append("no workflow in .github/workflows")
for wf in files:
    doc = yaml.safe_load(wf.read_text())
    jobs = doc.get("jobs") if isinstance(doc, dict) else None
    if not jobs:
        problems.append(f"{wf.name}: no jobs")
        continue
    for name, job in jobs.items():
        for step in job.get("steps") or []:
            for line in str(step.get("run", "")).splitlines():
                m = re.match(r"\s*bash\s+(\S+)(.*)", line)
                if not m:
                    continue
                script = root / m.group(1)
                if not script.is_file():
                    problems.append(f"{wf.name} {name}: {m.group(1)} does not exist")
                    continue
                text = script.read_text()
                for flag, value in re.findall(r"(--[a-z-]+)(?:\s+([a-z0-9.-]+))?", m.group(2)):
                    usage = [l for l in text.splitlines() if flag in l]
                    if not usage:
                        problems.append(f"{wf.name} {name}: {m.group(1)} takes no {flag}")
                    elif value and not any(value in l for l in usage):
                        problems.append(f"{wf.name} {name}: {m.group(1)} {flag} has no value {value}")
for p in problems:
    print(p, file=sys.stderr)
sys.exit(1 if problems else 0)
