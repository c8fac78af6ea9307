"""Loading a snapshot: ``kubedns serve --snapshot FILE`` from exec to its first answer.

    .venv/bin/python -m bench.snapshot [--baseline DIR] [--repeats N] [--sizes 2000,10000]

For each cluster size, ``gen_cluster.generate()`` builds the cluster (namespaces and endpoints
in the proportion of the scale benchmark: one namespace per 10 Services, 5 endpoints per
Service), writes it as kubectl prints it, a YAML ``List`` in block style (``yaml.safe_dump``,
keys sorted as kubectl sorts them) and as JSON (one object a line, ``gen_cluster``'s own
format), and starts the real server on each file in a child process pinned to one CPU:

    kubedns serve --snapshot FILE --listen 127.0.0.1:PORT --no-forward --log-level warning

It records the wall time from ``exec`` to the first answered query (an SOA query every 20 ms),
the CPU time the process used until then (user + system: what the wall time would be on an idle
core, as other work on a shared machine only adds waiting), the peak RSS (``VmHWM``) and the
RSS then (``VmRSS``), of the whole process.

``--baseline DIR`` also runs the ``kubedns`` package found in DIR (for instance an older commit
unpacked with ``git archive``) as variant ``before``, interleaved with the current code
(``after``) so both see the same machine load. Results merge into ``bench/results/snapshot.json``
by variant, so a before run from another commit is kept; ``render()`` turns them into the
Markdown section for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from bench import common, gen_cluster

RESULTS = common.RESULTS / "snapshot.json"
FORMATS = ("yaml", "json")
TARGETS = {
    2000: {"yaml": {"serving_s": 2.0, "peak_rss_mb": 120.0}},
    10000: {"yaml": {"rss_mb": 114.0}, "json": {"rss_mb": 114.0}},
}
"""Issue 8, item 8, by generated Services: under 2 s and 120 MB peak for the 2,002-Service YAML
dump; the 10,000-Service dump held within the live watch's 114 MB after sync."""
RUN_KEYS = ("serving_s", "cpu_s", "peak_rss_mb", "rss_mb")
"""Kept for every run, not only the fastest: how much the figures vary."""
POLL_S = 0.02
START_TIMEOUT_S = 300.0


@dataclass(frozen=True)
class Cluster:
    services: int
    namespaces: int
    endpoints: int

    @classmethod
    def of(cls, services: int) -> Cluster:
        """The scale benchmark's proportions (10,000 / 1,000 / 50,000)."""
        return cls(services, max(1, services // 10), 5 * services)


def write_dumps(cluster: Cluster, workdir: Path) -> dict[str, Path]:
    """The cluster as a kubectl-style YAML List and as JSON."""
    objects = gen_cluster.generate(
        services=cluster.services, namespaces=cluster.namespaces, endpoints=cluster.endpoints
    )
    stem = workdir / f"cluster-{cluster.services}"
    yaml_path = stem.with_suffix(".yaml")
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)  # same text as safe_dump, faster
    with yaml_path.open("w", encoding="utf-8") as out:
        yaml.dump(gen_cluster.as_list(objects), out, Dumper=dumper, default_flow_style=False)
    json_path = gen_cluster.write_snapshot(stem.with_suffix(".json"), objects)
    return {"yaml": yaml_path, "json": json_path}


def serve_argv(snapshot: Path, port: int) -> list[str]:
    return [
        sys.executable, "-m", "kubedns", "serve", "--snapshot", str(snapshot),
        "--listen", f"127.0.0.1:{port}", "--no-forward", "--log-level", "warning",
    ]  # fmt: skip


def measure_start(snapshot: Path, *, source: Path, workdir: Path) -> dict[str, float]:
    """Start kubedns (the package under ``source``) on ``snapshot``; time it to its first
    answer and read its memory then."""
    port = common.free_port()
    env = {**os.environ, "PYTHONPATH": str(source)}
    log = workdir / "kubedns.log"
    with log.open("wb") as out:
        started = time.monotonic()
        process = subprocess.Popen(
            common.pinned(serve_argv(snapshot, port), role="server"),
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=workdir,
        )
    try:
        while True:
            if process.poll() is not None:
                raise common.BenchError(f"kubedns exited with {process.returncode}:\n"
                                        f"{log.read_text()}")  # fmt: skip
            if common.query(port, "cluster.local", "SOA", timeout=POLL_S) is not None:
                serving = time.monotonic() - started
                break
            if time.monotonic() - started > START_TIMEOUT_S:
                raise common.BenchError(f"kubedns did not answer within {START_TIMEOUT_S} s")
        status = _status_mb(process.pid)
        cpu = common.cpu_seconds(process.pid)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return {
        "serving_s": round(serving, 3),
        "cpu_s": round(cpu, 2),
        "peak_rss_mb": round(status["VmHWM"], 1),
        "rss_mb": round(status["VmRSS"], 1),
    }


def _status_mb(pid: int) -> dict[str, float]:
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmHWM", "VmRSS"):
            values[key] = int(rest.split()[0]) / 1024
    return values


def run(
    sizes: list[int],
    *,
    variants: dict[str, Path],
    repeats: int = 1,
    formats: tuple[str, ...] = FORMATS,
    workdir: Path,
) -> dict[str, Any]:
    """Every (size, format, variant), ``repeats`` rounds interleaved; the fastest start of each
    is kept (other work on a shared machine only ever slows a start down), with its memory."""
    dumps: dict[str, Any] = {}
    runs: dict[str, dict[str, dict[str, list[dict[str, float]]]]] = {}
    for services in sizes:
        cluster = Cluster.of(services)
        paths = write_dumps(cluster, workdir)
        size_key = str(services)
        dumps[size_key] = {
            "services": services + 2,  # gen_cluster adds default/kubernetes and kube-dns
            "namespaces": cluster.namespaces + 2,
            "endpoints": cluster.endpoints,
            "bytes": {fmt: paths[fmt].stat().st_size for fmt in formats},
        }
        for fmt in formats:
            for _ in range(repeats):
                for variant, source in variants.items():
                    figures = measure_start(paths[fmt], source=source, workdir=workdir)
                    print(f"{services} {fmt} {variant}: {figures}", file=sys.stderr)
                    runs.setdefault(variant, {}).setdefault(size_key, {}).setdefault(
                        fmt, []
                    ).append(figures)
        for path in paths.values():
            path.unlink()
    results: dict[str, Any] = {"dumps": dumps, "variants": {}}
    for variant, by_size in runs.items():
        results["variants"][variant] = {
            size: {
                fmt: {
                    **_fastest(measured),
                    **{f"{key}_runs": [r[key] for r in measured] for key in RUN_KEYS},
                }
                for fmt, measured in by_format.items()
            }
            for size, by_format in by_size.items()
        }
    return results


def _fastest(measured: list[dict[str, float]]) -> dict[str, float]:
    return min(measured, key=lambda figures: figures["serving_s"])


def merge(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """New figures replace old ones of the same variant, size and format; the rest is kept."""
    merged = {**old, **{k: v for k, v in new.items() if k not in ("dumps", "variants")}}
    merged["dumps"] = {**old.get("dumps", {}), **new["dumps"]}
    variants = {k: dict(v) for k, v in old.get("variants", {}).items()}
    for variant, by_size in new["variants"].items():
        for size, by_format in by_size.items():
            variants.setdefault(variant, {}).setdefault(size, {}).update(by_format)
    merged["variants"] = variants
    return merged


def render(results: dict[str, Any]) -> str:
    """The Markdown section for BENCHMARKS.md: before and after against the targets."""
    variants = [v for v in ("before", "after") if v in results.get("variants", {})]
    lines = [
        "## Loading a snapshot",
        "",
        "`kubedns serve --snapshot FILE --no-forward` from exec to its first answer, one CPU "
        "(`.venv/bin/python -m bench.snapshot`): wall time (and CPU time, what the wall time "
        "is on an idle core), peak RSS (`VmHWM`) and RSS then (`VmRSS`) of the whole process. "
        "The clusters come from `bench/gen_cluster.py` (one namespace per 10 Services, "
        "5 endpoints per Service), written as kubectl prints them (a YAML `List`) and as JSON.",
        "",
        "| dump | size | "
        + " | ".join(f"{v}: time (CPU), peak RSS, RSS" for v in variants)
        + " | target |",
        "| --- | --- |" + " --- |" * len(variants) + " --- |",
    ]
    for size, dump in sorted(results.get("dumps", {}).items(), key=lambda kv: int(kv[0])):
        for fmt in FORMATS:
            if fmt not in dump["bytes"]:
                continue
            cells = []
            for variant in variants:
                figures = results["variants"][variant].get(size, {}).get(fmt)
                cells.append(
                    "-"
                    if figures is None
                    else f"{figures['serving_s']:.2f} s ({_cpu_text(figures)}), "
                    f"{figures['peak_rss_mb']:.0f} MB, {figures['rss_mb']:.0f} MB"
                )
            target = _target_text(TARGETS.get(int(size), {}).get(fmt, {}))
            label = f"{dump['services']:,} Services, {fmt.upper()}"
            lines.append(
                f"| {label} | {dump['bytes'][fmt] / 1e6:.1f} MB | " + " | ".join(cells)
                + f" | {target} |"
            )  # fmt: skip
    machine = results.get("machine", {})
    if machine:
        lines += ["", f"Measured {results.get('date', '?')}, {machine.get('cpu_model', '?')}, "
                  f"Python {machine.get('python', '?')}; best start of "
                  f"{results.get('repeats', 1)}."]  # fmt: skip
    return "\n".join(lines) + "\n"


def _cpu_text(figures: dict[str, float]) -> str:
    return f"{figures['cpu_s']:.2f} s CPU" if "cpu_s" in figures else "CPU not measured"


def _target_text(target: dict[str, float]) -> str:
    parts = []
    if "serving_s" in target:
        parts.append(f"< {target['serving_s']:g} s")
    if "peak_rss_mb" in target:
        parts.append(f"peak < {target['peak_rss_mb']:g} MB")
    if "rss_mb" in target:
        parts.append(f"RSS ≤ {target['rss_mb']:g} MB")
    return ", ".join(parts) or "-"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sizes", default="2000,10000", help="generated Services per cluster")
    parser.add_argument("--formats", default=",".join(FORMATS))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--baseline", type=Path, help="a directory holding an older kubedns package: 'before'"
    )
    parser.add_argument(
        "--variant", default="after", help="the name to record the current code under"
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    variants = {args.variant: common.REPO}
    if args.baseline is not None:
        variants = {"before": args.baseline.resolve(), **variants}
    sizes = [int(s) for s in args.sizes.split(",")]
    formats = tuple(f for f in args.formats.split(",") if f)
    with tempfile.TemporaryDirectory() as scratch:
        results = run(
            sizes, variants=variants, repeats=args.repeats, formats=formats, workdir=Path(scratch)
        )
    results["date"] = time.strftime("%Y-%m-%d")
    results["repeats"] = args.repeats
    facts = common.machine()
    results["machine"] = {key: facts[key] for key in ("cpu_model", "python", "pinning")}
    old = json.loads(args.out.read_text()) if args.out.exists() else {}
    merged = merge(old, results)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(merged, indent=2) + "\n")
    print(render(merged))
    return 0


if __name__ == "__main__":
    sys.exit(main())
