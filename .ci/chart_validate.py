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
import re
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
# What the API server would allocate to a rendered Service that names no clusterIP.
ALLOCATED_IP = "10.96.0.10"
VARIABLE = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


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
    (configmap,) = find(docs, "ConfigMap", "dns")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp, "config.yaml")
        path.write_text(configmap["data"]["config.yaml"])
        try:
            settings = config.load(path)
        except config.ConfigError as exc:
            return [f"kubedns rejects the ConfigMap's config.yaml: {exc}"]
        failures = []
        for deployment in find(docs, "Deployment", "dns") + find(docs, "Deployment", "webhook"):
            env = service_variables(docs, deployment["metadata"]["namespace"])
            failures += check_args(deployment, path, env)
    failures += check_promises(docs, settings)
    failures += check_webhook_ca(docs)
    return failures


def check_webhook_ca(docs: list[dict[str, Any]]) -> list[str]:
    """The API server gets the CA exactly one way, and the one the chart serves with."""
    failures = []
    for mwc in (d for d in docs if d["kind"] == "MutatingWebhookConfiguration"):
        injected = "cert-manager.io/inject-ca-from" in mwc["metadata"].get("annotations", {})
        for hook in mwc["webhooks"]:
            bundle = hook["clientConfig"].get("caBundle")
            if injected == bool(bundle):
                failures.append(
                    f"webhook {hook['name']}: caBundle {bool(bundle)}, inject {injected}"
                )
            (deployment,) = find(docs, "Deployment", "webhook")
            volumes = deployment["spec"]["template"]["spec"]["volumes"]
            (secret_name,) = [v["secret"]["secretName"] for v in volumes if "secret" in v]
            secrets = [
                d for d in docs if d["kind"] == "Secret" and d["metadata"]["name"] == secret_name
            ]
            if secrets and secrets[0]["data"].get("ca.crt") != bundle:
                failures.append(f"webhook {hook['name']}: caBundle is not ca.crt of {secret_name}")
            certificates = [
                d
                for d in docs
                if d["kind"] == "Certificate" and d["spec"]["secretName"] == secret_name
            ]
            if injected and [
                f"{c['metadata']['namespace']}/{c['metadata']['name']}" for c in certificates
            ] != [mwc["metadata"]["annotations"]["cert-manager.io/inject-ca-from"]]:
                failures.append(f"webhook {hook['name']}: inject-ca-from is not the Certificate")
            if not (secrets or certificates or bundle):
                failures.append(f"webhook {hook['name']}: nothing provides Secret {secret_name}")
    return failures


def service_variables(docs: list[dict[str, Any]], namespace: str) -> dict[str, str]:
    """``<NAME>_SERVICE_HOST`` of the rendered Services of one namespace, as the kubelet sets
    them in a container; a Service with no clusterIP yet gets one, as the API server would."""
    return {
        d["metadata"]["name"].upper().replace("-", "_") + "_SERVICE_HOST": d["spec"].get(
            "clusterIP", ALLOCATED_IP
        )
        for d in docs
        if d["kind"] == "Service" and d["metadata"].get("namespace") == namespace
    }


def expand(arg: str, env: dict[str, str]) -> str:
    """The kubelet's ``$(VAR)`` expansion of container args; unknown names raise KeyError."""
    return VARIABLE.sub(lambda m: "$" if m[0] == "$$" else env[m[1]], arg)


def check_args(
    deployment: dict[str, Any], path: Path, env: dict[str, str] | None = None
) -> list[str]:
    """Parse the container's args with kubedns's own parser and load the config with them."""
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    name = deployment["metadata"]["name"]
    try:
        args = [expand(a, env or {}).replace(CONFIG_PATH, str(path)) for a in container["args"]]
    except KeyError as exc:
        return [f"Deployment/{name}: args use $({exc.args[0]}), which no rendered Service sets"]
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
    if not {(53, "UDP", "dns"), (53, "TCP", "dns-tcp"), (9153, "TCP", "metrics")} <= ports:
        failures.append(f"Service/{service['metadata']['name']}: ports {sorted(ports)}")
    (dns,) = find(docs, "Deployment", "dns")
    (container,) = dns["spec"]["template"]["spec"]["containers"]
    named = {(p["name"], p["protocol"]): p["containerPort"] for p in container["ports"]}
    # The Service's named targetPorts must reach what kubedns listens on.
    if {named.get(("dns", "UDP")), named.get(("dns-tcp", "TCP"))} != {settings.listen.port}:
        failures.append(f"Deployment: dns ports {named}, config listen {settings.listen}")
    if named.get(("metrics", "TCP")) != 9153 or str(settings.ops.listen) != "0.0.0.0:9153":
        failures.append(f"Deployment: metrics port {named}, ops.listen {settings.ops.listen}")
    if str(settings.listen.host) != "0.0.0.0":
        failures.append(f"config: listen {settings.listen} is not on every address")
    labels = dns["spec"]["template"]["metadata"]["labels"]
    if any(labels.get(k) != v for k, v in service["spec"]["selector"].items()):
        failures.append(f"Service selector {service['spec']['selector']} misses pods {labels}")
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
            and set(sc.get("capabilities", {}).get("add", [])) <= {"NET_BIND_SERVICE"}
        ):
            failures.append(f"Deployment/{deployment['metadata']['name']}: security settings")
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
