"""Throwaway Sentinel deployments: a master, replicas and sentinels on loopback."""

from __future__ import annotations

import time
from pathlib import Path

import redis

from supervisor.testing.servers import BinaryServer
from supervisor.testing.tls import TLSFiles


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
