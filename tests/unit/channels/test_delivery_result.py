from __future__ import annotations

import pytest

from channels.delivery_result import Outcome, backoff_s, classify_response


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (200, Outcome.SENT),
        (204, Outcome.SENT),
        (408, Outcome.RETRY),
        (429, Outcome.RETRY),
        (500, Outcome.RETRY),
        (503, Outcome.RETRY),
        (400, Outcome.PERMANENT),
        (401, Outcome.PERMANENT),
        (404, Outcome.PERMANENT),
        (301, Outcome.PERMANENT),
    ],
)
def test_classify_status(status: int, outcome: Outcome) -> None:
    assert classify_response(status, None).outcome is outcome


def test_retry_after_seconds_is_honoured_and_dates_are_ignored() -> None:
    assert classify_response(429, "7").retry_after_s == 7.0
    assert classify_response(503, "Wed, 21 Oct 2015 07:28:00 GMT").retry_after_s is None


def test_backoff_doubles_and_is_capped() -> None:
    assert [backoff_s(n, 1.0, 10.0) for n in range(1, 7)] == [1, 2, 4, 8, 10, 10]
