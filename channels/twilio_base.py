"""What Twilio's channels share: the SDK client on its asyncio HTTP client, error mapping.

The SDK's own asyncio client (``AsyncTwilioHttpClient``, aiohttp underneath) keeps sends off
the event loop without threads. ``SHAOZI_TWILIO_API_BASE`` points the SDK at a relay or a test
double instead of Twilio's host. Progress comes back to ``/hooks/twilio/status`` when a message
or call carries a ``StatusCallback``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from email.utils import parsedate_to_datetime
from typing import TypeVar

import aiohttp
from twilio.base.exceptions import TwilioRestException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.rest import Client

from channels.base import Channel, ChannelError, Delivery

T = TypeVar("T")

# Twilio error codes that are worth trying again (queue overflows, throttling); every other
# 4xx is permanent: invalid number 21211, unsubscribed 21610, ...
TRANSIENT_CODES = {20429, 21611, 30001}


# The SDK's exceptions do not carry the answer's headers; the HTTP client keeps Twilio's
# Retry-After for the task that made the request (each send runs in a task of its own).
_retry_after: ContextVar[float | None] = ContextVar("twilio_retry_after", default=None)


def _seconds(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


class _HttpClient(AsyncTwilioHttpClient):
    async def request(self, *args, **kwargs):
        response = await super().request(*args, **kwargs)
        _retry_after.set(_seconds(response.headers.get("Retry-After") if response.headers else None))
        return response


def classify(exc: TwilioRestException, retry_after_s: float | None = None) -> ChannelError:
    code = str(exc.code) if exc.code else str(exc.status)
    reason = exc.msg or f"HTTP {exc.status}"
    throttled = exc.status == 429 or exc.code == 20429
    recoverable = throttled or exc.status >= 500 or (exc.code in TRANSIENT_CODES)
    return ChannelError(reason, recoverable=recoverable, throttled=throttled, code=code,
                        retry_after_s=retry_after_s if recoverable else None)


class TwilioChannel(Channel):
    """A channel on Twilio's REST API: one SDK client per process."""

    secret_fields = ("auth_token",)

    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        *,
        api_base: str | None = None,
        status_callback: Callable[[Delivery], str] | None = None,
    ) -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.api_base = api_base
        self.status_callback = status_callback
        self._http: AsyncTwilioHttpClient | None = None
        self._client: Client | None = None

    async def start(self) -> None:
        self._http = _HttpClient(timeout=30)
        self._client = Client(self.account_sid, self.auth_token, http_client=self._http)
        if self.api_base:
            self._client.api.base_url = self.api_base.rstrip("/")

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def client(self) -> Client:
        if self._client is None:
            await self.start()
        return self._client

    @staticmethod
    async def call(request: Awaitable[T]) -> T:
        """One request to Twilio, its failures mapped to ``ChannelError``."""
        try:
            return await request
        except TwilioRestException as exc:
            raise classify(exc, _retry_after.get()) from exc
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise ChannelError(f"Twilio unreachable: {type(exc).__name__}", recoverable=True) from exc
