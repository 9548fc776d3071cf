"""Prometheus metrics. Each process exports what it did; queue depths are read from Redis."""

from __future__ import annotations

from collections import Counter as Tally

from prometheus_client import Counter, Histogram

ALERTS_ACCEPTED = Counter("shaozi_alerts_accepted_total", "Alerts accepted at intake", ["format"])
ALERTS_REFUSED = Counter("shaozi_alerts_refused_total", "Alerts refused at intake", ["reason"])
RECEIPTS = Counter("shaozi_receipts_total", "Receipt state changes made by senders", ["channel", "state"])
GATEWAY_MESSAGES = Counter("shaozi_gateway_messages_total", "Messages from loudspeaker gateways",
                           ["kind", "outcome"])
SEND_SECONDS = Histogram(
    "shaozi_send_batch_seconds", "Time from claiming a batch of receipts to recording its outcome",
    ["channel"], buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)


def record(channel: str, states: list[str], seconds: float) -> None:
    for state, n in Tally(states).items():
        RECEIPTS.labels(channel, state).inc(n)
    SEND_SECONDS.labels(channel).observe(seconds)
