"""Running Shaozi: the API, the workers, or both in one process, with their resources in order."""

from __future__ import annotations

import asyncio
import gc
import signal
from contextlib import AsyncExitStack

import structlog
from aiohttp import web

from channels.catalog import build_channels
from config import Settings, kept_admin_key
from contacts import Registry
from contacts.store import LiveRegistry, RegistryStore
from dispatcher.api import build_app
from dispatcher.connections import redis_client
from dispatcher.embedded import ChildServer, EmbeddedError, EmbeddedRedis, embedded_broker
from dispatcher.worker import Worker

log = structlog.get_logger("shaozi")


class ServiceError(RuntimeError):
    pass


async def run(settings: Settings, *, api: bool, worker: bool, stop: asyncio.Event | None = None,
              started: asyncio.Event | None = None) -> None:
    """Run until SIGINT/SIGTERM (or ``stop``); everything opened is closed in reverse order."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):
            pass
    settings.signing_secret()  # generated and kept under the data dir on first start when unset
    async with AsyncExitStack() as stack:
        url = settings.redis_url
        if not url:
            if not (api and worker):
                raise ServiceError("SHAOZI_REDIS_URL must be set when the API and the workers run apart")
            embedded = EmbeddedRedis(settings.data_dir / "redis", appendfsync=settings.embedded_redis_appendfsync)
            url = await _started(embedded)
            stack.callback(embedded.stop)
            log.info("embedded redis started", url=url, dir=str(embedded.dir))
        redis = redis_client(url)
        stack.push_async_callback(redis.aclose)
        await redis.ping()
        # The registry lives in Redis; the file seeds it when it is empty.
        live = await LiveRegistry.open(RegistryStore(redis, settings.redis_prefix),
                                       lambda: Registry.load(settings.registry), note=f"seeded from {settings.registry}")
        registry = live.current
        # A large registry is millions of long-lived objects; leave them out of the cyclic garbage
        # collector, whose full passes over them stalled sending for up to a second.
        gc.freeze()
        if worker and registry.devices and not settings.mqtt_url:
            if not api:
                raise ServiceError("SHAOZI_MQTT_URL must be set when the workers run apart (the registry has gateways)")
            try:
                broker = embedded_broker(settings.data_dir / "mqtt")
            except EmbeddedError as exc:
                raise ServiceError(str(exc)) from exc
            settings.mqtt_url = await _started(broker)
            stack.callback(broker.stop)
            log.info("embedded mqtt broker started", url=settings.mqtt_url, dir=str(broker.dir))

        if api:  # first, so that a port in use stops everything before any work starts
            admin_key = None
            if not settings.api_keys:
                admin_key = kept_admin_key(settings)
                settings.api_keys = {admin_key: "admin"}
            runner = web.AppRunner(build_app(settings, redis, live), access_log=None)
            await runner.setup()
            stack.push_async_callback(runner.cleanup)
            site = web.TCPSite(runner, settings.host, settings.port)
            try:
                await site.start()
            except OSError as exc:
                raise ServiceError(f"cannot listen on {settings.host}:{settings.port}: {exc.strerror or exc}") from exc
            log.info("api listening", url=settings.base_url(), registry_version=live.version,
                     regions=len(registry.tree()), people=registry.size)
            if admin_key:
                print(f"Shaozi is listening on {settings.base_url()}\n"
                      f"admin API key (kept in {settings.data_dir / 'admin.key'}): {admin_key}", flush=True)
        tasks = []
        if worker:
            channels = build_channels(settings, live)
            tasks.append(asyncio.create_task(Worker(settings, redis, live, channels).run(stop)))
        if started is not None:
            started.set()
        waiter = asyncio.create_task(stop.wait())
        await asyncio.wait([waiter, *tasks], return_when=asyncio.FIRST_COMPLETED)
        stop.set()
        waiter.cancel()
        for outcome in await asyncio.gather(*tasks, return_exceptions=True):
            if isinstance(outcome, Exception):
                raise ServiceError(f"worker failed: {outcome!r}") from outcome


async def _started(server: ChildServer) -> str:
    """Start an embedded server; its failure is the service's, said plainly."""
    try:
        return await asyncio.to_thread(server.start)
    except EmbeddedError as exc:
        raise ServiceError(f"cannot start the embedded {server.name}: {exc}") from exc
