"""Run the installed Agents SDK's own Runner tests bare, instrumented and scoped; compare.

Used by ``nox -s sdk_suite``::

    python tests/sdk_suite/compare.py --work .nox/sdk_suite/tmp [pytest args...]

Downloads the sdist of the installed ``openai-agents`` (``pip download --no-binary``),
selects its test files that drive ``Runner``, runs them once per mode with the
``agentbudget_sdk_mode`` plugin, and exits 1 when any test's outcome differs from the
bare run. A difference is re-run once in both modes first, so a timing-flaky SDK test
is reported as flaky instead of failing the comparison.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import subprocess
import sys
import tarfile
from importlib.metadata import version
from pathlib import Path

HERE = Path(__file__).resolve().parent
MODES = ("bare", "instrumented", "scoped")
DRIVES_RUNNER = re.compile(r"\bRunner\.run(_streamed|_sync)?\(")


def fetch_sdk(work: Path) -> Path:
    """The extracted sdist of the installed ``openai-agents``."""
    sdk_version = version("openai-agents")
    root = work / f"openai_agents-{sdk_version}"
    if (root / "tests").is_dir():
        return root
    work.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-binary",
            ":all:",
            "--no-deps",
            f"openai-agents=={sdk_version}",
            "-d",
            str(work),
        ],
        check=True,
    )
    with tarfile.open(work / f"openai_agents-{sdk_version}.tar.gz") as archive:
        archive.extractall(work, filter="data")
    return root


def runner_test_files(root: Path) -> list[str]:
    """The SDK's test files that call ``Runner.run``, ``run_sync`` or ``run_streamed``."""
    found = []
    for path in sorted((root / "tests").rglob("test_*.py")):
        if DRIVES_RUNNER.search(path.read_text(encoding="utf-8")):
            found.append(str(path.relative_to(root)))
    return found


def start_mode(
    root: Path, mode: str, targets: list[str], out: Path, extra: list[str]
) -> subprocess.Popen[bytes]:
    """Start one pytest run of ``targets`` in ``mode``; its outcomes go to ``out``."""
    env = dict(os.environ)
    env["AGENTBUDGET_SDK_MODE"] = mode
    env["AGENTBUDGET_SDK_OUTCOMES"] = str(out)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE), env.get("PYTHONPATH")]))
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-p",
        "agentbudget_sdk_mode",
        "-p",
        "no:agentbudget",
        "-p",
        "no:cacheprovider",
        "-q",
        "--no-header",
        "-rN",
        "--continue-on-collection-errors",
        "--tb=no",
        *extra,
        *targets,
    ]
    log = (out.parent / f"{out.stem}.log").open("wb")
    return subprocess.Popen(command, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT)


def run_modes(
    root: Path, modes: list[str], targets: list[str], work: Path, tag: str, extra: list[str]
) -> dict[str, dict[str, str]]:
    """Run every mode at once (the SDK's suite mostly waits, so runs overlap well)."""
    outs = {mode: work / f"{tag}-{mode}.json" for mode in modes}
    for out in outs.values():
        out.unlink(missing_ok=True)
    procs = {mode: start_mode(root, mode, targets, outs[mode], extra) for mode in modes}
    results = {}
    for mode, proc in procs.items():
        proc.wait()
        if not outs[mode].exists():
            log = outs[mode].parent / f"{outs[mode].stem}.log"
            raise SystemExit(f"{mode} run wrote no outcomes; see {log}")
        results[mode] = json.loads(outs[mode].read_text(encoding="utf-8"))
    return results


def counts(outcomes: dict[str, str]) -> str:
    tally = collections.Counter(outcomes.values())
    return ", ".join(f"{n} {kind}" for kind, n in sorted(tally.items()))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True, help="where the sdist goes")
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument(
        "--only", action="append", default=[], help="keep test files whose path contains this"
    )
    args, extra = parser.parse_known_args()
    work = args.work.resolve()
    root = fetch_sdk(work)
    files = runner_test_files(root)
    if args.only:
        files = [f for f in files if any(part in f for part in args.only)]
    print(f"openai-agents {version('openai-agents')}: {len(files)} test files drive Runner")
    modes = args.modes.split(",")
    results = run_modes(root, modes, files, work, "outcomes", extra)
    base = results[modes[0]]
    differs = False
    for mode in modes[1:]:
        outcomes = results[mode]
        diff = sorted(
            node
            for node in set(base) | set(outcomes)
            if base.get(node, "missing") != outcomes.get(node, "missing")
        )
        flaky = []
        if diff:  # re-run the differences once in both modes
            rerun = run_modes(root, [modes[0], mode], diff, work, "rerun", extra)
            confirmed = [n for n in diff if rerun[modes[0]].get(n) != rerun[mode].get(n)]
            flaky = [n for n in diff if n not in confirmed]
            diff = confirmed
        print(f"\n{modes[0]}: {counts(base)}")
        print(f"{mode}: {counts(outcomes)}")
        for node in flaky:
            print(f"  flaky (same outcome on re-run): {node}")
        for node in diff:
            print(f"  DIFFERS: {node}: {base.get(node)} -> {outcomes.get(node)}")
        print(f"{mode} vs {modes[0]}: {len(diff)} differences, {len(flaky)} flaky")
        differs = differs or bool(diff)
    return 1 if differs else 0


if __name__ == "__main__":
    sys.exit(main())
