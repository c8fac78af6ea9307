"""A client-side stand-in for a cluster, so the chart README's install and rollback steps can
run as written: `python -m tests.chart.fakecluster kubectl|helm ARGS...` (the tests put
`kubectl` and `helm` wrappers on PATH that call it).

The cluster's objects are YAML files in $FAKECLUSTER_DIR/objects. Every change goes through
the real binaries: kubectl's client-side commands (`annotate`, `label` and `patch` with
`--local -f FILE -o yaml`; `scale` becomes a client-side patch of spec.replicas, as kubectl
scale has no --local) and `helm template` for what `helm install|upgrade` would send. What the
API server and Helm would add is emulated in the few places the steps depend on: Helm refuses
to take over an object without its ownership metadata, keeps `helm.sh/resource-policy: keep`
objects on uninstall, and a Service's clusterIP cannot change. After each command the whole
state is appended to $FAKECLUSTER_DIR/log.jsonl with $KUBEDNS_STEP, for the test to check.

Anything else is refused (exit 2), so a README command this fake does not know fails the test
instead of being skipped.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from tests.chart.tools import KUBE_VERSION, Obj

KINDS = {
    "service": "Service",
    "services": "Service",
    "svc": "Service",
    "deployment": "Deployment",
    "deployments": "Deployment",
    "deploy": "Deployment",
}
KEEP = "helm.sh/resource-policy"


class RefusedError(Exception):
    """What the real command would refuse, with its message."""


class UnsupportedError(Exception):
    """A command this fake does not emulate."""


def state_dir() -> Path:
    return Path(os.environ["FAKECLUSTER_DIR"])


def key(obj: Obj) -> str:
    meta = obj["metadata"]
    return f"{obj['kind']}.{meta.get('namespace', 'default')}.{meta['name']}"


def path_of(kind: str, namespace: str, name: str, root: Path | None = None) -> Path:
    return (root or state_dir()) / "objects" / f"{kind}.{namespace}.{name}.yaml"


def load(path: Path) -> Obj:
    loaded: Obj = yaml.safe_load(path.read_text())
    return loaded


def store(obj: Obj, root: Path | None = None) -> None:
    """Write an object into the cluster at root (default: $FAKECLUSTER_DIR)."""
    meta = obj["metadata"]
    path = path_of(obj["kind"], meta.get("namespace", "default"), meta["name"], root)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(obj))


def objects() -> list[Obj]:
    return [load(p) for p in sorted((state_dir() / "objects").glob("*.yaml"))]


def record(argv: list[str]) -> None:
    entry = {"step": os.environ.get("KUBEDNS_STEP", ""), "argv": argv, "objects": objects()}
    with (state_dir() / "log.jsonl").open("a") as log:
        log.write(json.dumps(entry) + "\n")


def take(args: list[str], *flags: str) -> str | None:
    """Remove `--flag value` or `--flag=value` from args; return the value."""
    for i, arg in enumerate(args):
        for flag in flags:
            if arg == flag:
                value = args[i + 1]
                del args[i : i + 2]
                return value
            if arg.startswith(flag + "="):
                del args[i]
                return arg.split("=", 1)[1]
    return None


def run_real(argv: list[str]) -> str:
    out = subprocess.run(argv, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RefusedError(f"{' '.join(argv)}: {out.stderr.strip()}")
    return out.stdout


# kubectl ---------------------------------------------------------------------------------


def kubectl(args: list[str]) -> str:
    namespace = take(args, "-n", "--namespace") or "default"
    verb, *rest = args
    if verb == "rollout" and rest[:1] == ["status"]:
        word, _, name = rest[1].partition("/")
        if KINDS.get(word) != "Deployment":
            raise UnsupportedError(f"kubectl rollout status {rest[1]}")
        if not path_of("Deployment", namespace, name).exists():
            raise RefusedError(f'deployments.apps "{name}" not found')
        return f'deployment "{name}" successfully rolled out (client-side: no pods to wait for)\n'
    kind_word, name, *rest = rest
    kind = KINDS.get(kind_word)
    if kind is None:
        raise UnsupportedError(f"kubectl {verb} {kind_word}")
    path = path_of(kind, namespace, name)
    if not path.exists():
        raise RefusedError(f'{kind_word} "{name}" not found')
    real = os.environ["FAKECLUSTER_KUBECTL"]
    local = ["--local", "-f", str(path)]
    if verb == "get":
        output = take(rest, "-o", "--output")
        if rest or not output or not output.startswith("jsonpath="):
            raise UnsupportedError(f"kubectl get {' '.join(rest)} -o {output}")
        # A no-op client-side patch prints the object through the same printer as get.
        return run_real([real, "patch", *local, "--type", "merge", "-p", "{}", "-o", output])
    if verb in ("annotate", "label", "patch"):
        changed = run_real([real, verb, *local, *rest, "-o", "yaml"])
    elif verb == "scale":
        count = take(rest, "--replicas")
        if rest or count is None:
            raise UnsupportedError(f"kubectl scale {' '.join(rest)}")
        patch = json.dumps({"spec": {"replicas": int(count)}})
        changed = run_real([real, "patch", *local, "--type", "merge", "-p", patch, "-o", "yaml"])
    else:
        raise UnsupportedError(f"kubectl {verb}")
    store(yaml.safe_load(changed))
    return f"{kind_word}/{name} {verb}d (client-side)\n"


# helm ------------------------------------------------------------------------------------


def releases() -> dict[str, Any]:
    path = state_dir() / "releases.json"
    loaded: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    return loaded


def save_releases(data: dict[str, Any]) -> None:
    (state_dir() / "releases.json").write_text(json.dumps(data))


def template(name: str, namespace: str, chart_args: list[str]) -> list[Obj]:
    out = run_real(
        [
            *(os.environ["FAKECLUSTER_HELM"], "template", name, *chart_args),
            *("--namespace", namespace, "--kube-version", KUBE_VERSION),
        ]
    )
    rendered = [d for d in yaml.safe_load_all(out) if d]
    for obj in rendered:
        obj["metadata"].setdefault("namespace", namespace)
        # What Helm writes on everything it creates or adopts.
        obj["metadata"].setdefault("annotations", {}).update(
            {"meta.helm.sh/release-name": name, "meta.helm.sh/release-namespace": namespace}
        )
    return rendered


def owned_by(obj: Obj, name: str, namespace: str) -> bool:
    meta = obj["metadata"]
    annotations = meta.get("annotations") or {}
    return (
        (meta.get("labels") or {}).get("app.kubernetes.io/managed-by") == "Helm"
        and annotations.get("meta.helm.sh/release-name") == name
        and annotations.get("meta.helm.sh/release-namespace") == namespace
    )


def apply(rendered: list[Obj], previous: list[Obj], name: str, namespace: str) -> None:
    """Create or update each rendered object as Helm does; delete what the previous revision
    had and this one has not."""
    for obj in rendered:
        path = path_of(obj["kind"], obj["metadata"]["namespace"], obj["metadata"]["name"])
        live = load(path) if path.exists() else None
        if live is not None and not owned_by(live, name, namespace):
            raise RefusedError(
                f"rendered manifests contain a resource that already exists. Unable to continue"
                f' with install: {obj["kind"]} "{obj["metadata"]["name"]}" in namespace'
                f' "{namespace}" exists and cannot be imported into the current release:'
                " invalid ownership metadata"
            )
        if live is not None and obj["kind"] == "Service":
            # The API server keeps a clusterIP the update leaves out, refuses a different one.
            before, after = live["spec"].get("clusterIP"), obj["spec"].get("clusterIP")
            if after and before and after != before:
                raise RefusedError(
                    f'Service "{obj["metadata"]["name"]}" is invalid: spec.clusterIP: Invalid'
                    f' value: "{after}": field is immutable'
                )
            obj["spec"].setdefault("clusterIP", before)
        store(obj)
    now = {key(o) for o in rendered}
    for old in previous:
        if key(old) not in now and (old["metadata"].get("annotations") or {}).get(KEEP) != "keep":
            delete(old)


def delete(obj: Obj) -> None:
    meta = obj["metadata"]
    path_of(obj["kind"], meta["namespace"], meta["name"]).unlink(missing_ok=True)


def helm(args: list[str]) -> str:
    namespace = take(args, "-n", "--namespace") or "default"
    verb, name, *rest = args
    data = releases()
    history: list[dict[str, Any]] = data.get(name, [])
    previous = history[-1]["objects"] if history else []
    if verb in ("install", "upgrade"):
        if (verb == "install") == bool(history):
            raise RefusedError(f"{verb} {name}: release {'exists' if history else 'not found'}")
        chart_args = list(rest)
        if "--reuse-values" in chart_args:
            chart_args.remove("--reuse-values")
            # The previous values, then these: later --set wins, as Helm merges them.
            chart_args = history[-1]["args"] + chart_args[1:]
        for flag in ("--wait", "--atomic"):
            if flag in chart_args:
                chart_args.remove(flag)
        rendered = template(name, namespace, chart_args)
        apply(rendered, previous, name, namespace)
        history.append({"args": chart_args, "objects": rendered})
    elif verb == "rollback":
        revision = int(rest[0]) if rest else len(history) - 1
        if not 1 <= revision <= len(history):
            raise RefusedError(f"release {name}: no revision {revision}")
        target = history[revision - 1]
        apply(json.loads(json.dumps(target["objects"])), previous, name, namespace)
        history.append(target)
    elif verb == "uninstall" and not rest:
        for obj in previous:
            if (obj["metadata"].get("annotations") or {}).get(KEEP) != "keep":
                delete(obj)
        history = []
    else:
        raise UnsupportedError(f"helm {verb} {' '.join(rest)}")
    data[name] = history
    save_releases(data)
    return f"helm {verb} {name}: revision {len(history)} (client-side)\n"


def main(argv: list[str]) -> int:
    tool, *args = argv
    try:
        out = kubectl(list(args)) if tool == "kubectl" else helm(list(args))
    except UnsupportedError as exc:
        print(f"fakecluster: unsupported: {exc}", file=sys.stderr)
        return 2
    except RefusedError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    sys.stdout.write(out)
    record([tool, *args])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
