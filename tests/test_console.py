"""The console channel writes one valid JSON line per message, whatever the names hold."""

from __future__ import annotations

import json

from channels.base import Delivery, Message
from channels.base import mask
from channels.console import ConsoleChannel


async def test_outbox_lines_are_json_with_every_field(tmp_path):
    channel = ConsoleChannel(tmp_path / "outbox.jsonl", log_messages=False)
    message = Message(alert_id="a1", event="暴雨", severity="Extreme", urgency="Immediate", headline='红色"预警"',
                      text="降雨\t100毫米", instruction="转移\\撤离", area="六指街道", drill=True)
    deliveries = [Delivery(receipt_id=f"a1.{i}", channel="sms", address=f"+861380000000{i}", recipient=f"p{i}",
                           name='王"小\\二"\t', message=message) for i in range(3)]
    outcomes = await channel.send_many(deliveries)
    await channel.close()
    assert [o.state for o in outcomes] == ["delivered"] * 3
    rows = [json.loads(line) for line in (tmp_path / "outbox.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [r["receipt"] for r in rows] == ["a1.0", "a1.1", "a1.2"]
    assert rows[0]["name"] == '王"小\\二"\t' and rows[2]["to"] == "+8613800000002"
    assert rows[0]["text"].startswith('【演练】【特别严重】红色"预警"（六指街道）')
    assert "转移\\撤离" in rows[0]["text"]


def test_mask_hides_most_of_a_number():
    assert mask("+8613812345678") == "+861****678"
    assert "12345" not in mask("+8613812345678")


def test_sms_segments_count_ucs2_for_chinese_and_gsm7_otherwise():
    from channels.templates import sms_segments

    assert [sms_segments("中" * n) for n in (1, 70, 71, 134, 135)] == [1, 1, 2, 2, 3]
    assert [sms_segments("a" * n) for n in (160, 161, 306, 307)] == [1, 2, 2, 3]
    assert sms_segments("{" * 80) == 1 and sms_segments("{" * 81) == 2  # extended characters count twice
    assert sms_segments("flood 洪水") == 1 and sms_segments("a" * 69 + "洪") == 1 and sms_segments("a" * 70 + "洪") == 2
