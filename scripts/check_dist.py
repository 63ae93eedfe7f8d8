"""Check a built release (``make dist``) as its users will meet it.

After ``python -m build`` and ``twine check --strict`` (in the Makefile), this script checks:

* CHANGELOG.md has an ``## [Unreleased]`` section (kept current between releases);
* the wheel's package page (its METADATA description, the README) has no relative Markdown link or
  image: PyPI shows the README without the repository around it, so ``docs/guide.md`` or
  ``#section`` would lead nowhere there;
* the wheel installs in a clean virtualenv on each Airflow version given (the oldest and newest
  supported), Airflow finds it as a provider, and a DAG with a CmlRunJobOperator succeeds against the
  local workbench the wheel ships (``python -m airflow_provider_cml.testing``, run as a user runs
  it), after ``airflow db migrate`` in a fresh AIRFLOW_HOME. The versions are checked side by side
  (one per core) to keep ``make dist`` short.

Usage: ``python scripts/check_dist.py [--dist dist] [--airflow 2.10.5 3.3.2]``.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from email.parser import HeaderParser
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
UNRELEASED = re.compile(r"^## \[Unreleased\]\s*$", re.M)
# Code is not a link: fenced blocks and inline spans are removed before links are looked for.
FENCED = re.compile(r"^(```|~~~).*?^\1", re.M | re.S)
INLINE_CODE = re.compile(r"`[^`\n]*`")
# [text](target), ![alt](target), [label]: target, and the HTML forms <a href> and <img src>.
INLINE_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)")
REFERENCE = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", re.M)
HTML_LINK = re.compile(r"<(?:a|img)\b[^>]*?\b(?:href|src)\s*=\s*[\"']([^\"']+)", re.I)
ABSOLUTE = re.compile(r"^(https?|mailto):", re.I)

SMOKE_SPEC = {
    "api_keys": ["smoke-key"],
    "projects": [
        {
            "name": "Smoke",
            "owner": "alice",
            "folder": "jobs",
            "jobs": [{"name": "hello", "script": "hello.py"}],
        }
    ],
}
SMOKE_JOB = 'import os\nprint("SMOKE_SAW", os.environ["SMOKE_DATE"], flush=True)\n'
SMOKE_DAG = '''\
"""The release check's DAG: one job run, waited for, against the local workbench."""
from datetime import datetime

from airflow import DAG

from airflow_provider_cml.operators.cml import CmlRunJobOperator

with DAG("cml_release_smoke", start_date=datetime(2024, 1, 1), schedule=None, catchup=False) as dag:
    CmlRunJobOperator(
        task_id="run_hello",
        project="Smoke",
        job="hello",
        environment={"SMOKE_DATE": "{{ ds }}"},
        poll_interval=0.2,
        timeout=120,
    )
'''
# Runs in the clean virtualenv: the provider is the wheel's (not this checkout's), Airflow lists it,
# and the DAG run succeeds.
SMOKE_RUN = """\
import runpy, sys
from importlib.metadata import version
import airflow, airflow_provider_cml
from airflow.providers_manager import ProvidersManager

assert "site-packages" in airflow_provider_cml.__file__, airflow_provider_cml.__file__
provider = ProvidersManager().providers.get("airflow-provider-cml")
assert provider is not None, "Airflow does not list the provider"
versions = {airflow_provider_cml.__version__, version("airflow-provider-cml"), provider.version}
assert len(versions) == 1, f"__version__, the wheel's and the provider info's versions differ: {versions}"
dag = runpy.run_path(sys.argv[1])["dag"]
run = dag.test()
state = getattr(run.state, "value", run.state)
print("SMOKE_RESULT", airflow.__version__, airflow_provider_cml.__version__, state, flush=True)
sys.exit(0 if state == "success" else 1)
"""


class CheckFailed(Exception):
    """A check of the release failed; the message says which and why."""


def check_changelog(path: Path) -> None:
    """Fail unless the changelog has an ``## [Unreleased]`` section.

    :param path: CHANGELOG.md.
    """
    if not UNRELEASED.search(path.read_text(encoding="utf-8")):
        raise CheckFailed(f"{path.name} has no '## [Unreleased]' section: keep one above the releases")


def relative_links(markdown: str) -> list[str]:
    """Every link or image target in ``markdown`` that is not an absolute URL.

    :param markdown: the text of a Markdown page.
    """
    text = INLINE_CODE.sub("", FENCED.sub("", markdown))
    targets = [m.group(1) for pattern in (INLINE_LINK, REFERENCE, HTML_LINK) for m in pattern.finditer(text)]
    return [target for target in targets if not ABSOLUTE.match(target)]


def check_wheel_description(wheel: Path) -> None:
    """Fail on a relative link or image in the wheel's package page.

    :param wheel: the built wheel.
    """
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        metadata = HeaderParser().parsestr(archive.read(name).decode("utf-8"))
    description = metadata.get_payload()
    if not isinstance(description, str) or "airflow-provider-cml" not in description:
        raise CheckFailed(f"{wheel.name}: METADATA carries no README as its description")
    if metadata.get("Description-Content-Type", "").split(";")[0] != "text/markdown":
        raise CheckFailed(f"{wheel.name}: the description is not declared text/markdown")
    bad = relative_links(description)
    if bad:
        raise CheckFailed(
            f"{wheel.name}: the package page has links that lead nowhere on PyPI: {', '.join(bad)}; "
            "use absolute URLs (https://...), as README.md's other links do"
        )


def printed_connection(process: subprocess.Popen[str], within: float = 60) -> tuple[str, str]:
    """The ``(variable, value)`` of the ``export AIRFLOW_CONN_...=...`` line the command-line workbench
    prints, read as a shell reads it (a user pastes that line).

    :param process: the workbench (``python -m airflow_provider_cml.testing``), its stdout a text pipe.
    :param within: seconds to wait for each printed line.
    """
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:
        assert process.stdout is not None
        for printed in process.stdout:
            lines.put(printed.rstrip("\n"))

    # A thread reads, so that a workbench that prints nothing fails the wait instead of blocking it.
    threading.Thread(target=read, daemon=True).start()
    line = ""
    while not line.startswith("export "):
        try:
            line = lines.get(timeout=within)
        except queue.Empty:
            raise CheckFailed(f"the local workbench printed no connection line within {within:g} s") from None
    words = shlex.split(line)
    if len(words) != 2 or "=" not in words[1]:
        raise CheckFailed(f"the local workbench's connection line is not one 'export NAME=VALUE': {line!r}")
    name, _, value = words[1].partition("=")
    return name, value


def _run(command: list[str], log: list[str], **kwargs) -> None:
    started = time.monotonic()
    done = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kwargs)
    log.append(f"$ {shlex.join(command)}  ({time.monotonic() - started:.1f} s)\n{done.stdout}")
    if done.returncode != 0:
        raise CheckFailed(f"{shlex.join(command)} exited {done.returncode}")


def smoke(wheel: Path, airflow_version: str, work: Path, *, verbose: bool = False) -> str:
    """Install the wheel with one Airflow version in a clean virtualenv and run the smoke DAG there.

    :param wheel: the built wheel.
    :param airflow_version: the Airflow version to install, e.g. ``2.10.5``.
    :param work: an empty directory for the virtualenv, AIRFLOW_HOME and the workbench.
    :param verbose: return every command's output, not only the result and the steps' times.
    """
    log: list[str] = []
    uv = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv") or "uv"
    venv, home = work / "venv", work / "airflow-home"
    python = str(venv / "bin" / "python")
    (work / "dags").mkdir(parents=True)
    (work / "jobs").mkdir()
    (work / "output").mkdir()
    (work / "dags" / "cml_release_smoke.py").write_text(SMOKE_DAG)
    (work / "jobs" / "hello.py").write_text(SMOKE_JOB)
    (work / "spec.json").write_text(json.dumps(SMOKE_SPEC))
    # Nothing of this checkout or of the caller's Airflow: a user's machine with only the wheel.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "PYTHON", "VIRTUAL_ENV"))}
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__DAGS_FOLDER=str(work / "dags"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__LOGGING__LOGGING_LEVEL="WARNING",
    )
    workbench: subprocess.Popen[str] | None = None
    try:
        _run([uv, "venv", "--quiet", "--python", sys.executable, str(venv)], log, cwd=work, env=env)
        install = [uv, "pip", "install", "--quiet", "--python", python]
        _run([*install, f"apache-airflow=={airflow_version}", str(wheel)], log, cwd=work, env=env)
        _run([str(venv / "bin" / "airflow"), "db", "migrate"], log, cwd=work, env=env)
        workbench = subprocess.Popen(
            [python, "-m", "airflow_provider_cml.testing", "--spec", "spec.json", "--output-dir", "output"],
            stdout=subprocess.PIPE,
            text=True,
            cwd=work,
            env=env,
        )
        name, value = printed_connection(workbench)
        (work / "smoke_run.py").write_text(SMOKE_RUN)
        _run(
            [python, "smoke_run.py", str(work / "dags" / "cml_release_smoke.py")],
            log,
            cwd=work,
            env={**env, name: value},
        )
        outputs = [p.read_text() for p in (work / "output").glob("*.log")]
        if len(outputs) != 1 or "SMOKE_SAW 2" not in outputs[0]:
            raise CheckFailed(f"the job's script did not see the DAG's templated environment: {outputs}")
        steps = ", ".join(entry.split("\n")[0].rsplit("  ", 1)[1] for entry in log)
        result = f"{log[-1].split('SMOKE_RESULT')[1].strip()} (steps: {steps})"
        return result + ("\n" + "\n".join(log) if verbose else "")
    except CheckFailed as failed:
        raise CheckFailed(f"Airflow {airflow_version}: {failed}\n" + "\n".join(log)[-6000:]) from None
    finally:
        if workbench is not None:
            workbench.terminate()
            workbench.wait(timeout=10)


def main(argv: list[str] | None = None) -> int:
    """Run every check; print what failed and exit 1 when one did.

    :param argv: command-line arguments (default: ``sys.argv[1:]``).
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dist", default=str(ROOT / "dist"), help="where python -m build put the files")
    parser.add_argument("--airflow", nargs="*", default=["2.10.5", "3.3.2"], help="Airflow versions")
    parser.add_argument("--verbose", action="store_true", help="print the smoke runs' whole output")
    args = parser.parse_args(argv)
    wheels = sorted(Path(args.dist).glob("*.whl"))
    try:
        check_changelog(ROOT / "CHANGELOG.md")
        if len(wheels) != 1 or not list(Path(args.dist).glob("*.tar.gz")):
            raise CheckFailed(f"{args.dist} should hold one wheel and one sdist: {os.listdir(args.dist)}")
        check_wheel_description(wheels[0])
        print(f"ok: CHANGELOG.md has Unreleased; {wheels[0].name}'s package page links only absolute URLs")
        with tempfile.TemporaryDirectory(prefix="cml-dist-check-") as tmp, ThreadPoolExecutor() as pool:
            started = time.monotonic()
            wheel = wheels[0].resolve()
            runs = {
                v: pool.submit(smoke, wheel, v, Path(tmp) / f"airflow-{v}", verbose=args.verbose)
                for v in args.airflow
            }
            for version, run in runs.items():
                print(f"ok: Airflow {version}: wheel installed, DAG run {run.result()}")
            print(f"smoke runs: {time.monotonic() - started:.0f} s")
    except CheckFailed as failed:
        print(f"FAILED: {failed}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
