"""The `turnstile` command. Results go to stdout (only JSON with --json), logs to stderr.

`web`, `worker`, `beat` and `migrate` take everything from the environment, so many of
them can run side by side against the same services.
"""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
from pathlib import Path

import httpx
import typer

from config.settings import Settings, SettingsError, load_settings

cli = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)


def _settings() -> Settings:
    """Settings, with logs set up to go to stderr: stdout is for results only."""
    from workers.logging import configure_logging

    try:
        settings = load_settings()
    except SettingsError as exc:
        typer.echo(f"turnstile: {exc}", err=True)
        raise typer.Exit(2) from None
    configure_logging(settings.log_level)
    return _with_running_dev_services(settings)


def _with_running_dev_services(settings: Settings) -> Settings:
    """Commands run beside `turnstile dev` (another terminal, same checkout) use its
    embedded services when no URL is set."""
    from workers.devserver import read_services_file

    if settings.redis_url and settings.database_url:
        return settings
    found = read_services_file(settings.data_dir)
    if not found:
        return settings
    updates = {
        "redis_url": settings.redis_url or found.get("REDIS_URL"),
        "broker_url": settings.broker_url or found.get("BROKER_URL"),
        "database_url": settings.database_url or found.get("DATABASE_URL"),
    }
    return settings.model_copy(update=updates)


def _require(settings: Settings) -> None:
    try:
        settings.require_services()
    except SettingsError as exc:
        typer.echo(f"turnstile: {exc}", err=True)
        raise typer.Exit(2) from None


def _celery_level(settings: Settings) -> str:
    """Celery logs every task at INFO (sweeps run every few seconds): keep it for DEBUG."""
    return "WARNING" if settings.log_level == "INFO" else settings.log_level


@cli.command()
def dev() -> None:
    """Run the whole system here: embedded Redis/PostgreSQL unless URLs are set, web,
    one worker, beat and Flower. Ctrl-C stops all of it."""
    from workers.devserver import run_dev

    raise typer.Exit(run_dev(_settings()))


@cli.command()
def migrate() -> None:
    """Apply database migrations (idempotent)."""
    settings = _settings()
    _require(settings)
    from state.migrate import upgrade

    assert settings.database_url is not None
    upgrade(settings.database_url)
    typer.echo("migrations applied", err=True)


@cli.command()
def web() -> None:
    """Serve webhooks, health and metrics on TURNSTILE_HTTP_HOST:TURNSTILE_HTTP_PORT."""
    settings = _settings()
    _require(settings)
    import uvicorn

    from channels.web import create_app
    from tasks.app import CeleryWakeups
    from tasks.app import app as celery_app
    from workers.runtime import bootstrap

    runtime = bootstrap(settings, CeleryWakeups(celery_app), role="web")
    uvicorn.run(
        create_app(runtime),
        host=settings.http_host,
        port=settings.http_port,
        log_level=settings.log_level.lower(),
        access_log=False,
    )


@cli.command()
def worker(
    queues: str = typer.Option(
        "turns.voice,turns.chat,delivery,maintenance", help="Comma-separated queues to consume."
    ),
) -> None:
    """Run a Celery worker (TURNSTILE_WORKER_CONCURRENCY processes, else one per CPU)."""
    settings = _settings()
    _require(settings)
    from workers import metrics_server

    if settings.worker_metrics_port:
        metrics_server.prepare(settings.data_dir)
    from tasks.app import app as celery_app

    if settings.worker_metrics_port:
        metrics_server.serve(settings.worker_metrics_port, settings.http_host)
    argv = ["worker", "-Q", queues, "-O", "fair", f"--loglevel={_celery_level(settings)}"]
    if settings.worker_concurrency:
        argv.append(f"--concurrency={settings.worker_concurrency}")
    celery_app.worker_main(argv)


@cli.command()
def beat() -> None:
    """Run the periodic sweeps. Run exactly one beat per deployment."""
    settings = _settings()
    _require(settings)
    from tasks.app import app as celery_app

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    schedule = settings.data_dir / "celerybeat-schedule"
    celery_app.start(["beat", "-s", str(schedule), f"--loglevel={_celery_level(settings)}"])


@cli.command()
def flower() -> None:
    """Run Flower (Celery monitoring) on 127.0.0.1:TURNSTILE_FLOWER_PORT."""
    settings = _settings()
    _require(settings)
    from tasks.app import app as celery_app

    celery_app.start(
        [
            "flower",
            f"--port={settings.flower_port}",
            "--address=127.0.0.1",
            "--purge_offline_workers=60",
        ]
    )


@cli.command()
def send(
    text: str = typer.Argument(..., help="The message text."),
    tenant: str = typer.Option("demo", help="Tenant id."),
    conversation: str = typer.Option("cli", help="Conversation id."),
    user: str = typer.Option("cli-user", help="User id."),
    url: str = typer.Option("", help="Web base URL (default: TURNSTILE_HTTP_HOST/PORT)."),
    secret_env: str = typer.Option("TURNSTILE_DEMO_SECRET", help="Variable holding the secret."),
    wait_s: float = typer.Option(15.0, help="How long to wait for the reply (0: don't)."),
    as_json: bool = typer.Option(False, "--json", help="Print only JSON."),
) -> None:
    """Send a signed message to the generic webhook and print the reply the user gets
    (read from the dev sink of `turnstile dev`)."""
    from channels.signing import sign

    settings = _settings()
    base = url or f"http://{settings.http_host}:{settings.http_port}"
    secret = os.environ.get(secret_env)
    if not secret:
        typer.echo(f"turnstile: {secret_env} is not set", err=True)
        raise typer.Exit(2)
    message_id = uuid.uuid4().hex
    body = json.dumps(
        {"conversation_id": conversation, "user_id": user, "message_id": message_id, "text": text}
    ).encode()
    timestamp = int(time.time())
    headers = {
        "Content-Type": "application/json",
        "X-Turnstile-Timestamp": str(timestamp),
        "X-Turnstile-Signature": sign(secret, timestamp, body),
    }
    with httpx.Client(timeout=wait_s + 10) as http:
        response = http.post(f"{base}/webhooks/{tenant}/generic", content=body, headers=headers)
        if response.status_code != 202:
            typer.echo(
                f"turnstile: webhook answered {response.status_code}: {response.text}", err=True
            )
            raise typer.Exit(1)
        accepted = response.json()
        reply = _wait_for_reply(http, base, tenant, conversation, accepted["seq"], wait_s)
    result = {**accepted, "message_id": message_id, "reply": reply}
    if as_json:
        typer.echo(json.dumps(result))
    elif reply is None:
        typer.echo(f"accepted as seq {accepted['seq']}; no reply within {wait_s:g} s")
    else:
        typer.echo(f"bot: {reply['text']}")
    if wait_s > 0 and reply is None:
        raise typer.Exit(1)


def _wait_for_reply(
    http: httpx.Client, base: str, tenant: str, conversation: str, seq: int, wait_s: float
) -> dict[str, object] | None:
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        remaining = max(0.0, min(10.0, deadline - time.monotonic()))
        response = http.get(
            f"{base}/dev/sink/{tenant}/{conversation}",
            params={"after_seq": seq - 1, "wait_s": remaining},
        )
        if response.status_code == 404:
            return None  # no dev sink here: the reply went to the tenant's own callback
        for reply in response.json()["replies"]:
            if reply["seq"] == seq and reply["type"] == "message":
                return dict(reply)
    return None


config_cli = typer.Typer(no_args_is_help=True, help="Inspect and check tenant/global config.")
cli.add_typer(config_cli, name="config")


@config_cli.command("validate")
def config_validate(
    directory: Path | None = typer.Argument(None, help="Folder like config/files."),
    against: Path | None = typer.Option(
        None, help="The deployed folder to compare versions with (default: the current one)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print only JSON."),
) -> None:
    """Check files before they ship: schema, and a version raised on every change."""
    from workers import config_commands

    settings = _settings()
    target = directory or settings.config_dir
    baseline = against
    if baseline is None and target.resolve() != settings.config_dir.resolve():
        baseline = settings.config_dir
    raise typer.Exit(config_commands.validate(target, baseline, as_json))


@config_cli.command("show")
def config_show(
    tenant: str = typer.Argument(..., help="Tenant id."),
    as_json: bool = typer.Option(False, "--json", help="Print only JSON."),
) -> None:
    """The tenant's effective config (tenant over global), secrets masked."""
    from config.registry import ConfigRegistry
    from workers import config_commands

    settings = _settings()
    raise typer.Exit(config_commands.show(ConfigRegistry(settings.config_dir), tenant, as_json))


@config_cli.command("status")
def config_status(as_json: bool = typer.Option(False, "--json", help="Print only JSON.")) -> None:
    """Config versions each running process serves (from Redis), and any skew."""
    from redis import Redis

    from workers import config_commands

    settings = _settings()
    _require(settings)
    assert settings.redis_url is not None
    raise typer.Exit(config_commands.status(Redis.from_url(settings.redis_url), as_json))


bench = typer.Typer(
    no_args_is_help=True,
    help="Benchmarks with real worker processes (embedded services unless URLs are set).",
)
cli.add_typer(bench, name="bench")


@bench.command("ordering")
def bench_ordering(
    workers: str = typer.Option("1,2,4", help="Worker process counts to measure, comma-separated."),
    messages: int = typer.Option(2000, min=1, help="Messages (and no-op tasks) per count."),
    conversations: int = typer.Option(200, min=1, help="Conversations the messages spread over."),
    open_loop_s: float = typer.Option(
        5.0, min=0.0, help="Length of each open-loop phase at the largest count (0: skip them)."
    ),
    timeout_s: float = typer.Option(120.0, min=1.0, help="Limit on every wait."),
    as_json: bool = typer.Option(False, "--json", help="Print only JSON."),
) -> None:
    """Turns/s against raw Celery no-op tasks/s, queue lag, and head-of-line blocking."""
    from workers.bench import run_ordering_bench

    raise typer.Exit(
        run_ordering_bench(workers, messages, conversations, open_loop_s, timeout_s, as_json)
    )


def main() -> None:
    try:
        cli()
    except SettingsError as exc:
        typer.echo(f"turnstile: {exc}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
