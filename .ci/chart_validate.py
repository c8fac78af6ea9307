"""Offline checks of rendered chart manifests, run by .ci/chart-check.

usage: chart_validate.py KUBE_VERSION MANIFEST...

For every manifest file (the output of one `helm template`):
- each object is validated with kubernetes-validate (strict: unknown fields are errors) against
  the given Kubernetes version; objects of CRD kinds (ServiceMonitor, cert-manager
  Certificate) have no schema there and are skipped, each one reported;
- the ConfigMap's config.yaml is loaded by kubedns.config.load(), with the overrides the
  container's own arguments add, parsed by kubedns's real command line: a value kubedns would
  reject at start fails here;
- a few chart promises are asserted (RBAC for pods only in verified mode, Service ports,
  security settings);
- the PrometheusRule's groups pass `promtool check rules` (skipped, and said so, without
  promtool) and the dashboard ConfigMap holds a Grafana dashboard that parses.
Exits 1 on any failure, listing every one.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import yaml

from kubedns import cli, config
from kubedns.webhook.cli import overrides_from

# Custom resources: their schemas come with their CRDs, not with Kubernetes.
CRD_GROUPS = {"monitoring.coreos.com", "cert-manager.io"}
CONFIG_PATH = "/etc/kubedns/config.yaml"


def main(argv: list[str]) -> int:
    version, *files = argv
    failures: list[str] = []
    for name in files:
        docs = [d for d in yaml.safe_load_all(Path(name).read_text()) if d]
        print(f"chart-check: {name}: {len(docs)} objects, Kubernetes {version}")
        if not docs:
            failures.append(f"{name}: no objects rendered")
        failures += [f"{name}: {msg}" for msg in check_objects(docs, version)]
        failures += [f"{name}: {msg}" for msg in check_kubedns(docs)]
        failures += [f"{name}: {msg}" for msg in check_monitoring(docs)]
    for failure in failures:
        print(f"chart-check: FAIL {failure}", file=sys.stderr)
    return 1 if failures else 0


def check_objects(docs: list[dict[str, Any]], version: str) -> list[str]:
    failures = []
    for doc in docs:
        what = f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
        group = doc.get("apiVersion", "").rpartition("/")[0]
        if group in CRD_GROUPS:
            print(f"chart-check:   skipped {what} ({doc['apiVersion']}: a CRD kind, no schema)")
            continue
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            failures.append(f"{what}: {'.'.join(map(str, exc.path))}: {exc.message}")
        except kubernetes_validate.SchemaNotFoundError as exc:
            failures.append(f"{what}: no schema ({exc})")
    return failures


def find(docs: list[dict[str, Any]], kind: str, component: str) -> list[dict[str, Any]]:
    return [
        d
        for d in docs
        if d["kind"] == kind
        and d["metadata"].get("labels", {}).get("app.kubernetes.io/component", "dns") == component
    ]


def check_kubedns(docs: list[dict[str, Any]]) -> list[str]:
    (configmap,) = [
        d for d in docs if d["kind"] == "ConfigMap" and "config.yaml" in d.get("data", {})
    ]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp, "config.yaml")
        path.write_text(configmap["data"]["config.yaml"])
        try:
            settings = config.load(path)
        except config.ConfigError as exc:
            return [f"kubedns rejects the ConfigMap's config.yaml: {exc}"]
        failures = []
        for deployment in find(docs, "Deployment", "dns") + find(docs, "Deployment", "webhook"):
            failures += check_args(deployment, path)
    failures += check_promises(docs, settings)
    return failures


def check_args(deployment: dict[str, Any], path: Path) -> list[str]:
    """Parse the container's args with kubedns's own parser and load the config with them."""
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    args = [a.replace(CONFIG_PATH, str(path)) for a in container["args"]]
    name = deployment["metadata"]["name"]
    try:
        parsed = cli.build_parser().parse_args(args)
    except SystemExit:
        return [f"Deployment/{name}: kubedns does not accept its args {container['args']}"]
    overrides = cli.serve_overrides(parsed) if args[0] == "serve" else overrides_from(parsed)
    if str(parsed.config) != str(path):
        return [f"Deployment/{name}: args do not read {CONFIG_PATH}"]
    try:
        config.load(parsed.config, overrides)
    except config.ConfigError as exc:
        return [f"Deployment/{name}: kubedns rejects its config with these args: {exc}"]
    return []


def check_promises(docs: list[dict[str, Any]], settings: config.Config) -> list[str]:
    failures = []
    (role,) = find(docs, "ClusterRole", "dns")
    resources = {r for rule in role["rules"] for r in rule["resources"]}
    if ("pods" in resources) != (settings.pods == "verified"):
        failures.append(f"ClusterRole: pods access {'pods' in resources}, pods={settings.pods}")
    if not {"namespaces", "services", "endpointslices"} <= resources:
        failures.append(f"ClusterRole: missing list/watch, has {sorted(resources)}")
    (service,) = find(docs, "Service", "dns")
    ports = {(p["port"], p["protocol"], p["targetPort"]) for p in service["spec"]["ports"]}
    if not {(53, "UDP", 5353), (53, "TCP", 5353), (9153, "TCP", 9153)} <= ports:
        failures.append(f"Service/{service['metadata']['name']}: ports {sorted(ports)}")
    if str(settings.listen) != "0.0.0.0:5353" or str(settings.ops.listen) != "0.0.0.0:9153":
        failures.append(f"config: listen {settings.listen}, ops.listen {settings.ops.listen}")
    for deployment in find(docs, "Deployment", "dns") + find(docs, "Deployment", "webhook"):
        pod = deployment["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        sc = container["securityContext"]
        if not (
            pod["securityContext"].get("runAsUser") == 65532
            and pod["securityContext"].get("runAsNonRoot")
            and sc.get("readOnlyRootFilesystem")
            and sc.get("allowPrivilegeEscalation") is False
            and sc.get("capabilities", {}).get("drop") == ["ALL"]
        ):
            failures.append(f"Deployment/{deployment['metadata']['name']}: security settings")
    (dns,) = find(docs, "Deployment", "dns")
    pod = dns["spec"]["template"]["spec"]
    if pod["dnsPolicy"] != "Default":
        failures.append("Deployment: dnsPolicy must be Default")
    if pod["terminationGracePeriodSeconds"] <= settings.ops.lame_duck:
        failures.append("Deployment: terminationGracePeriodSeconds not above ops.lame_duck")
    return failures


def check_monitoring(docs: list[dict[str, Any]]) -> list[str]:
    """The PrometheusRule as promtool reads rule files, the dashboard as Grafana reads JSON."""
    failures = []
    for rule in [d for d in docs if d["kind"] == "PrometheusRule"]:
        failures += check_rules(rule)
    for configmap in [d for d in docs if d["kind"] == "ConfigMap"]:
        for key, text in configmap.get("data", {}).items():
            if not key.endswith(".json"):
                continue
            try:
                dashboard = json.loads(text)
            except ValueError as exc:
                failures.append(f"ConfigMap/{configmap['metadata']['name']}: {key}: {exc}")
                continue
            if not dashboard.get("uid") or not dashboard.get("panels"):
                failures.append(f"ConfigMap/{configmap['metadata']['name']}: {key}: no dashboard")
    return failures


def check_rules(rule: dict[str, Any]) -> list[str]:
    promtool = shutil.which("promtool")
    what = f"PrometheusRule/{rule['metadata']['name']}"
    if promtool is None:
        print(f"chart-check:   skipped promtool check of {what} (apt-get install prometheus)")
        return []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp, "rules.yaml")
        path.write_text(yaml.safe_dump(rule["spec"]))
        result = subprocess.run(
            [promtool, "check", "rules", str(path)], capture_output=True, text=True, check=False
        )
    if result.returncode != 0:
        return [f"{what}: promtool check rules: {result.stdout}{result.stderr}"]
    print(f"chart-check:   {what}: promtool check rules: {result.stdout.strip().splitlines()[-1]}")
    return []


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
