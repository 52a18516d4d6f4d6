"""The generic webhook's public contract, over real HTTP, with real PostgreSQL and Redis."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from sqlalchemy import text

from channels.web import create_app
from config.settings import Settings
from tasks.app import create_celery_app
from tests.conftest import GLOBAL_CONFIG, TEST_SECRET, TEST_SECRET_ENV, TenantFactory
from tests.support.webhooks import payload, post_signed, signed_headers
from tests.support.webserver import WebServer
from workers.runtime import Runtime


def recorded(runtime: Runtime, tenant: str) -> tuple[int, int]:
    """(conversations, inbound messages) stored for `tenant`."""
    with runtime.engine.connect() as conn:
        conversations = conn.execute(
            text("SELECT count(*) FROM conversations WHERE tenant = :t"), {"t": tenant}
        ).scalar_one()
        messages = conn.execute(
            text("SELECT count(*) FROM inbound_messages WHERE tenant = :t"), {"t": tenant}
        ).scalar_one()
    return conversations, messages


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["error"] == code
    assert isinstance(body["detail"], str)
    assert body["detail"]


def test_accepted_message_answers_202_with_seq(
    web: httpx.Client, make_tenant: TenantFactory, runtime: Runtime
) -> None:
    tenant = make_tenant()
    first = post_signed(web, tenant, TEST_SECRET, payload("c1"))
    second = post_signed(web, tenant, TEST_SECRET, payload("c1"))
    assert first.status_code == 202
    assert first.json() == {"accepted": True, "duplicate": False, "seq": 1}
    assert second.json() == {"accepted": True, "duplicate": False, "seq": 2}
    assert recorded(runtime, tenant) == (1, 2)


def test_same_webhook_three_times_is_recorded_once(
    web: httpx.Client, make_tenant: TenantFactory, runtime: Runtime
) -> None:
    tenant = make_tenant()
    document = payload("c1")
    answers = [post_signed(web, tenant, TEST_SECRET, document).json() for _ in range(3)]
    assert [a["duplicate"] for a in answers] == [False, True, True]
    assert {a["seq"] for a in answers} == {1}
    assert recorded(runtime, tenant) == (1, 1)


def test_text_is_stored_without_control_characters(
    web: httpx.Client, make_tenant: TenantFactory, runtime: Runtime
) -> None:
    tenant = make_tenant()
    assert (
        post_signed(web, tenant, TEST_SECRET, payload(text="a\x00b\tc\nd\x1b")).status_code == 202
    )
    with runtime.engine.connect() as conn:
        stored = conn.execute(
            text("SELECT text FROM inbound_messages WHERE tenant = :t"), {"t": tenant}
        ).scalar_one()
    assert stored == "ab\tc\nd"


def _post(web: httpx.Client, tenant: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
    return web.post(f"/webhooks/{tenant}/generic", content=body, headers=headers)


BadRequest = Callable[[], tuple[bytes, dict[str, str]]]
BoundedWeb = Callable[[dict[str, int], dict[str, int]], tuple[httpx.Client, str]]


def _body() -> bytes:
    return json.dumps(payload()).encode()


CASES: dict[str, tuple[BadRequest, int, str]] = {
    "bad signature": (
        lambda: (_body(), signed_headers("wrong-secret", _body())),
        401,
        "bad_signature",
    ),
    "missing signature": (
        lambda: (_body(), {"Content-Type": "application/json"}),
        401,
        "bad_signature",
    ),
    "stale timestamp": (
        lambda: (_body(), signed_headers(TEST_SECRET, _body(), int(time.time()) - 301)),
        401,
        "bad_signature",
    ),
    "future timestamp": (
        lambda: (_body(), signed_headers(TEST_SECRET, _body(), int(time.time()) + 301)),
        401,
        "bad_signature",
    ),
    "malformed json": (
        lambda: (b"{not json", signed_headers(TEST_SECRET, b"{not json")),
        422,
        "malformed",
    ),
    "missing field": (
        lambda: (
            b'{"conversation_id": "c", "user_id": "u", "text": "hi"}',
            signed_headers(TEST_SECRET, b'{"conversation_id": "c", "user_id": "u", "text": "hi"}'),
        ),
        422,
        "malformed",
    ),
    "empty id": (
        lambda: (
            b'{"conversation_id": "", "user_id": "u", "message_id": "m", "text": "hi"}',
            signed_headers(
                TEST_SECRET,
                b'{"conversation_id": "", "user_id": "u", "message_id": "m", "text": "hi"}',
            ),
        ),
        422,
        "malformed",
    ),
    "json array": (lambda: (b"[]", signed_headers(TEST_SECRET, b"[]")), 422, "malformed"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_gets_its_status_and_enqueues_nothing(
    case: str, web: httpx.Client, make_tenant: TenantFactory, runtime: Runtime
) -> None:
    build, status, code = CASES[case]
    tenant = make_tenant()
    body, headers = build()
    assert_error(_post(web, tenant, body, headers), status, code)
    assert recorded(runtime, tenant) == (0, 0)


def test_missing_field_is_named(web: httpx.Client, make_tenant: TenantFactory) -> None:
    tenant = make_tenant()
    body = b'{"conversation_id": "c", "user_id": "u", "text": "hi"}'
    response = _post(web, tenant, body, signed_headers(TEST_SECRET, body))
    assert "message_id" in response.json()["detail"]


def test_unknown_tenant_is_404(web: httpx.Client, runtime: Runtime) -> None:
    body = _body()
    assert_error(
        _post(web, "no-such-tenant", body, signed_headers(TEST_SECRET, body)), 404, "unknown_tenant"
    )
    assert recorded(runtime, "no-such-tenant") == (0, 0)


def test_oversized_body_is_413_declared_or_streamed(
    web: httpx.Client, make_tenant: TenantFactory, runtime: Runtime, settings: Settings
) -> None:
    tenant = make_tenant()
    document = payload(text="x" * settings.max_body_bytes)
    body = json.dumps(document).encode()
    assert_error(_post(web, tenant, body, signed_headers(TEST_SECRET, body)), 413, "too_large")

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit holds while streaming
        for start in range(0, len(body), 65536):
            yield body[start : start + 65536]

    streamed = web.post(
        f"/webhooks/{tenant}/generic", content=chunks(), headers=signed_headers(TEST_SECRET, body)
    )
    assert_error(streamed, 413, "too_large")
    assert recorded(runtime, tenant) == (0, 0)


def test_framework_errors_have_the_same_shape(web: httpx.Client) -> None:
    assert_error(web.get("/webhooks/x/generic"), 405, "method_not_allowed")
    assert_error(web.get("/nowhere"), 404, "not_found")


def test_missing_secret_variable_is_503(
    web: httpx.Client, config_dir: Path, runtime: Runtime
) -> None:
    tenant = "t-nosecret"
    (config_dir / "tenants" / f"{tenant}.yaml").write_text(
        yaml.safe_dump(
            {
                "version": 1,
                "channels": {
                    "generic": {
                        "secret_env": "UNSET_SECRET_VAR",
                        "callback_url": "http://x.example/",
                    }
                },
            }
        )
    )
    body = _body()
    assert_error(
        _post(web, tenant, body, signed_headers(TEST_SECRET, body)), 503, "channel_not_configured"
    )


def test_health_readiness_and_metrics(web: httpx.Client, make_tenant: TenantFactory) -> None:
    assert web.get("/healthz").json() == {"status": "ok"}
    assert web.get("/readyz").json() == {"status": "ready"}
    tenant = make_tenant()
    post_signed(web, tenant, TEST_SECRET, payload())
    metrics = web.get("/metrics").text
    assert 'turnstile_webhook_requests_total{channel="generic",status="202"}' in metrics
    assert "tenant" not in metrics.split("turnstile_webhook_requests_total")[1].split("\n")[0]


@pytest.fixture
def bounded_web(settings: Settings, tmp_path: Path) -> Iterator[BoundedWeb]:
    """A web app with its own limits (global ones, and the tenant's own), whose wake-ups
    go to a broker database no worker consumes, so accepted messages stay pending."""
    servers: list[tuple[WebServer, Runtime, httpx.Client]] = []

    def _start(
        global_limits: dict[str, int], tenant_limits: dict[str, int]
    ) -> tuple[httpx.Client, str]:
        directory = tmp_path / f"config{len(servers)}"
        (directory / "tenants").mkdir(parents=True)
        document = {**GLOBAL_CONFIG, "limits": global_limits}
        (directory / "global.yaml").write_text(yaml.safe_dump(document))
        tenant = f"t-bounded{len(servers)}"
        channel = {"secret_env": TEST_SECRET_ENV, "callback_url": "http://x.example/"}
        tenant_document = {"version": 1, "channels": {"generic": channel}}
        if tenant_limits:
            tenant_document["limits"] = tenant_limits
        (directory / "tenants" / f"{tenant}.yaml").write_text(yaml.safe_dump(tenant_document))
        assert settings.redis_url is not None
        idle_broker = settings.redis_url.rsplit("/", 1)[0] + "/7"
        isolated = settings.model_copy(update={"config_dir": directory, "broker_url": idle_broker})
        celery = create_celery_app(isolated)
        server = WebServer(create_app(celery.runtime)).start()
        client = httpx.Client(base_url=server.url, timeout=10)
        servers.append((server, celery.runtime, client))
        return client, tenant

    yield _start
    for server, rt, client in servers:
        client.close()
        server.stop()
        rt.close()


def test_full_conversation_inbox_answers_429_and_keeps_what_it_accepted(
    bounded_web: BoundedWeb, runtime: Runtime
) -> None:
    """The tenant's own bound (over the global default of 1000) applies."""
    client, tenant = bounded_web({}, {"max_inbox_per_conversation": 2, "retry_after_s": 7})
    assert [
        post_signed(client, tenant, TEST_SECRET, payload("c")).status_code for _ in range(2)
    ] == [202, 202]
    full = post_signed(client, tenant, TEST_SECRET, payload("c"))
    assert_error(full, 429, "inbox_full")
    assert full.headers["Retry-After"] == "7"
    assert post_signed(client, tenant, TEST_SECRET, payload("other")).status_code == 202
    assert recorded(runtime, tenant) == (2, 3)


def test_global_backlog_bound_answers_429(bounded_web: BoundedWeb, runtime: Runtime) -> None:
    client, tenant = bounded_web({"max_queued_turns": 1, "retry_after_s": 9}, {})
    first = post_signed(client, tenant, TEST_SECRET, payload("c"))
    time.sleep(1.1)  # the backlog count is refreshed at most once a second
    assert first.status_code in (202, 429)  # other tests may already fill the bound
    refused = post_signed(client, tenant, TEST_SECRET, payload("c"))
    assert_error(refused, 429, "inbox_full")
    assert refused.headers["Retry-After"] == "9"


def test_unreachable_database_is_503_with_retry_after(
    settings: Settings, make_tenant: TenantFactory
) -> None:
    """Nothing was committed, so nothing is accepted: the platform is told to retry."""
    tenant = make_tenant()
    nowhere = "postgresql://turnstile@127.0.0.1:1/turnstile?connect_timeout=1"
    broken = settings.model_copy(update={"database_url": nowhere})
    celery = create_celery_app(broken)
    server = WebServer(create_app(celery.runtime)).start()
    try:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            response = post_signed(client, tenant, TEST_SECRET, payload())
            ready = client.get("/readyz")
    finally:
        server.stop()
        celery.close_runtime()
    assert_error(response, 503, "unavailable")
    assert response.headers["Retry-After"] == "5"
    assert_error(ready, 503, "not_ready")
    assert "postgresql" in ready.json()["detail"]


def test_deleted_tenant_file_stops_its_traffic_with_a_clear_error(
    web: httpx.Client, make_tenant: TenantFactory, config_dir: Path
) -> None:
    tenant = make_tenant()
    assert post_signed(web, tenant, TEST_SECRET, payload()).status_code == 202
    (config_dir / "tenants" / f"{tenant}.yaml").unlink()
    time.sleep(1.1)  # files are re-checked at most once a second
    assert_error(post_signed(web, tenant, TEST_SECRET, payload()), 404, "unknown_tenant")
    assert web.get("/healthz").status_code == 200
