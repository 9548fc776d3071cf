"""The front door: `shaozi serve` on its embedded default, then `shaozi alert send` and `show`,
and `shaozi registry import` and `export`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from dispatcher.embedded import free_port


def _shaozi(*args: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dispatcher.cli", *args], env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_serve_embedded_then_send_and_show(tmp_path):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHAOZI_")}
    env |= {"SHAOZI_DATA_DIR": str(tmp_path / "var"), "SHAOZI_PORT": str(port), "SHAOZI_LOG_LEVEL": "warning"}
    server = subprocess.Popen([sys.executable, "-m", "dispatcher.cli", "serve"], env=env, cwd=tmp_path,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first_line = server.stdout.readline()
        assert f"http://127.0.0.1:{port}" in first_line, first_line + server.stderr.read()
        key_line = server.stdout.readline()
        key = (tmp_path / "var" / "admin.key").read_text().strip()
        assert key in key_line

        sent = _shaozi("alert", "send", "--region", "420116001001", "--severity", "Extreme", "--event", "暴雨",
                       "--instruction", "立即转移", "预计3小时降雨100毫米", env=env)
        assert sent.returncode == 0, sent.stderr
        assert "settled" in sent.stdout and "delivered" in sent.stdout
        alert_id = sent.stdout.split()[1]

        shown = _shaozi("alert", "show", alert_id, "--key", key, env=env)
        assert shown.returncode == 0, shown.stderr
        lines = shown.stdout.splitlines()
        assert lines[0].startswith(f"alert {alert_id}  settled")
        assert any(line.split()[:2] == ["sms", "4"] for line in lines)

        bad = tmp_path / "people.csv"
        bad.write_text("姓名,编号,角色,区划代码,手机\n王芳,n1,信息员,420116001001,13812345678\n"
                       "李四,n2,信息员,420116001001,1381234\n", encoding="utf-8")
        refused = _shaozi("registry", "import", str(bad), env=env)
        assert refused.returncode == 1
        assert "people.csv line 3: phone '1381234' is not a valid number" in refused.stderr
        bad.write_text("姓名,编号,角色,区划代码,手机\n王芳,n1,信息员,420116001001,13812345678\n", encoding="utf-8")
        dry = _shaozi("registry", "import", str(bad), "--dry-run", env=env)
        assert dry.returncode == 0 and "would change" in dry.stdout and "1 added" in dry.stdout, dry.stderr
        exported = _shaozi("registry", "export", "--kind", "people", env=env)
        assert exported.stdout.startswith("id,name,role,region,phone") and "n1," not in exported.stdout

        outbox = (tmp_path / "var" / "outbox" / "console.jsonl").read_text(encoding="utf-8")
        assert outbox.count("预计3小时降雨100毫米") == 4
        assert (tmp_path / "var" / "redis" / "redis.log").exists()
    finally:
        server.send_signal(signal.SIGINT)
        assert server.wait(30) == 0, server.stderr.read()
    # the embedded Redis stopped with it, its AOF kept under the data dir
    assert list((tmp_path / "var" / "redis").glob("appendonly*"))
    deadline = time.monotonic() + 5
    while subprocess.run(["pgrep", "-f", f"--dir {tmp_path}"], capture_output=True).returncode == 0:
        assert time.monotonic() < deadline, "embedded redis-server still running"
        time.sleep(0.1)


def test_bad_settings_are_reported(tmp_path):
    env = {**os.environ, "SHAOZI_PORT": "not-a-port"}
    out = _shaozi("serve", env=env)
    assert out.returncode == 2
    assert out.stderr.startswith("shaozi: bad settings") and "port" in out.stderr


def test_api_alone_needs_a_redis_url(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHAOZI_")}
    env |= {"SHAOZI_DATA_DIR": str(tmp_path), "SHAOZI_PORT": str(free_port())}
    out = _shaozi("api", env=env)
    assert out.returncode == 1 and "SHAOZI_REDIS_URL" in out.stderr


def test_a_taken_port_is_a_clear_error(tmp_path):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if not k.startswith("SHAOZI_")}
        env |= {"SHAOZI_DATA_DIR": str(tmp_path / "var"), "SHAOZI_PORT": str(port)}
        out = _shaozi("serve", env=env)
    assert out.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in out.stderr and "Traceback" not in out.stderr
