"""Channel adapters behind one interface (``channels.base``)."""

from channels.base import Channel, ChannelError, Delivery, Message, SendResult

__all__ = ["Channel", "ChannelError", "Delivery", "Message", "SendResult"]
