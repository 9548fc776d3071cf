"""From an accepted alert document to the ``Message`` every channel formats."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import replace

from channels.base import Message
from channels.templates import REMINDER, language
from dispatcher.alerts import AlertStore
from dispatcher.codec import text
from dispatcher.receipts import escalation_of
from dispatcher.models import Alert

REMINDERS = ("resend", "next_channel", "voice")  # escalation steps that remind the person themselves


def message_for(alert_id: str, alert: Alert) -> Message:
    info = alert.main_info()
    if info is None:  # a Cancel without info of its own
        return Message(alert_id=alert_id, event="", severity="Unknown", urgency="Unknown",
                       headline=alert.note or "", text="", instruction="", area="",
                       drill=alert.status == "Exercise", msg_type=alert.msgType)
    return Message(
        alert_id=alert_id,
        event=info.event,
        severity=info.severity,
        urgency=info.urgency,
        headline=info.headline or "",
        text=info.description or "",
        instruction=info.instruction or "",
        area=("、" if info.language.lower().startswith("zh") else ", ").join(a.areaDesc for a in info.area),
        lang=info.language,
        drill=alert.status == "Exercise",
        msg_type=alert.msgType,
        sender_name=info.senderName or "",
        expires_at=alert.expires_at(),
    )


class MessageCache:
    """Messages of recent alerts, so a batch of deliveries costs no extra reads."""

    def __init__(self, store: AlertStore, size: int = 256) -> None:
        self.store = store
        self.size = size
        self._cache: OrderedDict[str, Message] = OrderedDict()

    async def get(self, alert_id: str) -> Message | None:
        message = self._cache.get(alert_id)
        if message is not None:
            self._cache.move_to_end(alert_id)
            return message
        doc = await self.store.doc(alert_id)
        if doc is None:
            return None
        message = message_for(alert_id, Alert.model_validate(doc["alert"]))
        self._cache[alert_id] = message
        if len(self._cache) > self.size:
            self._cache.popitem(last=False)
        return message

    async def escalated(self, message: Message, receipts: Sequence[tuple[int, str]]) -> dict[int, Message]:
        """Receipt number -> its own message, for receipts (number, via) an escalation step made.

        A reminder opens with the same line for everyone; a backup's or a supervisor's message
        with the line its step wrote down."""
        own = {}
        noted = []
        for number, via in receipts:
            if escalation_of(via)["action"] in REMINDERS:
                own[number] = replace(message, note=REMINDER[language(message.lang)])
            else:
                noted.append(number)
        if noted:
            notes = await self.store.redis.hmget(self.store.keys.escalation(message.alert_id),
                                                 [f"note:{n}" for n in noted])
            own.update((n, replace(message, note=text(note))) for n, note in zip(noted, notes) if note)
        return own
