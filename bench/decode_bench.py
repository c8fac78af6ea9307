"""What decoding a large list costs: raw JSON slimmed at once versus the client's models.

The API source reads responses with ``_preload_content=False``-style raw access and turns each
item into a slim value with ``objects.from_raw``. The alternative is the ``kubernetes``
client's own deserialisation into ``V1ServiceList``/``V1EndpointSliceList`` models. This
measures both on the ``gen_cluster.py`` cluster: seconds, and the Python heap held by the
result (tracemalloc).

    python bench/decode_bench.py
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kubernetes.client import ApiClient

from bench.gen_cluster import generate
from kubedns.objects import from_raw

LISTS = {"Service": "V1ServiceList", "EndpointSlice": "V1EndpointSliceList"}


def list_body(kind: str, items: list[dict[str, Any]]) -> str:
    version = "discovery.k8s.io/v1" if kind == "EndpointSlice" else "v1"
    return json.dumps(
        {
            "kind": f"{kind}List",
            "apiVersion": version,
            "metadata": {"resourceVersion": "1"},
            "items": [{k: v for k, v in i.items() if k != "kind"} for i in items],
        }
    )


def slim(kind: str) -> Callable[[str], object]:
    return lambda body: tuple(from_raw(kind, raw) for raw in json.loads(body)["items"])


def models(kind: str) -> Callable[[str], object]:
    client = ApiClient()
    return lambda body: client.deserialize(body, LISTS[kind], "application/json")


def measure(decode: Callable[[str], object], body: str) -> tuple[float, float]:
    """(seconds, MB held by the result); timed without tracemalloc, which slows Python."""
    gc.collect()
    started = time.perf_counter()
    result = decode(body)
    seconds = time.perf_counter() - started
    del result
    gc.collect()
    tracemalloc.start()
    result = decode(body)
    held = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    del result
    return seconds, held / 2**20


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--services", type=int, default=10_000)
    parser.add_argument("--endpoints", type=int, default=50_000)
    args = parser.parse_args(argv)
    objects = list(generate(services=args.services, endpoints=args.endpoints))
    for kind in LISTS:
        body = list_body(kind, [o for o in objects if o["kind"] == kind])
        for name, decoder in (("raw json + slim", slim(kind)), ("client models", models(kind))):
            seconds, held = measure(decoder, body)
            print(f"{kind:14} {name:16} {seconds:7.2f} s {held:8.1f} MB held")
    return 0


if __name__ == "__main__":
    sys.exit(main())
