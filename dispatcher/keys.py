"""Every Redis key Shaozi uses, spelled in one place.

Keys that one script or transaction touches share a hash tag, so Redis Cluster can run it:

- ``{intake}``: the alert documents, the dedupe index, the alert list and the intake streams
  (the intake script writes all four at once);
- ``{<alert id>}``: an alert's state, its receipts and its counters (every receipt transition);
- ``{q:<channel>}``: a channel's delivery streams of every priority and its retry schedule
  (a sender reads all priorities in one call and acks and reschedules in one transaction).
"""

from __future__ import annotations

from dataclasses import dataclass

from dispatcher.models import PRIORITIES

INTAKE_GROUP = "planners"
SENDER_GROUP = "senders"


@dataclass(frozen=True)
class Keys:
    prefix: str = "shaozi"

    # {intake}
    @property
    def docs(self) -> str:
        """hash: alert id -> the accepted alert document (JSON)"""
        return f"{self.prefix}:{{intake}}:docs"

    @property
    def dedupe(self) -> str:
        """hash: sender|identifier and idem|<Idempotency-Key> -> alert id"""
        return f"{self.prefix}:{{intake}}:dedupe"

    @property
    def alert_index(self) -> str:
        """sorted set: alert ids by time accepted (ms)"""
        return f"{self.prefix}:{{intake}}:index"

    def intake(self, priority: int) -> str:
        """stream of accepted alerts waiting to be planned, one per priority"""
        return f"{self.prefix}:{{intake}}:alerts:{priority}"

    def intakes(self) -> list[str]:
        return [self.intake(p) for p in range(PRIORITIES)]

    # {<alert id>}
    def alert(self, alert_id: str) -> str:
        """hash: state, planned, cancelled, expires_at, recipients, ..."""
        return f"{self.prefix}:alert:{{{alert_id}}}"

    def receipts(self, alert_id: str) -> str:
        """hash: receipt number -> the receipt (see ``dispatcher.receipts``)"""
        return f"{self.prefix}:alert:{{{alert_id}}}:receipts"

    def counts(self, alert_id: str) -> str:
        """hash: '<channel>:<state>' and '*:<state>' -> number of receipts"""
        return f"{self.prefix}:alert:{{{alert_id}}}:counts"

    def plan_parts(self, alert_id: str) -> str:
        """set: the parts of a large alert planned so far"""
        return f"{self.prefix}:alert:{{{alert_id}}}:parts"

    def escalation(self, alert_id: str) -> str:
        """hash: person id -> last escalation step taken TAB when; 'note:<receipt number>' -> the
        line a backup's or a supervisor's message opens with"""
        return f"{self.prefix}:alert:{{{alert_id}}}:esc"

    def drill_acks(self, alert_id: str) -> str:
        """hash: region code -> when someone there last acknowledged this drill (unix s)"""
        return f"{self.prefix}:alert:{{{alert_id}}}:drill"

    def alert_keys(self, alert_id: str) -> list[str]:
        return [self.alert(alert_id), self.receipts(alert_id), self.counts(alert_id)]

    # {q:<channel>}
    def deliveries(self, channel: str, priority: int) -> str:
        """stream of receipts to send on a channel at a priority"""
        return f"{self.prefix}:{{q:{channel}}}:p{priority}"

    def delivery_streams(self, channel: str) -> list[str]:
        return [self.deliveries(channel, p) for p in range(PRIORITIES)]

    def retries(self, channel: str) -> str:
        """sorted set: delivery messages to send again, scored by when (unix s)"""
        return f"{self.prefix}:{{q:{channel}}}:retry"

    def rate(self, channel: str) -> str:
        """hash: the channel's shared send-rate bucket (tokens, stamp)"""
        return f"{self.prefix}:{{q:{channel}}}:rate"

    def window(self, channel: str, address: str) -> str:
        """sorted set: the times of the latest sends to one address (a group's per-minute limit)"""
        return f"{self.prefix}:{{q:{channel}}}:window:{address}"

    def latest(self, channel: str) -> str:
        """hash: address -> the latest receipt sent to it on the channel (replies acknowledge it)"""
        return f"{self.prefix}:{{q:{channel}}}:latest"

    # process-wide
    @property
    def escalations(self) -> str:
        """sorted set: alert id -> when its silent recipients are next looked at (unix s)"""
        return f"{self.prefix}:escalations"

    @property
    def gateways(self) -> str:
        """hash: gateway (device) id -> online or offline TAB when it said so (unix s)"""
        return f"{self.prefix}:gateways"

    @property
    def workers(self) -> str:
        """sorted set: worker name -> last heartbeat (unix s)"""
        return f"{self.prefix}:workers"

    @property
    def stats(self) -> str:
        """hash: '<channel>:<state>' -> receipts that reached it, across all alerts (for /metrics)"""
        return f"{self.prefix}:stats"

    def events(self, alert_id: str) -> str:
        """pub/sub channel nudged when an alert's receipts move (server-sent events)"""
        return f"{self.prefix}:events:{{{alert_id}}}"
