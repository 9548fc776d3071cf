"""Typed keys of the web application's state, shared by the API's handlers."""

from aiohttp import web
from redis.asyncio import Redis

from config import Settings
from contacts.store import LiveRegistry
from dispatcher.acklinks import AckLinks
from dispatcher.alerts import AlertStore
from dispatcher.keys import Keys

SETTINGS = web.AppKey("settings", Settings)
REDIS = web.AppKey("redis", Redis)
STORE = web.AppKey("store", AlertStore)
REGISTRY = web.AppKey("registry", LiveRegistry)
KEYS = web.AppKey("keys", Keys)
ACK_LINKS = web.AppKey("ack_links", AckLinks)
ROLE = web.RequestKey("role", str)
