"""Periodic sweeps (beat): the recovery path that does not depend on the broker."""

from __future__ import annotations

from tasks.app import app
from workers.sweeps import sweep_deliveries as _sweep_deliveries
from workers.sweeps import sweep_turns as _sweep_turns


@app.task(name="maintenance.sweep_turns")  # type: ignore[untyped-decorator]
def sweep_turns() -> int:
    return _sweep_turns(app.runtime)


@app.task(name="maintenance.sweep_deliveries")  # type: ignore[untyped-decorator]
def sweep_deliveries() -> int:
    return _sweep_deliveries(app.runtime)
