"""Run redis-py's own asyncio test suite on plain redis-py and on ``sup.client``.

    python tests/redis_py/run.py [--work DIR] [--modules client,lock,...]

Fetches the pinned redis-py sdist (it ships its tests) from PyPI once into
``DIR``, makes two copies of its tests (one with ``fixture.py`` handing out
``sup.client``), starts one redis-server per side and runs both sides at once
(the one port the suite hard-codes, ``test_cwe_404``'s proxy on 5380, becomes a free
port of each copy's own, or the two sides would take it from each other).
It fails when a test that passed on plain redis-py did not pass on
``sup.client`` (failed, errored or skipped), unless ``EXCLUDED`` lists it with
its reason, and when plain redis-py passed too few tests for the run to mean
anything.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

from supervisor.testing import BinaryServer, free_port

REDIS_PY = "8.2.0"
SHA256 = "58b1493d83ba8f0e3ffe6bd781194ca5c01c91267ae03d29c1087b0b3c7d79c9"
MODULES = (
    "commands pipeline pubsub lock scripting encoding connection_pool client retry "
    "connection monitor hash keyspace_notifications cwe_404 command_parser usage_counter"
).split()
MIN_PLAIN_PASSED = 1000
"""Fewer passes on plain redis-py means the run itself is broken (no server, a
missing dependency), not that ``sup.client`` is as good."""

EXCLUDED: dict[str, dict[str, str]] = {
    "sup": {},
    "auto": {
        "tests.test_asyncio.test_connection_pool.TestReleaseWhenCancelled::"
        "test_execute_command_releases_when_cancelled[pool]": (
            "it patches the pooled path's _send_command_parse_response and waits for PING "
            "to call it; auto-pipelined, PING goes over the shared connection instead"
        ),
    },
}
"""Side -> test id -> why it may fail there although it passes on redis-py: only tests
that inspect internals that legitimately differ."""

HERE = Path(__file__).resolve().parent
PYTEST_TIMEOUT = 60


def fetch(work: Path) -> Path:
    """The unpacked sdist, downloaded and checked against its hash once."""
    root = work / f"redis-{REDIS_PY}"
    if (root / "tests").is_dir():
        return root
    archive = work / f"redis-{REDIS_PY}.tar.gz"
    if not archive.exists():
        subprocess.run(
            [
                *(sys.executable, "-m", "pip", "download", "--quiet", "--no-deps"),
                *("--no-binary", ":all:", "--dest", str(work), f"redis=={REDIS_PY}"),
            ],
            check=True,
        )
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    if digest != SHA256:
        archive.unlink()
        raise SystemExit(f"{archive.name}: sha256 {digest} is not the pinned {SHA256}")
    shutil.unpack_archive(archive, work)
    return root


def prepare(root: Path, side: Path, supervised: bool) -> None:
    """A copy of the suite without redis-py's sources, so the installed redis is tested."""
    shutil.rmtree(side, ignore_errors=True)
    side.mkdir(parents=True)
    shutil.copytree(root / "tests", side / "tests")
    shutil.copy(root / "pyproject.toml", side / "pyproject.toml")
    cwe_404 = side / "tests" / "test_asyncio" / "test_cwe_404.py"
    cwe_404.write_text(cwe_404.read_text().replace("5380", str(free_port())))
    if supervised:
        shutil.copy(HERE / "fixture.py", side / "tests" / "test_asyncio" / "supervised_fixture.py")
        conftest = side / "tests" / "test_asyncio" / "conftest.py"
        conftest.write_text(
            conftest.read_text()
            + "\nfrom tests.test_asyncio.supervised_fixture import create_redis  # noqa\n"
        )


def node_id(test_id: str) -> str:
    """A junit id (``tests.test_asyncio.test_x.TestY::test_z``) as pytest's node id."""
    where, name = test_id.split("::", 1)
    parts = where.split(".")
    return "::".join(["/".join(parts[:3]) + ".py", *parts[3:], name])


def start(
    side: Path, url: str, modules: list[str], env: dict[str, str], skip: list[str]
) -> subprocess.Popen[bytes]:
    """``skip``: tests not run on this side (``EXCLUDED``), rather than waited out."""
    files = [f"tests/test_asyncio/test_{m}.py" for m in modules]
    log = (side / "pytest.log").open("wb")
    return subprocess.Popen(
        [
            *(sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "ignore"),
            *(f"--redis-url={url}", f"--junitxml={side / 'junit.xml'}"),
            *(f"--timeout={PYTEST_TIMEOUT}", "-o", "addopts=", *files),
            *(f"--deselect={node_id(t)}" for t in skip),
        ],
        cwd=side,
        env={**os.environ, **env},
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def outcomes(junit: Path) -> dict[str, str]:
    out = {}
    for case in ET.parse(junit).iter("testcase"):
        status = "passed"
        for child in case:
            if child.tag in ("failure", "error", "skipped"):
                status = {"failure": "failed"}.get(child.tag, child.tag)
        out[f"{case.get('classname')}::{case.get('name')}"] = status
    return out


def module_of(test_id: str) -> str:
    """``tests.test_asyncio.test_client::...`` -> ``client``; a row of pytest's own (an
    internal error, a collection error) has no module."""
    parts = test_id.split("::")[0].split(".")
    return parts[2].removeprefix("test_") if len(parts) > 2 else "(pytest)"


def report(plain: dict[str, str], supervised: dict[str, str], label: str) -> list[str]:
    excluded = EXCLUDED[label]
    counts: Counter[tuple[str, str, str]] = Counter()
    for side, results in (("plain", plain), ("sup", supervised)):
        for test_id, status in results.items():
            counts[module_of(test_id), side, status] += 1
    kinds = ("passed", "failed", "error", "skipped")
    print(f"{'module':<24}" + "".join(f"{'plain ' + k:>15}" for k in kinds), end="")
    print("".join(f"{label + ' ' + k:>13}" for k in kinds))
    for module in sorted({m for m, _, _ in counts}):
        print(f"{module:<24}" + "".join(f"{counts[module, 'plain', k]:>15}" for k in kinds), end="")
        print("".join(f"{counts[module, 'sup', k]:>13}" for k in kinds))
    return [
        test_id
        for test_id, status in plain.items()
        if status == "passed"
        and supervised.get(test_id, "missing") != "passed"
        and test_id not in excluded
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path(".cache/redis-py-suite"))
    parser.add_argument("--modules", default=",".join(MODULES))
    args = parser.parse_args()
    work: Path = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    modules = [m for m in args.modules.split(",") if m]
    root = fetch(work)
    sides = {"plain": work / "plain", "sup": work / "supervised", "auto": work / "auto"}
    for name, side in sides.items():
        prepare(root, side, supervised=name != "plain")
    servers = {name: BinaryServer() for name in sides}
    running: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for name, server in servers.items():
            server.start()
            env = {"SUPERVISOR_AUTO_PIPELINE": "1"} if name == "auto" else {}
            skip = list(EXCLUDED.get(name, {}))
            running[name] = start(sides[name], server.url, modules, env, skip)
        for proc in running.values():
            # pytest's own per-test timeout ends a hang; this bounds the rest
            proc.wait(timeout=900)
    finally:
        for proc in running.values():
            if proc.poll() is None:
                proc.kill()
        for server in servers.values():
            server.close()
    for name, side in sides.items():
        tail = (side / "pytest.log").read_text(errors="replace").strip().splitlines()[-1:]
        print(f"{name}: {' '.join(tail)}")
    plain = outcomes(sides["plain"] / "junit.xml")
    passed = sum(status == "passed" for status in plain.values())
    if passed < MIN_PLAIN_PASSED and modules == MODULES:
        print(f"plain redis-py passed only {passed} tests: the run is broken")
        return 1
    failed = False
    for name, what in (("sup", "sup.client"), ("auto", "sup.client with auto_pipeline")):
        supervised = outcomes(sides[name] / "junit.xml")
        regressions = report(plain, supervised, name)
        for test_id in regressions:
            print(f"REGRESSION {name} {supervised.get(test_id, 'missing'):>8}  {test_id}")
        for test_id, why in EXCLUDED[name].items():
            print(f"not run on {name}: {test_id} ({why})")
        if regressions:
            print(f"{len(regressions)} tests pass on plain redis-py and not on {what}")
            print(f"details: {sides[name] / 'pytest.log'}")
            failed = True
        else:
            print(f"every test that passes on plain redis-py passes on {what}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
