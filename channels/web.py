"""The web app: webhooks in, health, metrics. Handlers decode, verify and call ingress.

The webhook answers 202 only after the message is committed in PostgreSQL and never
waits for the turn: platforms want a fast 2xx and retry otherwise.
"""

from __future__ import annotations

import time

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from channels import generic
from channels.devsink import DevSink, mount_dev_sink
from channels.errors import WebhookError, error_response
from channels.metrics import depth_registry, render_metrics
from channels.secrets import read_secret
from channels.signing import SignatureError
from state.ingress import InboxFull
from workers.ingress import Backlog, accept
from workers.runtime import Runtime

log = structlog.get_logger(__name__)

WEBHOOKS = Counter(
    "turnstile_webhook_requests_total",
    "Webhook requests, by channel and status.",
    ["channel", "status"],
)
INGRESS_SECONDS = Histogram(
    "turnstile_ingress_seconds", "Webhook handling time, from body read to answer."
)


def create_app(rt: Runtime) -> FastAPI:
    app = FastAPI(title="Turnstile", docs_url=None, redoc_url=None)
    backlog = Backlog()
    depth = depth_registry(rt.engine)
    _install_error_handlers(app)

    @app.post("/webhooks/{tenant}/generic", status_code=202)
    async def generic_webhook(tenant: str, request: Request) -> JSONResponse:
        started = time.monotonic()
        try:
            body = await _read_body(request, rt.settings.max_body_bytes)
            result = await run_in_threadpool(_ingest_generic, rt, backlog, tenant, request, body)
        except SQLAlchemyError as exc:
            # Not committed, so not accepted: the platform retries, and de-duplication
            # absorbs a retry of a commit whose answer was lost.
            log.error("ingress.store_unavailable", error=type(exc).__name__, tenant=tenant)
            WEBHOOKS.labels(channel=generic.CHANNEL, status="503").inc()
            raise WebhookError(
                503,
                "unavailable",
                "the message store is unavailable; retry later",
                headers={"Retry-After": "5"},
            ) from None
        except WebhookError as exc:
            WEBHOOKS.labels(channel=generic.CHANNEL, status=str(exc.status)).inc()
            raise
        WEBHOOKS.labels(channel=generic.CHANNEL, status="202").inc()
        INGRESS_SECONDS.observe(time.monotonic() - started)
        return JSONResponse(result, status_code=202)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        problems = await run_in_threadpool(_check_services, rt)
        if problems:
            return error_response(503, "not_ready", "; ".join(problems))
        return JSONResponse({"status": "ready"})

    @app.get("/metrics")
    async def metrics() -> Response:
        body = await run_in_threadpool(render_metrics, depth)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    if rt.settings.dev_sink:
        mount_dev_sink(app, rt, DevSink())
    return app


def _install_error_handlers(app: FastAPI) -> None:
    """Every error, ours or the framework's, answers {"error", "detail"}."""

    @app.exception_handler(WebhookError)
    async def _webhook_error(_: Request, exc: WebhookError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.detail, exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return error_response(exc.status_code, code, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(422, "malformed", str(exc.errors()[0].get("msg", "invalid")))

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("web.unexpected_error", error=type(exc).__name__)
        return error_response(500, "internal", "unexpected error; it was logged")


async def _read_body(request: Request, limit: int) -> bytes:
    """The raw body, refusing more than `limit` bytes without reading them all."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise WebhookError(413, "too_large", f"body is over {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise WebhookError(413, "too_large", f"body is over {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _ingest_generic(
    rt: Runtime, backlog: Backlog, tenant: str, request: Request, body: bytes
) -> dict[str, object]:
    config = rt.config.tenant(tenant)
    if config is None or config.channels.generic is None:
        raise WebhookError(404, "unknown_tenant", f"no tenant {tenant!r} with a generic channel")
    secret = read_secret(config.channels.generic.secret_env)
    if secret is None:
        raise WebhookError(
            503,
            "channel_not_configured",
            f"environment variable {config.channels.generic.secret_env} is not set",
        )
    try:
        generic.verify_request(secret, request.headers, body)
    except SignatureError as exc:
        raise WebhookError(401, "bad_signature", str(exc)) from None
    try:
        message = generic.parse_webhook(tenant, body)
    except generic.PayloadError as exc:
        raise WebhookError(422, "malformed", str(exc)) from None
    try:
        accepted = accept(rt, message, backlog)
    except InboxFull as exc:
        raise WebhookError(
            429, "inbox_full", str(exc), headers={"Retry-After": str(exc.retry_after_s)}
        ) from None
    log.info(
        "ingress.accepted",
        tenant=tenant,
        channel=message.channel,
        conversation=accepted.conversation_id,
        seq=accepted.seq,
        duplicate=accepted.duplicate,
    )
    return {"accepted": True, "duplicate": accepted.duplicate, "seq": accepted.seq}


def _check_services(rt: Runtime) -> list[str]:
    problems: list[str] = []
    try:
        rt.redis.ping()
    except Exception as exc:
        problems.append(f"redis: {type(exc).__name__}")
    try:
        with rt.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:
        problems.append(f"postgresql: {type(exc).__name__}")
    return problems
