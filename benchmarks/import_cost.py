"""DAG-parse cost: importing the operators and sensors on top of an already imported ``airflow.sdk``.

Each measurement is a fresh Python process (imports are cached within one); the candidates are
interleaved so machine noise hits them alike. Prints medians and ratios.

Bytecode is cached, as in a deployment: the dag processor parses the same files again and again,
and Python keeps their compiled form after the first time. The children write it to a private
folder (``PYTHONPYCACHEPREFIX``) even where ``PYTHONDONTWRITEBYTECODE`` is set, and one warm-up
run per candidate fills it; without that, each sample would pay for compiling the sources.

    python benchmarks/import_cost.py [--runs 9]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile

CANDIDATES = {
    "airflow-provider-cml (operators + sensors)": (
        "airflow_provider_cml.operators.cml, airflow_provider_cml.sensors.cml"
    ),
    # @task.cml adds Airflow's decorator base, which a DAG file using @task has imported already.
    "airflow-provider-cml (+ @task.cml decorator)": (
        "airflow_provider_cml.operators.cml, airflow_provider_cml.sensors.cml, "
        "airflow_provider_cml.decorators.cml"
    ),
    "dbt Cloud provider (operators.dbt)": "airflow.providers.dbt.cloud.operators.dbt",
    "requests alone": "requests",
}
PROBE = """
import time
import airflow.sdk  # every DAG file pays this already
start = time.perf_counter()
import {modules}
print((time.perf_counter() - start) * 1000)
"""


def measure(modules: str, env: dict[str, str]) -> float:
    out = subprocess.run(
        [sys.executable, "-c", PROBE.format(modules=modules)],
        check=True,
        capture_output=True,
        text=True,
        env=env,
    ).stdout
    return float(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=9, help="fresh processes per candidate (>= 7)")
    args = parser.parse_args()
    samples: dict[str, list[float]] = {name: [] for name in CANDIDATES}
    with tempfile.TemporaryDirectory() as cache:
        env = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
        env["PYTHONPYCACHEPREFIX"] = cache
        for modules in CANDIDATES.values():
            measure(modules, env)  # warm-up: compiles and caches the bytecode
        for _ in range(args.runs):
            for name, modules in CANDIDATES.items():
                samples[name].append(measure(modules, env))
    ours = statistics.median(samples["airflow-provider-cml (operators + sensors)"])
    print(f"Import cost on top of airflow.sdk, bytecode cached, median of {args.runs} fresh processes each")
    print(f"{'candidate':<46} {'median ms':>10} {'min ms':>8} {'max ms':>8} {'x ours':>7}")
    for name, values in samples.items():
        median = statistics.median(values)
        print(f"{name:<46} {median:>10.1f} {min(values):>8.1f} {max(values):>8.1f} {median / ours:>7.1f}")


if __name__ == "__main__":
    main()
