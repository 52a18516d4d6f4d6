"""`turnstile bench ordering`: throughput and queue lag of real worker processes.

What it answers, on this machine, against real Redis, PostgreSQL and Celery workers:
- turns/s for 1, 2, 4 worker processes, next to raw Celery no-op tasks/s on the same
  broker with the same settings: the ratio is the price of ordering and durability;
- queue lag (started_at - received_at, from PostgreSQL) in a closed loop (everything
  ingested at once, so lag is mostly backlog) and in an open loop at half capacity;
- head-of-line blocking: the open loop again, plus one slow conversation of another
  tenant; the other conversations' lag should barely move.

Services are the embedded ones (state/embedded.py) unless REDIS_URL / DATABASE_URL are
set; config, data and logs live in a temporary folder that is removed at the end. Every
process the bench starts is stopped in a `finally`, also on Ctrl-C and SIGTERM.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import Any

import yaml
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from sqlalchemy import Engine, text

from state.models import InboundMessage
from workers.process_groups import stop_group

SECRET_ENV = "TURNSTILE_BENCH_SECRET"  # noqa: S105 - the variable's name, not a secret
DATABASE_NAME = "turnstile_bench"
CHANNEL = "generic"
INGEST_THREADS = 8  # enough that ingest is not what limits a closed-loop run
POLL_S = 0.02
STOP_TIMEOUT_S = 20.0
READY_TIMEOUT_S = 60.0
OPEN_LOOP_FRACTION = 0.5  # the open-loop rate, as a share of the measured turns/s
SLOW_LATENCY_MS = 2000
SLOW_EVERY_S = 0.5

_DONE = text("SELECT count(*) FROM inbound_messages WHERE tenant = :tenant AND status = 'done'")
_SENT = text("SELECT count(*) FROM outbox WHERE tenant = :tenant AND status = 'sent'")
_LAG = text(
    """
    SELECT count(*) AS n,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY lag_s) AS p50,
           percentile_cont(0.99) WITHIN GROUP (ORDER BY lag_s) AS p99
    FROM (
        SELECT CAST(EXTRACT(EPOCH FROM started_at - received_at) AS double precision) AS lag_s
        FROM inbound_messages WHERE tenant = :tenant AND status = 'done'
    ) AS lags
    """
)


class BenchError(RuntimeError):
    """A phase could not finish (timeout, a process died); the text says which and why."""


class BenchUsageError(BenchError):
    """An option the bench cannot use (exit code 2, like any usage error)."""


class Interrupted(BaseException):
    """SIGTERM, turned into an exception so that every `finally` still runs."""


# --------------------------------------------------------------------------- options


@dataclass(frozen=True)
class BenchOptions:
    workers: tuple[int, ...]
    messages: int
    conversations: int
    open_loop_s: float
    timeout_s: float
    as_json: bool

    @property
    def largest(self) -> int:
        return max(self.workers)


def parse_worker_counts(value: str) -> tuple[int, ...]:
    """Parse "1,2,4" into (1, 2, 4), sorted and de-duplicated: the largest count runs
    last, and the open-loop phases run with it."""
    try:
        counts = sorted({int(part) for part in value.split(",") if part.strip()})
    except ValueError:
        raise BenchUsageError(
            f"--workers must be comma-separated integers, not {value!r}"
        ) from None
    if not counts or counts[0] < 1:
        raise BenchUsageError(f"--workers needs at least one count >= 1, not {value!r}")
    return tuple(counts)


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class Lag:
    """Queue lag percentiles over the done messages of one tenant, in milliseconds."""

    messages: int
    p50_ms: float | None  # None: no message was done
    p99_ms: float | None


@dataclass(frozen=True)
class TurnRun:
    workers: int
    messages: int
    elapsed_s: float  # first ingest -> every message done
    replied_s: float  # first ingest -> every reply accepted by the callback endpoint
    lag: Lag

    @property
    def turns_per_s(self) -> float:
        return self.messages / self.elapsed_s

    @property
    def replied_per_s(self) -> float:
        return self.messages / self.replied_s


@dataclass(frozen=True)
class BacklogRun:
    """A backlog ingested with no worker running, then drained: worker throughput alone,
    from the first turn's start to the last turn's end (PostgreSQL's clock)."""

    workers: int
    messages: int
    ingest_s: float
    drain_s: float

    @property
    def turns_per_s(self) -> float:
        return self.messages / self.drain_s

    @property
    def ingest_per_s(self) -> float:
        return self.messages / self.ingest_s


@dataclass(frozen=True)
class NoopRun:
    workers: int
    tasks: int
    elapsed_s: float

    @property
    def tasks_per_s(self) -> float:
        return self.tasks / self.elapsed_s


@dataclass(frozen=True)
class OpenLoopRun:
    workers: int
    rate_per_s: float
    duration_s: float
    messages: int
    lag: Lag
    slow_sent: int = 0
    slow_done: int = 0


@dataclass
class BenchReport:
    options: BenchOptions
    turns: list[TurnRun] = field(default_factory=list)
    backlog: list[BacklogRun] = field(default_factory=list)
    noop: list[NoopRun] = field(default_factory=list)
    open_loop: OpenLoopRun | None = None
    with_slow: OpenLoopRun | None = None


# --------------------------------------------------------------------------- progress


class Reporter:
    """Progress bars and status lines on stderr; stdout stays for the result."""

    def __init__(self) -> None:
        self.console = Console(stderr=True)
        self._progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=self.console,
        )

    def __enter__(self) -> Reporter:
        self._progress.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._progress.stop()

    def status(self, message: str) -> None:
        self._progress.console.log(message)

    @contextmanager
    def phase(self, description: str, total: int) -> Iterator[Callable[[int], None]]:
        """A bar for one wait; yields a function that sets how far it got."""
        task = self._progress.add_task(description, total=total)
        try:
            yield lambda completed: self._progress.update(task, completed=completed)
        finally:
            self._progress.remove_task(task)


# --------------------------------------------------------------------------- services


@dataclass(frozen=True)
class ServiceUrls:
    redis_url: str
    broker_url: str
    database_url: str


def start_services(stack: ExitStack, root: Path, reporter: Reporter) -> ServiceUrls:
    """The URLs from the environment, or embedded servers (stopped by `stack`) for the
    ones that are unset; the database is migrated either way."""
    from state.embedded import EmbeddedPostgres, EmbeddedRedis
    from state.migrate import upgrade

    redis_url = os.environ.get("REDIS_URL")
    broker_url = os.environ.get("BROKER_URL")
    database_url = os.environ.get("DATABASE_URL")
    if not redis_url:
        reporter.status("starting embedded Redis")
        embedded_redis = EmbeddedRedis(root / "redis")
        stack.callback(embedded_redis.stop)  # before start(): a Ctrl-C inside it still stops it
        embedded_redis.start()
        redis_url, broker_url = embedded_redis.url(0), embedded_redis.url(1)
    if not database_url:
        reporter.status("starting embedded PostgreSQL")
        embedded_pg = EmbeddedPostgres(root / "postgres")
        stack.callback(embedded_pg.stop)
        with warnings.catch_warnings():
            # platformdirs complains about a shared XDG_RUNTIME_DIR; harmless here.
            warnings.simplefilter("ignore")
            embedded_pg.start()
        database_url = embedded_pg.create_database(DATABASE_NAME, replace=True)
    upgrade(database_url)
    return ServiceUrls(redis_url, broker_url or redis_url, database_url)


@contextmanager
def patched_environ(updates: Mapping[str, str]) -> Iterator[None]:
    """Settings and channel secrets are read from os.environ; restore it afterwards."""
    previous = {key: os.environ.get(key) for key in updates}
    os.environ.update(updates)
    try:
        yield
    finally:
        for key, value in previous.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextmanager
def sigterm_as_exception() -> Iterator[None]:
    """A SIGTERM would end the process without running `finally`; raise instead."""

    def _raise(signum: int, _frame: FrameType | None) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second one must not cut cleanup short
        raise Interrupted(signum)

    previous = signal.signal(signal.SIGTERM, _raise)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


# --------------------------------------------------------------------------- callback sink


class _OkHandler(BaseHTTPRequestHandler):
    """Answers 200 to every POST, keeping the connection open as real endpoints do."""

    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_: Any) -> None:
        return


@contextmanager
def callback_sink() -> Iterator[str]:
    """A tenant callback endpoint on a random loopback port; yields its URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _OkHandler)
    thread = threading.Thread(target=server.serve_forever, name="bench-sink", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/replies"
    finally:
        server.shutdown()
        server.server_close()


# --------------------------------------------------------------------------- config


@dataclass(frozen=True)
class BenchTenants:
    """A fresh tenant per measured run, so runs never mix in PostgreSQL."""

    turns: dict[int, str]
    backlog: dict[int, str]
    open_loop: str
    with_slow: str
    slow: str

    @classmethod
    def fresh(cls, worker_counts: Sequence[int]) -> BenchTenants:
        run = uuid.uuid4().hex[:8]
        return cls(
            turns={n: f"bench-{run}-n{n}" for n in worker_counts},
            backlog={n: f"bench-{run}-b{n}" for n in worker_counts},
            open_loop=f"bench-{run}-open",
            with_slow=f"bench-{run}-hol",
            slow=f"bench-{run}-slow",
        )

    def latencies(self) -> dict[str, int]:
        """Each tenant's echo latency in ms: all instant, except the slow one."""
        fast = [*self.turns.values(), *self.backlog.values(), self.open_loop, self.with_slow]
        return {**dict.fromkeys(fast, 0), self.slow: SLOW_LATENCY_MS}


def global_document() -> dict[str, Any]:
    """config/files/global.yaml's structure, with limits raised so nothing answers 429."""
    return {
        "version": 1,
        "models": {"chat": "gpt-4o-mini", "embedding": "text-embedding-3-small"},
        "defaults": {
            "prompt": {"brand_voice": "helpful, brief", "system_prompt": ""},
            "session": {"inactivity_ttl_s": 1800, "history_turns": 20},
            "compliance": {"pii_redaction": True, "retention_days": 30, "data_region": "eu"},
            "limits": {"max_inbox_per_conversation": 1_000_000, "retry_after_s": 2},
        },
        "limits": {"max_queued_turns": 100_000_000, "retry_after_s": 5},
        # drain_max_s below the default (20) only bounds how long the slow conversation
        # holds a process before it yields, so stopping the worker afterwards is quick.
        "ordering": {
            "lease_ttl_s": 10,
            "drain_max_turns": 50,
            "drain_max_s": 5,
            "max_attempts": 5,
        },
        "delivery": {
            "max_attempts": 8,
            "backoff_initial_s": 1,
            "backoff_max_s": 300,
            "timeout_s": 10,
        },
    }


def tenant_document(callback_url: str, latency_ms: int) -> dict[str, Any]:
    return {
        "version": 1,
        "agent": {"kind": "echo", "latency_ms": [latency_ms, latency_ms], "prefix": ""},
        "channels": {
            "generic": {
                "secret_env": SECRET_ENV,
                "callback_url": callback_url,
                "concurrency": "queue",
            }
        },
    }


def write_config(config_dir: Path, callback_url: str, tenants: BenchTenants) -> None:
    """All tenant files up front: a worker never waits for a config reload."""
    (config_dir / "tenants").mkdir(parents=True)
    (config_dir / "global.yaml").write_text(yaml.safe_dump(global_document()))
    for tenant, latency_ms in tenants.latencies().items():
        document = tenant_document(callback_url, latency_ms)
        (config_dir / "tenants" / f"{tenant}.yaml").write_text(yaml.safe_dump(document))


def process_env(urls: ServiceUrls, root: Path) -> dict[str, str]:
    """The environment of the bench process and of every worker it starts."""
    return {
        "REDIS_URL": urls.redis_url,
        "BROKER_URL": urls.broker_url,
        "DATABASE_URL": urls.database_url,
        "TURNSTILE_CONFIG_DIR": str(root / "config"),
        "TURNSTILE_DATA_DIR": str(root),
        SECRET_ENV: secrets.token_hex(16),
        # Workers log at the level the caller asked for; the bench process itself only
        # warns (see _run), so its stderr shows progress rather than config reloads.
        "TURNSTILE_LOG_LEVEL": os.environ.get("TURNSTILE_LOG_LEVEL", "INFO"),
    }


# --------------------------------------------------------------------------- child processes


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log_tail(self, chars: int = 3000) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-chars:]
        return ""

    def raise_if_exited(self) -> None:
        code = self.process.poll()
        if code is not None:
            raise BenchError(f"{self.name} exited with {code}:\n{self.log_tail()}")

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """SIGTERM to the whole process group (pool children too), then SIGKILL."""
        stop_group(self.process, timeout_s)


@contextmanager
def spawned(name: str, argv: list[str], env: Mapping[str, str], log_dir: Path) -> Iterator[Child]:
    """A child in its own session (Ctrl-C on the terminal does not reach it; the
    `finally` here stops it), its output in a log file."""
    log_path = log_dir / f"{name}.log"
    with log_path.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, *argv],
            env={**os.environ, **env, "PYTHONUNBUFFERED": "1"},
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    child = Child(name, process, log_path)
    try:
        yield child
    finally:
        child.stop()


def wait_ready(control_app: Any, child: Child, node: str, timeout_s: float) -> None:
    """Until the worker node `node` answers a broadcast ping."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        child.raise_if_exited()
        if control_app.control.ping(destination=[node], timeout=0.5):
            return
    raise BenchError(f"{child.name} did not answer a ping in {timeout_s:g} s:\n{child.log_tail()}")


# --------------------------------------------------------------------------- sending


@dataclass(frozen=True)
class Job:
    """One send: `lane` picks the thread (a conversation always uses the same one, so
    its messages are sent in order); `due_s` is its offset from the start (open loop)."""

    lane: int
    due_s: float
    send: Callable[[], object]


class Sender:
    """Runs jobs from a few threads, each at its due time; failures surface in the
    main thread through raise_if_failed(), and stop() ends the threads early."""

    def __init__(self, jobs: Sequence[Job], threads: int = INGEST_THREADS) -> None:
        self._lanes = [[job for job in jobs if job.lane % threads == i] for i in range(threads)]
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._threads: list[threading.Thread] = []

    def __enter__(self) -> Sender:
        started = time.monotonic()
        for i, lane in enumerate(self._lanes):
            if lane:
                thread = threading.Thread(
                    target=self._run, args=(lane, started), name=f"bench-send-{i}", daemon=True
                )
                thread.start()
                self._threads.append(thread)
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=10)

    def join(self, timeout_s: float) -> None:
        """Until every job was sent (not stopped early)."""
        deadline = time.monotonic() + timeout_s
        for thread in self._threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
        self.raise_if_failed()
        if any(thread.is_alive() for thread in self._threads):
            raise BenchError(f"sending did not finish in {timeout_s:g} s")

    def raise_if_failed(self) -> None:
        if self._error is not None:
            raise BenchError(f"sending failed: {type(self._error).__name__}: {self._error}")

    def _run(self, lane: list[Job], started: float) -> None:
        try:
            for job in lane:
                if self._stop.wait(max(0.0, started + job.due_s - time.monotonic())):
                    return
                job.send()
        except Exception as exc:
            self._error = exc
            self._stop.set()


def message_jobs(
    rt: Any, tenant: str, count: int, conversations: int, rate_per_s: float | None
) -> list[Job]:
    """`count` messages round-robin over `conversations`, all at once (rate None) or
    one every 1/rate seconds; each recorded through the real ingress path."""
    from workers.ingress import Backlog, accept

    backlog = Backlog()
    jobs = []
    for i in range(count):
        conversation = i % conversations
        message = InboundMessage(
            tenant=tenant,
            channel=CHANNEL,
            conversation_external_id=f"c{conversation}",
            user_external_id=f"u{conversation}",
            platform_message_id=uuid.uuid4().hex,
            text=f"message {i}",
        )
        due_s = i / rate_per_s if rate_per_s else 0.0

        def send(message: InboundMessage = message) -> object:
            return accept(rt, message, backlog)

        jobs.append(Job(conversation, due_s, send))
    return jobs


# --------------------------------------------------------------------------- measuring


def count(engine: Engine, query: Any, tenant: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(query, {"tenant": tenant}).scalar_one())


_SPAN = text(
    "SELECT extract(epoch FROM max(finished_at) - min(started_at)) FROM inbound_messages"
    " WHERE tenant = :tenant"
)


def worker_span_s(engine: Engine, tenant: str) -> float:
    """First turn start to last turn end of `tenant`, on PostgreSQL's clock."""
    with engine.connect() as conn:
        return float(conn.execute(_SPAN, {"tenant": tenant}).scalar_one())


def lag(engine: Engine, tenant: str) -> Lag:
    with engine.connect() as conn:
        row = conn.execute(_LAG, {"tenant": tenant}).one()
    if not row.n:
        return Lag(0, None, None)
    return Lag(int(row.n), float(row.p50) * 1000, float(row.p99) * 1000)


def wait_until(
    what: str,
    read: Callable[[], int],
    target: int,
    timeout_s: float,
    update: Callable[[int], None],
    child: Child,
    checks: Sequence[Callable[[], None]] = (),
) -> None:
    """Poll `read` until it reaches `target`; raise BenchError past the timeout or as
    soon as a check fails (the worker died, a sender failed). The error carries the
    worker's log, since its folder is gone once the bench exits."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = read()
        update(value)
        if value >= target:
            return
        child.raise_if_exited()
        for check in checks:
            check()
        if time.monotonic() > deadline:
            raise BenchError(
                f"timed out after {timeout_s:g} s: {what}: {value} of {target}; "
                f"end of the {child.name} log:\n{child.log_tail()}"
            )
        time.sleep(POLL_S)


@dataclass
class Bench:
    """One bench run: the services are up, the config is written, the env is set."""

    options: BenchOptions
    env: dict[str, str]
    root: Path
    reporter: Reporter
    tenants: BenchTenants
    turnstile: Any  # tasks.app.TurnstileCelery: sends wake-ups, pings workers
    noop: Any  # the bench_noop Celery app
    report: BenchReport = field(init=False)

    def __post_init__(self) -> None:
        self.report = BenchReport(self.options)

    @property
    def engine(self) -> Engine:
        engine: Engine = self.turnstile.runtime.engine
        return engine

    def run(self) -> BenchReport:
        for n in self.options.workers:
            self.measure_turns(n)
            self.measure_noop(n)
        return self.report

    # ----- turns

    def measure_turns(self, n: int) -> None:
        """Backlog drain and closed loop with N processes; at the largest N, the open-loop
        phases too."""
        env = {**self.env, "TURNSTILE_WORKER_CONCURRENCY": str(n)}
        backlog_tenant, total = self.tenants.backlog[n], self.options.messages
        ingest_s = self.preload(f"N={n} backlog", backlog_tenant)
        with spawned(f"worker-{n}", ["-m", "workers.cli", "worker"], env, self.root) as child:
            self.reporter.status(f"N={n}: starting `turnstile worker` with {n} processes")
            wait_ready(self.turnstile, child, f"celery@{socket.gethostname()}", READY_TIMEOUT_S)
            self.wait_done(f"N={n} backlog", backlog_tenant, total, child)
            drain_s = worker_span_s(self.engine, backlog_tenant)
            self.report.backlog.append(BacklogRun(n, total, ingest_s, drain_s))
            self.wait_delivered(f"N={n} backlog replies", backlog_tenant, total, child)
            run = self.closed_loop(n, child)
            self.report.turns.append(run)
            self.reporter.status(f"N={n}: {run.turns_per_s:,.0f} turns/s")
            if n == self.options.largest and self.options.open_loop_s > 0:
                rate = run.turns_per_s * OPEN_LOOP_FRACTION
                self.report.open_loop = self.open_loop(n, child, rate, with_slow=False)
                self.report.with_slow = self.open_loop(n, child, rate, with_slow=True)
            self.reporter.status(f"N={n}: stopping the worker")

    def preload(self, label: str, tenant: str) -> float:
        """Ingest the messages while no worker runs; the seconds it took."""
        rt, total = self.turnstile.runtime, self.options.messages
        jobs = message_jobs(rt, tenant, total, self.options.conversations, None)
        started = time.monotonic()
        with (
            self.reporter.phase(f"{label}: ingest (no worker yet)", total) as update,
            Sender(jobs) as sender,
        ):
            sender.join(self.options.timeout_s)
            update(total)
        return time.monotonic() - started

    def closed_loop(self, n: int, child: Child) -> TurnRun:
        """M messages at once; from the first ingest until PostgreSQL has them all done,
        and on until every reply reached the sink (replies are a second Celery task)."""
        tenant, total = self.tenants.turns[n], self.options.messages
        jobs = message_jobs(self.turnstile.runtime, tenant, total, self.options.conversations, None)
        started = time.monotonic()
        with Sender(jobs) as sender:
            self.wait_done(f"N={n} closed loop", tenant, total, child, sender)
            elapsed = time.monotonic() - started
            sender.join(self.options.timeout_s)
        self.wait_delivered(f"N={n} replies", tenant, total, child)
        replied = time.monotonic() - started
        return TurnRun(n, total, elapsed, replied, lag(self.engine, tenant))

    def open_loop(self, n: int, child: Child, rate: float, *, with_slow: bool) -> OpenLoopRun:
        """Messages at a fixed rate for open_loop_s; with_slow adds one conversation of
        the slow tenant, a message every SLOW_EVERY_S, during the same window."""
        tenant = self.tenants.with_slow if with_slow else self.tenants.open_loop
        duration = self.options.open_loop_s
        total = max(1, round(rate * duration))
        rt = self.turnstile.runtime
        jobs = message_jobs(rt, tenant, total, self.options.conversations, rate)
        slow_total = int(duration / SLOW_EVERY_S) if with_slow else 0
        slow_jobs = message_jobs(rt, self.tenants.slow, slow_total, 1, 1 / SLOW_EVERY_S)
        label = f"N={n} open loop {rate:,.0f}/s" + (" + slow conversation" if with_slow else "")
        with Sender(jobs) as sender, Sender(slow_jobs, threads=1) as slow_sender:
            self.wait_done(label, tenant, total, child, sender, slow_sender)
            sender.join(self.options.timeout_s)
            slow_sender.join(self.options.timeout_s)
        self.wait_delivered(f"{label}: replies", tenant, total, child)
        slow_done = count(self.engine, _DONE, self.tenants.slow) if with_slow else 0
        return OpenLoopRun(
            n, rate, duration, total, lag(self.engine, tenant), slow_total, slow_done
        )

    def wait_done(
        self, label: str, tenant: str, total: int, child: Child, *senders: Sender
    ) -> None:
        with self.reporter.phase(f"{label}: turns done", total) as update:
            wait_until(
                f"{label}: turns done",
                lambda: count(self.engine, _DONE, tenant),
                total,
                self.options.timeout_s,
                update,
                child,
                [sender.raise_if_failed for sender in senders],
            )

    def wait_delivered(self, label: str, tenant: str, total: int, child: Child) -> None:
        """Replies still queued would run in the next phase and slow it down."""
        with self.reporter.phase(label, total) as update:
            wait_until(
                f"{label} delivered",
                lambda: count(self.engine, _SENT, tenant),
                total,
                self.options.timeout_s,
                update,
                child,
            )

    # ----- baseline

    def measure_noop(self, n: int) -> None:
        from workers.bench_noop import NOOP_QUEUE

        node = f"bench-noop-{n}-{uuid.uuid4().hex[:6]}@{socket.gethostname()}"
        argv = ["-m", "celery", "-A", "workers.bench_noop", "worker", "-Q", NOOP_QUEUE, "-n", node,
                "--concurrency", str(n), "-O", "fair", "--loglevel=WARNING"]  # fmt: skip
        key = f"bench:noop:{uuid.uuid4().hex}"
        self.preload_noop(n, key)
        with spawned(f"noop-{n}", argv, self.env, self.root) as child:
            self.reporter.status(f"N={n}: starting the Celery no-op worker")
            run = self.noop_run(n, child, key)
        self.report.noop.append(run)
        self.reporter.status(f"N={n}: {run.tasks_per_s:,.0f} no-op tasks/s")

    def preload_noop(self, n: int, key: str) -> None:
        """Publish the no-op tasks while no worker consumes them, like the backlog."""
        from workers.bench_noop import NOOP_QUEUE, NOOP_TASK

        def send() -> object:
            return self.noop.send_task(NOOP_TASK, args=(key,), queue=NOOP_QUEUE)

        total = self.options.messages
        jobs = [Job(i, 0.0, send) for i in range(total)]
        with self.reporter.phase(f"N={n} no-op: publish", total) as update, Sender(jobs) as sender:
            sender.join(self.options.timeout_s)
            update(total)

    def noop_run(self, n: int, child: Child, key: str) -> NoopRun:
        """Until every no-op task counted itself; timed by the tasks' own first and last
        timestamps, like the backlog's turns."""
        from workers.bench_noop import span_s

        total = self.options.messages
        redis = self.turnstile.runtime.redis
        with self.reporter.phase(f"N={n} no-op tasks", total) as update:
            wait_until(
                f"N={n} no-op tasks run",
                lambda: int(redis.get(key) or 0),
                total,
                self.options.timeout_s,
                update,
                child,
            )
        elapsed = span_s(redis, key)
        redis.delete(key, f"{key}:first", f"{key}:last")
        return NoopRun(n, total, elapsed)


# --------------------------------------------------------------------------- output


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.1f}" if value < 10 else f"{value:,.0f}"


def _rate(value: float) -> str:
    return f"{value:,.0f}"


def report_table(report: BenchReport) -> Table:
    table = Table(
        title="turnstile bench ordering", caption=_caption(report), caption_justify="left"
    )
    table.add_column("run")
    columns = ("procs", "msgs", "turns/s", "noop tasks/s", "ratio", "replied/s", "lag p50 ms",
               "lag p99 ms")  # fmt: skip
    for column in columns:
        table.add_column(column, justify="right")
    noop = {run.workers: run for run in report.noop}
    for backlog in report.backlog:
        table.add_row(*_backlog_row(backlog, noop.get(backlog.workers)))
    table.add_section()
    for turns in report.turns:
        table.add_row(*_closed_loop_row(turns))
    if report.open_loop is not None and report.with_slow is not None:
        table.add_section()
        table.add_row(*_open_loop_row("open loop (a)", report.open_loop))
        table.add_row(*_open_loop_row("(b) + slow conv", report.with_slow))
    return table


def _backlog_row(run: BacklogRun, noop: NoopRun | None) -> list[str]:
    return [
        "backlog drain",
        str(run.workers),
        str(run.messages),
        _rate(run.turns_per_s),
        _rate(noop.tasks_per_s) if noop else "-",
        f"{run.turns_per_s / noop.tasks_per_s:.2f}" if noop else "-",
        "",
        "",
        "",
    ]


def _closed_loop_row(run: TurnRun) -> list[str]:
    return [
        "closed loop",
        str(run.workers),
        str(run.messages),
        _rate(run.turns_per_s),
        "",
        "",
        _rate(run.replied_per_s),
        _ms(run.lag.p50_ms),
        _ms(run.lag.p99_ms),
    ]


def _open_loop_row(name: str, run: OpenLoopRun) -> list[str]:
    """The turns/s column shows the offered rate (@) of an open-loop phase."""
    rate = f"@{_rate(run.rate_per_s)}"
    return [name, str(run.workers), str(run.messages), rate, "", "", "", _ms(run.lag.p50_ms),
            _ms(run.lag.p99_ms)]  # fmt: skip


def _caption(report: BenchReport) -> str:
    options = report.options
    lines = [
        f"closed loop: {options.messages} messages over {options.conversations} conversations "
        f"ingested at once ({INGEST_THREADS} threads, workers.ingress.accept); turns/s = "
        "messages / (first ingest -> all done in PostgreSQL); replied/s = messages / (first "
        "ingest -> every reply accepted by the loopback callback; the same workers deliver).",
        "backlog drain: the same number of messages ingested while no worker runs, then "
        "drained; turns/s = messages / (first turn start -> last turn end, PostgreSQL).",
        "noop: as many bench.noop tasks published while no worker runs, then consumed with "
        "the real app's broker settings; each does one pipelined Redis INCR+timestamp; "
        "tasks/s = tasks / (first -> last task). ratio = backlog turns/s / noop tasks/s.",
        "lag = started_at - received_at. Closed-loop lag includes the backlog of ingesting "
        "everything at once; the open loop sends at a fixed rate of "
        f"{OPEN_LOOP_FRACTION:.0%} of the largest N's turns/s for {options.open_loop_s:g} s.",
    ]
    lines.extend(_open_loop_notes(report))
    return "\n".join(lines)


def _open_loop_notes(report: BenchReport) -> list[str]:
    """How loaded the open loop really was: its rate is set from turns/s, but replies
    are a second Celery task per turn, so replied/s is the sustainable rate."""
    lines: list[str] = []
    opened = report.open_loop
    closed = {run.workers: run for run in report.turns}.get(opened.workers) if opened else None
    if opened is not None and closed is not None:
        share = opened.rate_per_s / closed.replied_per_s
        lines.append(
            f"open loop: {opened.rate_per_s:,.0f}/s offered = {share:.0%} of replied/s at "
            f"N={opened.workers}."
        )
    slow = report.with_slow
    if slow is not None:
        lines.append(
            f"(b) adds one conversation of a second tenant (echo {SLOW_LATENCY_MS} ms), a "
            f"message every {SLOW_EVERY_S:g} s: {slow.slow_sent} sent, {slow.slow_done} done "
            "by the end; the lag shown is of the normal conversations only."
        )
    return lines


def report_json(report: BenchReport) -> dict[str, Any]:
    noop = {run.workers: run for run in report.noop}
    backlog = []
    for run in report.backlog:
        base = noop.get(run.workers)
        backlog.append(
            {
                **asdict(run),
                "turns_per_s": run.turns_per_s,
                "ingest_per_s": run.ingest_per_s,
                "noop_tasks_per_s": base.tasks_per_s if base else None,
                "ratio": run.turns_per_s / base.tasks_per_s if base else None,
            }
        )
    closed = [
        {**asdict(run), "turns_per_s": run.turns_per_s, "replied_per_s": run.replied_per_s}
        for run in report.turns
    ]
    return {
        "options": asdict(report.options),
        "backlog_drain": backlog,
        "closed_loop": closed,
        "open_loop": asdict(report.open_loop) if report.open_loop else None,
        "open_loop_with_slow_conversation": asdict(report.with_slow) if report.with_slow else None,
        "notes": _caption(report).splitlines(),
    }


def print_report(report: BenchReport) -> None:
    if report.options.as_json:
        sys.stdout.write(json.dumps(report_json(report), indent=2, allow_nan=False) + "\n")
        return
    console = Console()
    if not console.is_terminal:
        console = Console(width=110)
    console.print(report_table(report))


# --------------------------------------------------------------------------- entry point


def run_ordering_bench(
    workers: str,
    messages: int,
    conversations: int,
    open_loop_s: float,
    timeout_s: float,
    as_json: bool,
) -> int:
    """`turnstile bench ordering`: run everything, print the result; the exit code."""
    err = Console(stderr=True)
    try:
        options = BenchOptions(
            parse_worker_counts(workers), messages, conversations, open_loop_s, timeout_s, as_json
        )
        report = _run(options)
    except BenchError as exc:
        err.print(f"turnstile bench: {exc}", markup=False, highlight=False)
        return 2 if isinstance(exc, BenchUsageError) else 1
    except (KeyboardInterrupt, Interrupted):
        err.print("turnstile bench: interrupted; every process it started is stopped")
        return 130
    print_report(report)
    return 0


def _run(options: BenchOptions) -> BenchReport:
    with Reporter() as reporter, ExitStack() as stack:
        stack.enter_context(sigterm_as_exception())
        root = Path(tempfile.mkdtemp(prefix="turnstile-bench-"))
        stack.callback(shutil.rmtree, root, ignore_errors=True)
        urls = start_services(stack, root, reporter)
        callback_url = stack.enter_context(callback_sink())
        tenants = BenchTenants.fresh(options.workers)
        write_config(root / "config", callback_url, tenants)
        env = process_env(urls, root)
        stack.enter_context(patched_environ({**env, "TURNSTILE_LOG_LEVEL": "WARNING"}))
        bench = _bench(stack, options, env, root, reporter, tenants)
        return bench.run()


def _bench(
    stack: ExitStack,
    options: BenchOptions,
    env: dict[str, str],
    root: Path,
    reporter: Reporter,
    tenants: BenchTenants,
) -> Bench:
    """The two Celery apps of the bench process, made after os.environ is set (both
    read it at import)."""
    from config.settings import SettingsError, load_settings
    from tasks.app import create_celery_app
    from workers import bench_noop

    try:
        settings = load_settings()
    except SettingsError as exc:
        raise BenchError(str(exc)) from None
    turnstile = create_celery_app(settings)
    stack.callback(turnstile.close_runtime)
    return Bench(options, env, root, reporter, tenants, turnstile, bench_noop.app)
