"""Throwaway Redis servers to start, kill, stop and restart: for tests and the demo.

Two backends behind one interface: the ``redis-server`` binary on a free
loopback port in a temporary directory (the default here), or a container
through testcontainers where a Docker engine answers. Choose with
``SUPERVISOR_TEST_BACKEND=binary|docker``; unset, it is auto-detected.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Protocol

import redis

BOUND = 10.0  # seconds any wait for a server may take before the test fails


class RedisServer(Protocol):
    host: str
    port: int

    @property
    def url(self) -> str: ...
    def start(self, *, wait: bool = True) -> None: ...
    def kill(self) -> None: ...
    def stop(self) -> None: ...
    def cont(self) -> None: ...
    def restart(self) -> None: ...
    def admin(self) -> redis.Redis: ...
    def close(self) -> None: ...


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ping(host: str, port: int, password: str | None = None) -> None:
    deadline = time.monotonic() + BOUND
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            with redis.Redis(host=host, port=port, password=password, socket_timeout=1) as r:
                r.ping()
                return
        except (redis.exceptions.AuthenticationError, redis.exceptions.BusyLoadingError):
            return
        except redis.RedisError as exc:
            last = exc
            time.sleep(0.02)
    raise RuntimeError(f"redis on {host}:{port} did not answer PING within {BOUND} s: {last}")


class BinaryServer:
    """``redis-server`` on 127.0.0.1, restartable on the same port."""

    def __init__(self, *extra: str, password: str | None = None) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError(
                "redis-server is not installed: `make test` and `make demo` install it "
                "(or set SUPERVISOR_TEST_BACKEND=docker where a Docker engine runs)"
            )
        self._binary = binary
        self.host = "127.0.0.1"
        self.port = free_port()
        self.password = password
        self._dir = tempfile.mkdtemp(prefix="supervisor-redis-")
        self._extra = list(extra)
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}{self.host}:{self.port}/0"

    def start(self, *, wait: bool = True) -> None:
        args = [
            self._binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            self._dir,
            "--logfile",
            str(Path(self._dir) / "redis.log"),
            "--enable-debug-command",
            "local",
            *self._extra,
        ]
        if self.password:
            args += ["--requirepass", self.password]
        self._proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if wait:
            wait_ping(self.host, self.port, self.password)

    def _signal(self, sig: int) -> None:
        assert self._proc is not None
        self._proc.send_signal(sig)

    def kill(self) -> None:
        """SIGKILL, and wait until the process is gone."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait(BOUND)

    def stop(self) -> None:
        self._signal(signal.SIGSTOP)

    def cont(self) -> None:
        self._signal(signal.SIGCONT)

    def restart(self) -> None:
        self.kill()
        self.start()

    def admin(self) -> redis.Redis:
        return redis.Redis(
            host=self.host,
            port=self.port,
            password=self.password,
            socket_timeout=5,
            decode_responses=True,
        )

    def close(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGCONT)
            self._proc.kill()
            self._proc.wait(BOUND)
        shutil.rmtree(self._dir, ignore_errors=True)


class DockerServer:
    """A ``redis:7`` container through testcontainers, with the same fault operations."""

    def __init__(self, *extra: str, password: str | None = None) -> None:
        from testcontainers.redis import RedisContainer

        self.password = password
        self._extra = list(extra)
        self.port = free_port()
        self.host = "127.0.0.1"
        command = ["redis-server", "--save", "", "--appendonly", "no", *self._extra]
        if password:
            command += ["--requirepass", password]
        self._container = RedisContainer(os.environ.get("REDIS_IMAGE", "redis:7.0"))
        self._container.with_bind_ports(6379, self.port).with_command(" ".join(command))
        self._started = False

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}{self.host}:{self.port}/0"

    def start(self, *, wait: bool = True) -> None:
        if not self._started:
            self._container.start()
            self._started = True
        else:
            self._container.get_wrapped_container().start()
        if wait:
            wait_ping(self.host, self.port, self.password)

    def kill(self) -> None:
        self._container.get_wrapped_container().kill()

    def stop(self) -> None:
        self._container.get_wrapped_container().pause()

    def cont(self) -> None:
        self._container.get_wrapped_container().unpause()

    def restart(self) -> None:
        self.kill()
        self.start()

    def admin(self) -> redis.Redis:
        return redis.Redis(
            host=self.host,
            port=self.port,
            password=self.password,
            socket_timeout=5,
            decode_responses=True,
        )

    def close(self) -> None:
        self._container.stop()


def docker_available() -> bool:
    try:
        import docker  # type: ignore[import-untyped]

        docker.from_env().ping()
        return True
    except Exception:
        return False


def backend() -> str:
    chosen = os.environ.get("SUPERVISOR_TEST_BACKEND", "auto")
    if chosen == "auto":
        return (
            "binary"
            if shutil.which("redis-server")
            else ("docker" if docker_available() else "binary")
        )
    if chosen not in ("binary", "docker"):
        raise RuntimeError(
            f"SUPERVISOR_TEST_BACKEND must be binary, docker or auto, got {chosen!r}"
        )
    return chosen


def make_server(*extra: str, password: str | None = None) -> RedisServer:
    cls = DockerServer if backend() == "docker" else BinaryServer
    server: RedisServer = cls(*extra, password=password)
    server.start()
    return server
