"""Signed acknowledgement links: ``<SHAOZI_PUBLIC_URL>/a/<token>``.

A token names one receipt and when it stops working, with an HMAC-SHA256 (keyed with the
signing secret, cut to 96 bits) over both, so it can be neither forged nor moved to another
receipt nor stretched past its alert. It is short, because every character of a link costs
SMS space: ``<receipt id>~<expiry, base 36>~<16 characters of MAC>``.
"""

from __future__ import annotations

import base64
import functools
import hmac
import time

PATH = "/a/"
DEFAULT_LIFETIME_S = 7 * 86400  # for alerts that do not expire


class AckLinkError(ValueError):
    """A token that does not acknowledge anything; ``reason`` is forged, expired or malformed."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _mac(secret: bytes, payload: str) -> str:
    return base64.urlsafe_b64encode(hmac.digest(secret, payload.encode(), "sha256")[:12]).decode()


@functools.lru_cache(maxsize=64)  # one expiry per alert: computed once, not per recipient
def _b36(n: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        n, r = divmod(n, 36)
        out = digits[r] + out
        if not n:
            return out


class AckLinks:
    def __init__(self, secret: str, base_url: str) -> None:
        self.secret = secret.encode()
        self.base_url = base_url.rstrip("/")

    def token(self, receipt_id: str, expires_at: float | None) -> str:
        expiry = int(expires_at if expires_at is not None else time.time() + DEFAULT_LIFETIME_S)
        payload = f"{receipt_id}~{_b36(expiry)}"
        return f"{payload}~{_mac(self.secret, payload)}"

    def url(self, receipt_id: str, expires_at: float | None) -> str:
        return f"{self.base_url}{PATH}{self.token(receipt_id, expires_at)}"

    def verify(self, token: str, now: float | None = None) -> str:
        """The receipt id a token names; ``AckLinkError`` when it is forged, altered or expired."""
        parts = token.split("~")
        if len(parts) != 3 or len(token) > 128:
            raise AckLinkError("malformed")
        receipt_id, expiry, mac = parts
        if not hmac.compare_digest(mac, _mac(self.secret, f"{receipt_id}~{expiry}")):
            raise AckLinkError("forged")
        try:
            expires_at = int(expiry, 36)
        except ValueError as exc:
            raise AckLinkError("malformed") from exc
        if (now if now is not None else time.time()) > expires_at:
            raise AckLinkError("expired")
        return receipt_id
