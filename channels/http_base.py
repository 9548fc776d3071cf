"""What the messaging-app channels share: one aiohttp session per process, timeouts, and a
provider's answer turned into a result or a ``ChannelError``."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from channels.base import Channel, ChannelError


class JsonHttpChannel(Channel):
    timeout_s: float = 15.0

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout_s))

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def post_json(self, url: str, payload: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """POST JSON; returns (HTTP status, JSON answer). Network failures are worth a retry."""
        if self._session is None:
            await self.start()
        try:
            async with self._session.post(url, json=payload) as resp:
                try:
                    body = await resp.json(content_type=None)
                except ValueError:
                    body = {}
                return resp.status, body if isinstance(body, dict) else {}
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise ChannelError(f"unreachable: {type(exc).__name__}", recoverable=True) from exc
