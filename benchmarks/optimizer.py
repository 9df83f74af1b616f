"""Benchmark: ms to rank every offer for one resource request (the optimizer's hot path).

100 different requests (accelerator × count × spot × infra constraint, CPU-only bounds,
any_of across clouds, ordered, TIME target) are ranked through the real provider registry
(aws/gcp offers come from the shipped catalogs; nothing is provisioned). The catalog is
parsed once before timing (its one-off cost is printed separately).

    python benchmarks/optimizer.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import tempfile
import time
from typing import Any

from skystate.enums import OptimizeTarget
from skystate.providers import catalog
from skystate.providers.optimizer import rank_offers
from skystate.providers.registry import Providers
from skystate.spec.resources import Resources

GPUS = {"T4": (1, 4), "L4": (1, 8), "A10G": (1, 4), "V100": (1, 8), "A100": (1, 8),
        "A100-80GB": (1, 8), "H100": (8,)}
INFRA = ("aws", "gcp", "*", "aws/us-east-1", "gcp/us-central1", "*/us-west-2")


def requests() -> list[tuple[dict[str, Any], OptimizeTarget]]:
    """100 distinct (resources, target) pairs."""
    found: list[tuple[dict[str, Any], OptimizeTarget]] = []
    for (gpu, counts), infra, spot in itertools.product(GPUS.items(), INFRA, (False, True)):
        for count in counts:
            found.append(({"infra": infra, "accelerators": f"{gpu}:{count}",
                           "use_spot": spot}, OptimizeTarget.COST))
    found = found[:70]
    for cpus, memory in itertools.product(("2+", "8", "16+", "64+"), ("8+", "64+", None)):
        found.append(({"infra": "*", "cpus": cpus, **({"memory": memory} if memory else {})},
                      OptimizeTarget.COST))
    for gpu in GPUS:
        other = "T4:1" if gpu == "L4" else "L4:1"
        found.append(({"infra": "*", "any_of": [{"accelerators": f"{gpu}:1"},
                                                 {"accelerators": other}]}, OptimizeTarget.TIME))
        found.append(({"ordered": [{"infra": "gcp", "accelerators": f"{gpu}:8"},
                                   {"infra": "aws", "accelerators": "A100:8"}]},
                      OptimizeTarget.COST))
    found.append(({"infra": "aws", "accelerators": "A100:8", "cpus": "64+"}, OptimizeTarget.TIME))
    found.append(({"infra": "gcp", "instance_type": "a2-highgpu-1g"}, OptimizeTarget.COST))
    found.append(({"infra": "aws/us-west-2/us-west-2b", "accelerators": "T4"},
                  OptimizeTarget.COST))
    found.append(({"infra": "gcp", "cpus": "4+", "use_spot": True}, OptimizeTarget.TIME))
    assert len(found) == 100, len(found)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="passes over the 100 requests")
    args = parser.parse_args()
    os.environ.setdefault("SKYSTATE_HOME", tempfile.mkdtemp(prefix="skystate-bench-"))
    start = time.perf_counter()
    rows = sum(len(catalog.entries(cloud)) for cloud in catalog.CLOUDS)
    print(f"catalog parse (once per process): {(time.perf_counter() - start) * 1e3:.1f} ms "
          f"for {rows} rows")
    providers = Providers({})
    cases = [(Resources.model_validate(r), t) for r, t in requests()]
    start = time.perf_counter()
    for resources, target in cases:  # warm-up: builds the providers once
        rank_offers(resources, 1, providers, target=target)
    print(f"first pass (builds aws/gcp/local/ssh providers): "
          f"{(time.perf_counter() - start) * 1e3:.0f} ms for {len(cases)} requests")
    timings: list[float] = []
    offers = feasible = 0
    for _ in range(args.repeat):
        for resources, target in cases:
            begin = time.perf_counter()
            ranked = rank_offers(resources, 1, providers, target=target)
            timings.append((time.perf_counter() - begin) * 1e3)
            offers += len(ranked)
            feasible += bool(ranked)
    timings.sort()
    p95 = timings[int(len(timings) * 0.95) - 1]
    print(f"{len(cases)} requests x {args.repeat}: median {statistics.median(timings):.2f} ms, "
          f"p95 {p95:.2f} ms, max {timings[-1]:.2f} ms per request "
          f"({feasible // args.repeat} feasible, {offers // args.repeat} offers ranked per pass)")


if __name__ == "__main__":
    main()
