#!/usr/bin/env python3
"""Checks Kubernetes objects against the JSON schemas of one Kubernetes version, offline.

  k8s-check.py validate VERSION < objects.json
      validates a JSON list of objects (what daas generates), strictly (no unknown fields).
  k8s-check.py chart VERSION CHART_DIR [VALUES.yaml]
      lints and renders the chart with Helm's own engine (helm-python-sdk embeds Helm v4's Go
      library; no cluster is contacted), validates every rendered object the same way, and
      prints them as a JSON list on stdout.

Runs from .daas/venv (scripts/install-deps.sh); kubernetes-validate ships the schemas.
"""
import json
import sys

import kubernetes_validate
import yaml


def validate(objects, version):
    failures = []
    for obj in objects:
        name = f"{obj.get('kind')} {obj.get('metadata', {}).get('name')}"
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except Exception as e:  # the library's errors carry the path and the reason
            failures.append(f"{name}: {e}")
    return failures


def render_chart(version, chart_dir, values_file):
    import helm_python

    values = None
    if values_file:
        with open(values_file) as f:
            values = yaml.safe_load(f)
    report = helm_python.lint(chart_dir, values, strict=True, namespace="daas", kube_version=f"v{version}")
    problems = [m for m in report.get("messages", []) if m.get("severity", 0) >= 2]
    if report.get("errors") or problems:
        sys.exit(f"helm lint: {json.dumps(report, indent=2)}")
    chart = helm_python.Chart.load(chart_dir)
    rendered = chart.render(values, name="daas", namespace="daas", is_install=True)
    objects = []
    for path in sorted(rendered):
        if not path.endswith((".yaml", ".yml")):
            continue
        for doc in yaml.safe_load_all(rendered[path]):
            if doc:
                doc.setdefault("metadata", {}).setdefault("annotations", {})
                doc["metadata"]["annotations"]["daas.io/template"] = path
                objects.append(doc)
    return objects


def main():
    command, version = sys.argv[1], sys.argv[2]
    if command == "validate":
        objects = json.load(sys.stdin)
        failures = validate(objects, version)
    elif command == "chart":
        objects = render_chart(version, sys.argv[3], sys.argv[4] if len(sys.argv) > 4 else None)
        # The marker annotation is ours, not the chart's: validate without it.
        clean = json.loads(json.dumps(objects))
        for obj in clean:
            obj["metadata"]["annotations"].pop("daas.io/template")
            if not obj["metadata"]["annotations"]:
                del obj["metadata"]["annotations"]
        failures = validate(clean, version)
        json.dump(objects, sys.stdout)
    else:
        sys.exit(f"unknown command {command}")
    if failures:
        sys.exit("\n".join(["invalid against Kubernetes " + version + ":"] + failures))
    print(f"{len(objects)} objects valid against Kubernetes {version}", file=sys.stderr)


if __name__ == "__main__":
    main()
