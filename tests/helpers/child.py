"""``python -m supervisor ...`` as a child process that can neither block nor outlive a test.

Its output goes to files, not pipes: a pipe nobody reads fills at 64 KiB and then
blocks the child mid-write (the ``run`` service logs several KB a second). The
child is killed when the test leaves the ``with`` block, whatever happened.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

__all__ = ("Child", "python_m", "run_python_m")

ROOT = Path(__file__).resolve().parents[2]


class Child:
    def __init__(
        self, args: list[str], directory: Path, extra_env: Mapping[str, str] | None = None
    ) -> None:
        self._out_path = directory / "stdout"
        self._err_path = directory / "stderr"
        env = {**os.environ, **(extra_env or {}), "PYTHONPATH": str(ROOT)}
        with open(self._out_path, "wb") as out, open(self._err_path, "wb") as err:
            self.proc = subprocess.Popen(
                args, stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env, cwd=ROOT
            )

    @property
    def returncode(self) -> int | None:
        return self.proc.returncode

    def send_signal(self, sig: signal.Signals) -> None:
        self.proc.send_signal(sig)

    def output(self) -> tuple[str, str]:
        return self._out_path.read_text(), self._err_path.read_text()

    def finish(self, timeout: float) -> tuple[str, str]:
        """Wait for the exit; kill it and fail the test past ``timeout`` seconds."""
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            _, err = self.output()
            raise AssertionError(
                f"{self.proc.args} did not exit within {timeout:g} s; stderr ends: {err[-2000:]}"
            ) from None
        return self.output()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@contextmanager
def python_m(*args: str, env: Mapping[str, str] | None = None) -> Iterator[Child]:
    """``with python_m("run", ...) as child``: killed on the way out if still running;
    ``env`` adds to (or replaces) the test's environment variables."""
    with tempfile.TemporaryDirectory(prefix="supervisor-child-") as directory:
        child = Child([sys.executable, "-m", "supervisor", *args], Path(directory), env)
        try:
            yield child
        finally:
            child.kill()


def run_python_m(
    *args: str, timeout: float, env: Mapping[str, str] | None = None
) -> tuple[int, str, str]:
    """Run to the end: exit code, stdout and stderr; killed and failed past ``timeout``."""
    with python_m(*args, env=env) as child:
        out, err = child.finish(timeout)
        assert child.returncode is not None
        return child.returncode, out, err
