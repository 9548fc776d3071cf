"""Message text from a warning's parts, per language."""

from __future__ import annotations

from channels.base import Message

DRILL_MARK = {"zh-CN": "【演练】", "en": "[EXERCISE] "}
SEVERITY = {
    "zh-CN": {"Extreme": "特别严重", "Severe": "严重", "Moderate": "较重", "Minor": "一般", "Unknown": "未知"},
    "en": {},
}
CANCELLED = {"zh-CN": "【解除】", "en": "[CANCELLED] "}
ACK_HINT = {"zh-CN": "收到请回复1或点击：", "en": "Reply 1 or open to acknowledge: "}
REPLY_HINT = {"zh-CN": "收到请回复1。", "en": "Reply 1 to acknowledge."}


# The lines escalated messages open with.
REMINDER = {"zh-CN": "【再次提醒】尚未收到您的确认。", "en": "[REMINDER] Your acknowledgement has not been received. "}
FOLLOW_UP = {"zh-CN": "【请代为跟进】{names}尚未确认此预警，请联系并代为确认。",
             "en": "[PLEASE FOLLOW UP] {names} has not acknowledged this warning. "}
SILENT_LIST = {"zh-CN": "【督办】以下{count}人尚未确认此预警：{names}。",
               "en": "[NOT ACKNOWLEDGED] {count}: {names}. "}
NAME_SEP = {"zh-CN": "、", "en": ", "}

MARKDOWN_LABELS = {
    "zh-CN": {"area": "区域", "instruction": "措施", "ack": "收到请点此确认", "colon": "："},
    "en": {"area": "Area", "instruction": "What to do", "ack": "Acknowledge", "colon": ": "},
}
ACK_BUTTON = {"zh-CN": "收到 / Acknowledge", "en": "Acknowledge"}

PRESS_TO_ACK = {"zh-CN": "确认收到请按任意键。", "en": "Press any key to acknowledge."}
# Twilio <Say> voices: Mandarin for Chinese, US English otherwise.
VOICES = {"zh-CN": ("cmn-CN", "Polly.Zhiyu"), "en": ("en-US", "Polly.Joanna")}


def language(lang: str) -> str:
    return "zh-CN" if lang.lower().startswith("zh") else "en"


def render_speech(message: Message) -> tuple[str, str, str]:
    """What a voice call reads out, with its <Say> language and voice."""
    lang = language(message.lang)
    text = render_body(message).replace("【", "").replace("】", "，")
    return f"{text} {PRESS_TO_ACK[lang]}", *VOICES[lang]


def render_text(message: Message, ack_url: str | None = None, *, reply_acknowledges: bool = False) -> str:
    """The plain text of a warning, as an SMS or a chat message carries it, ending with how to
    acknowledge it: the ack link, or a reply where replies acknowledge."""
    return render_body(message) + ack_suffix(message, ack_url, reply_acknowledges=reply_acknowledges)


def render_title(message: Message) -> str:
    """The warning's headline with its severity and drill or cancel marks."""
    lang = language(message.lang)
    parts = []
    if message.drill:
        parts.append(DRILL_MARK[lang])
    if message.msg_type == "Cancel":
        parts.append(CANCELLED[lang])
    severity = SEVERITY[lang].get(message.severity, message.severity)
    head = message.headline or message.event
    parts.append(f"【{severity}】{head}" if lang == "zh-CN" else f"{severity}: {head}")
    return "".join(parts)


def render_body(message: Message) -> str:
    """The warning itself, the same for every recipient of an alert."""
    lang = language(message.lang)
    text = message.note + render_title(message)
    if message.area:
        text += f"（{message.area}）" if lang == "zh-CN" else f" ({message.area})"
    body = " ".join(p for p in (message.text, message.instruction) if p)
    if body:
        text += ("" if lang == "zh-CN" else " ") + body
    return text


def render_markdown(message: Message, ack_url: str | None = None) -> str:
    """The warning as chat-app markdown: the title as a heading, the area, the text, the
    instruction in bold and the ack link."""
    lang = language(message.lang)
    labels = MARKDOWN_LABELS[lang]
    lines = [message.note] if message.note else []
    lines.append(f"### {render_title(message)}")
    if message.area:
        lines.append(f"**{labels['area']}**{labels['colon']}{message.area}")
    if message.text:
        lines.append(message.text)
    if message.instruction:
        lines.append(f"**{labels['instruction']}**{labels['colon']}{message.instruction}")
    if ack_url:
        lines.append(f"[{labels['ack']}]({ack_url})")
    return "\n\n".join(lines)


def fit_bytes(body: str, suffix: str, limit: int) -> str:
    """``body + suffix`` in at most ``limit`` bytes of UTF-8, cutting the body (never the suffix,
    which carries the ack link) at a character boundary and marking the cut."""
    text = body + suffix
    if len(text.encode()) <= limit:
        return text
    room = limit - len(suffix.encode()) - len("…".encode())
    return body.encode()[:max(0, room)].decode("utf-8", "ignore") + "…" + suffix


def ack_suffix(message: Message, ack_url: str | None, *, reply_acknowledges: bool = False) -> str:
    """How to acknowledge, for one recipient: the link, or a reply where replies acknowledge."""
    lang = language(message.lang)
    space = "" if lang == "zh-CN" else " "
    if ack_url:
        return space + ACK_HINT[lang] + ack_url
    if reply_acknowledges:
        return space + REPLY_HINT[lang]
    return ""


# GSM 03.38 basic character set: a text of these alone goes in 7-bit segments.
GSM7 = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENDED = set("^{}\\[~]|€\f")  # each counts twice


def sms_segments(text: str) -> int:
    """How many SMS segments a text takes: 160/153 GSM-7 characters, or 70/67 UCS-2 code units
    (any Chinese character makes the whole text UCS-2)."""
    if all(c in GSM7 or c in GSM7_EXTENDED for c in text):
        units, single, multi = sum(2 if c in GSM7_EXTENDED else 1 for c in text), 160, 153
    else:
        units, single, multi = len(text.encode("utf-16-le")) // 2, 70, 67
    return 1 if units <= single else -(-units // multi)
