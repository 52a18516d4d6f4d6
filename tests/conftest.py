"""Real services for the whole suite, started once per test session.

Redis and PostgreSQL are the embedded servers (the same code `make dev` uses) unless
REDIS_URL / DATABASE_URL are set; nothing relies on a server that happens to listen on
this machine's default ports. Tests isolate themselves by tenant: every test writes its
own tenant file, so conversations, keys and rows never collide.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml

from channels.web import create_app
from config.settings import Settings
from state.embedded import EmbeddedPostgres, EmbeddedRedis
from state.migrate import upgrade
from tasks.app import TurnstileCelery, create_celery_app
from tests.support.callbacks import CallbackServer
from tests.support.processes import Proc, spawn, wait_for_workers
from tests.support.webserver import WebServer, free_port
from workers.runtime import Runtime

TEST_SECRET_ENV = "TURNSTILE_TEST_SECRET"
TEST_SECRET = "test-secret-0123456789"

# Tuned so failure paths finish in seconds: short leases, fast delivery backoff.
GLOBAL_CONFIG = {
    "version": 1,
    "limits": {"max_queued_turns": 1_000_000},
    "defaults": {"limits": {"max_inbox_per_conversation": 1000}},
    "ordering": {"lease_ttl_s": 3, "drain_max_turns": 50, "drain_max_s": 10, "max_attempts": 3},
    "delivery": {
        "max_attempts": 4,
        "backoff_initial_s": 0.2,
        "backoff_max_s": 1,
        "timeout_s": 3,
    },
}


@dataclass(frozen=True)
class Services:
    redis_url: str
    broker_url: str
    database_url: str


@pytest.fixture(scope="session")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    root = tmp_path_factory.mktemp("services")
    started: list[EmbeddedRedis | EmbeddedPostgres] = []
    redis_url = os.environ.get("REDIS_URL")
    broker_url = os.environ.get("BROKER_URL")
    database_url = os.environ.get("DATABASE_URL")
    try:
        if not redis_url:
            embedded_redis = EmbeddedRedis(root / "redis").start()
            started.append(embedded_redis)
            redis_url, broker_url = embedded_redis.url(0), embedded_redis.url(1)
        if not database_url:
            embedded_pg = EmbeddedPostgres(root / "postgres").start()
            started.append(embedded_pg)
            database_url = embedded_pg.create_database("turnstile_test", replace=True)
        upgrade(database_url)
        yield Services(redis_url, broker_url or redis_url, database_url)
    finally:
        for service in reversed(started):
            service.stop()


@pytest.fixture(scope="session")
def config_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("config")
    (path / "tenants").mkdir()
    (path / "global.yaml").write_text(yaml.safe_dump(GLOBAL_CONFIG))
    return path


@pytest.fixture(scope="session")
def service_env(services: Services, config_dir: Path) -> dict[str, str]:
    """The environment every Turnstile process of the test session runs with."""
    return {
        "REDIS_URL": services.redis_url,
        "BROKER_URL": services.broker_url,
        "DATABASE_URL": services.database_url,
        "TURNSTILE_CONFIG_DIR": str(config_dir),
        TEST_SECRET_ENV: TEST_SECRET,
        "TURNSTILE_SWEEP_INTERVAL_S": "0.5",
    }


@pytest.fixture(scope="session")
def settings(service_env: dict[str, str]) -> Iterator[Settings]:
    previous = {key: os.environ.get(key) for key in service_env}
    os.environ.update(service_env)  # secrets are read from the environment at use
    yield Settings()
    for key, value in previous.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


TenantFactory = Callable[..., str]


def tenant_document(
    callback_url: str, channel: dict[str, object] | None, version: int, agent: dict[str, object]
) -> dict[str, object]:
    generic = {"secret_env": TEST_SECRET_ENV, "callback_url": callback_url, **(channel or {})}
    return {
        "version": version,
        "agent": {"kind": "echo", **agent},
        "channels": {"generic": generic},
    }


@pytest.fixture
def make_tenant(config_dir: Path) -> TenantFactory:
    """Write a fresh tenant file; returns its id. Each test gets tenants of its own."""

    def _make(
        callback_url: str = "http://127.0.0.1:9/unused",
        channel: dict[str, object] | None = None,
        **agent: object,
    ) -> str:
        tenant = f"t-{uuid.uuid4().hex[:12]}"
        document = tenant_document(callback_url, channel, 1, agent)
        (config_dir / "tenants" / f"{tenant}.yaml").write_text(yaml.safe_dump(document))
        return tenant

    return _make


@pytest.fixture
def callback_server() -> Iterator[CallbackServer]:
    server = CallbackServer(secret=TEST_SECRET).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def celery_client(settings: Settings) -> Iterator[TurnstileCelery]:
    """A Celery app on the test broker, as the web process has it (it only sends)."""
    app = create_celery_app(settings)
    yield app
    app.close_runtime()


@pytest.fixture(scope="session")
def runtime(celery_client: TurnstileCelery) -> Runtime:
    return celery_client.runtime


@pytest.fixture(scope="session")
def system(
    service_env: dict[str, str],
    celery_client: TurnstileCelery,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[list[Proc]]:
    """Real worker processes (3 prefork children) and beat, shared by the e2e tests."""
    logs = tmp_path_factory.mktemp("logs")
    env = {
        **service_env,
        "TURNSTILE_WORKER_CONCURRENCY": "3",
        "TURNSTILE_DATA_DIR": str(logs),
        "TURNSTILE_WORKER_METRICS_PORT": str(free_port()),
    }
    worker = spawn("worker", ["worker"], env, logs)
    beat = spawn("beat", ["beat"], env, logs)
    procs = [worker, beat]
    try:
        wait_for_workers(celery_client, 1, worker)
        yield procs
    finally:
        for proc in procs:
            proc.stop()


@pytest.fixture(scope="session")
def web_server(runtime: Runtime) -> Iterator[WebServer]:
    """The real web app under uvicorn on a loopback port, for the whole session."""
    server = WebServer(create_app(runtime)).start()
    yield server
    server.stop()


@pytest.fixture
def web(web_server: WebServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=web_server.url, timeout=10) as client:
        yield client
