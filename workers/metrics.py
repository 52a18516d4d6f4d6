"""Prometheus metrics of the turn path. Labels are low-cardinality: never a user,
conversation or message id."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

TURNS = Counter("turnstile_turns_total", "Turns finished, by outcome.", ["outcome"])
QUEUE_LAG = Histogram(
    "turnstile_queue_lag_seconds",
    "From ingress commit to the start of the message's turn.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
TURN_SECONDS = Histogram("turnstile_turn_seconds", "Duration of one turn.")
TURN_STAGE_SECONDS = Histogram(
    "turnstile_turn_stage_seconds",
    "Duration of each stage of a turn: claim, agent, persist.",
    ["stage"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
TURN_RERUNS = Counter(
    "turnstile_turn_reruns_total",
    "Attempts at a message that an earlier attempt already started (a crash, a takeover"
    " after a lost lease, or an error).",
)
FENCED_WRITES = Counter(
    "turnstile_fenced_writes_total", "Commits refused because the lease was taken over.", ["store"]
)
DRAINS = Counter("turnstile_drains_total", "Drain runs, by how they ended.", ["outcome"])
DELIVERIES = Counter("turnstile_deliveries_total", "Delivery attempts, by result.", ["result"])
SWEEPS = Counter("turnstile_sweep_wakeups_total", "Wake-ups sent by the sweeps.", ["kind"])
