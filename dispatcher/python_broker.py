"""The embedded MQTT broker where Mosquitto is not installed: amqtt, a maintained Python broker,
in a child process (``python -m dispatcher.python_broker PORT``), listening on 127.0.0.1 only.

It keeps nothing across a restart of its own; a command whose acknowledgement is lost that way
is sent again after ``SHAOZI_MQTT_ACK_TIMEOUT_S``, as after any lost acknowledgement.
"""

from __future__ import annotations

import asyncio
import logging
import sys


async def serve(port: int) -> None:
    from amqtt.broker import Broker

    broker = Broker({
        "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{port}"}},
        "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
    })
    await broker.start()
    await asyncio.Event().wait()


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    try:
        asyncio.run(serve(int(sys.argv[1])))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
