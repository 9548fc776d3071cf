"""``shaozi``: run the service, or talk to a running one."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import time
from pathlib import Path

from pydantic import ValidationError

from config import Settings, load_settings
from contacts import RegistryError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="shaozi", description="Shaozi (哨子): early-warning message dispatch")
    p.add_argument("--config", help="TOML settings file (or SHAOZI_CONFIG)")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("serve", help="API and workers in one process (embedded Redis when SHAOZI_REDIS_URL is unset)")
    sub.add_parser("api", help="the HTTP API alone (needs SHAOZI_REDIS_URL)")
    w = sub.add_parser("worker", help="a worker alone: planners and senders (needs SHAOZI_REDIS_URL)")
    w.add_argument("--metrics-port", type=int, help="serve this worker's Prometheus metrics on this port")

    sim = sub.add_parser("gateway-sim", help="simulated loudspeaker gateways from the registry, over MQTT")
    sim.add_argument("--mqtt-url", help="the broker (default SHAOZI_MQTT_URL)")
    sim.add_argument("--region", help="only the gateways in this region and below")
    sim.add_argument("--devices", type=int, help="at most this many gateways")
    sim.add_argument("--play-s", type=float, default=2.0, help="seconds each warning takes to play (default 2)")
    sim.add_argument("--drop-acks", type=float, default=0.0, help="share of acknowledgements not sent (0..1)")
    sim.add_argument("--speak", metavar="DIR", help="speak each warning into a WAV file here (espeak-ng)")
    sim.add_argument("--offline-after", type=float, metavar="S", help="a drill: go offline after S seconds, ...")
    sim.add_argument("--offline-for", type=float, default=30.0, metavar="S", help="... for S seconds (default 30)")

    reg = sub.add_parser("registry", help="import or export the registry of a running server")
    rsub = reg.add_subparsers(dest="registry_command", required=True)
    imp = rsub.add_parser("import", help="import a CSV (people, devices, groups, regions) or YAML file")
    imp.add_argument("file", type=Path)
    imp.add_argument("--kind", choices=["people", "devices", "groups", "regions"], help="what a CSV holds")
    imp.add_argument("--dry-run", action="store_true", help="say what would change, write nothing")
    imp.add_argument("--replace", action="store_true", help="the kinds in the file replace what is there")
    exp = rsub.add_parser("export", help="write the registry as YAML, or one kind as CSV")
    exp.add_argument("--kind", choices=["people", "devices", "groups", "regions"])
    exp.add_argument("-o", "--output", type=Path, help="file to write (default: standard output)")
    aud = rsub.add_parser("audit", help="readiness: the six haves' warning points per community, worst first")
    for a in (imp, exp, aud):
        a.add_argument("--url", help="server URL (default SHAOZI_URL, else from SHAOZI_HOST/SHAOZI_PORT)")
        a.add_argument("--key", help="an admin API key (default SHAOZI_API_KEY, else the one under the data dir)")

    alert = sub.add_parser("alert", help="post or inspect alerts on a running server")
    asub = alert.add_subparsers(dest="alert_command", required=True)
    send = asub.add_parser("send", help="post an alert and follow it until it settles")
    send.add_argument("text", help="the warning's description")
    send.add_argument("--region", action="append", required=True, help="region code (repeatable)")
    send.add_argument("--severity", default="Severe", choices=["Extreme", "Severe", "Moderate", "Minor", "Unknown"])
    send.add_argument("--urgency", default="Immediate", choices=["Immediate", "Expected", "Future", "Past", "Unknown"])
    send.add_argument("--certainty", default="Likely",
                      choices=["Observed", "Likely", "Possible", "Unlikely", "Unknown"])
    send.add_argument("--event", required=True, help="e.g. 暴雨 / flood")
    send.add_argument("--category", default="Met")
    send.add_argument("--headline")
    send.add_argument("--instruction")
    send.add_argument("--area", help="area description (default: the regions' names)")
    send.add_argument("--exercise", action="store_true", help="a drill: status Exercise, marked 【演练】")
    send.add_argument("--lang", default="zh-CN")
    send.add_argument("--no-follow", action="store_true")
    show = asub.add_parser("show", help="print an alert's receipt summary")
    show.add_argument("id")
    silent = asub.add_parser("silent", help="who has not acknowledged, by street and community")
    silent.add_argument("id")
    for a in (send, show, silent):
        a.add_argument("--url", help="server URL (default SHAOZI_URL, else from SHAOZI_HOST/SHAOZI_PORT)")
        a.add_argument("--key", help="API key (default SHAOZI_API_KEY, else the admin key under the data dir)")
    return p


def _client_target(args: argparse.Namespace, settings: Settings) -> tuple[str, str]:
    url = (args.url or os.environ.get("SHAOZI_URL") or f"http://{settings.host}:{settings.port}").rstrip("/")
    key = args.key or os.environ.get("SHAOZI_API_KEY")
    if not key:
        kept = settings.data_dir / "admin.key"
        if not kept.exists():
            raise SystemExit("shaozi: no API key: pass --key, set SHAOZI_API_KEY, or run from the server's directory")
        key = kept.read_text().strip()
    return url, key


def _alert_from_args(args: argparse.Namespace) -> dict:
    return {
        "status": "Exercise" if args.exercise else "Actual",
        "msgType": "Alert",
        "scope": "Public",
        "info": {
            "language": args.lang,
            "category": args.category,
            "event": args.event,
            "urgency": args.urgency,
            "severity": args.severity,
            "certainty": args.certainty,
            "headline": args.headline or args.event,
            "description": args.text,
            **({"instruction": args.instruction} if args.instruction else {}),
            "area": {"areaDesc": args.area or "", "regions": args.region},  # names filled in from the registry
        },
    }


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = load_settings(args.config)
    except (ValidationError, FileNotFoundError, ValueError) as exc:
        print(f"shaozi: bad settings: {exc}", file=sys.stderr)
        return 2
    from dispatcher import logs

    logs.configure(settings.log_level)
    try:
        if args.command in ("serve", "api", "worker"):
            from dispatcher.service import ServiceError, run

            if args.command == "worker" and args.metrics_port:
                from prometheus_client import start_http_server

                start_http_server(args.metrics_port, addr=settings.host)
            try:
                asyncio.run(run(settings, api=args.command != "worker", worker=args.command != "api"))
            except ServiceError as exc:
                print(f"shaozi: {exc}", file=sys.stderr)
                return 1
            return 0
        if args.command == "gateway-sim":
            return _gateway_sim(args, settings)
        from dispatcher.client import (
            ClientError,
            export_registry,
            import_registry,
            send_alert,
            show_alert,
            show_audit,
            show_silent,
        )

        url, key = _client_target(args, settings)
        try:
            if args.command == "registry":
                if args.registry_command == "audit":
                    print(asyncio.run(show_audit(url, key)))
                    return 0
                if args.registry_command == "import":
                    print(asyncio.run(import_registry(url, key, args.file, kind=args.kind, dry_run=args.dry_run,
                                                      replace=args.replace)))
                    return 0
                text = asyncio.run(export_registry(url, key, args.kind))
                if args.output:
                    args.output.write_text(text, encoding="utf-8")
                else:
                    print(text, end="")
                return 0
            if args.alert_command == "send":
                summary = asyncio.run(send_alert(url, key, _alert_from_args(args), follow=not args.no_follow))
                return 0 if summary.get("state", "accepted") in ("accepted", "settled") else 1
            show = show_silent if args.alert_command == "silent" else show_alert
            print(asyncio.run(show(url, key, args.id)))
            return 0
        except ClientError as exc:
            print(f"shaozi: {exc}", file=sys.stderr)
            return 1
        except OSError as exc:
            print(f"shaozi: cannot reach {url}: {exc}", file=sys.stderr)
            return 1
    except RegistryError as exc:
        print(f"shaozi: registry: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _gateway_sim(args: argparse.Namespace, settings: Settings) -> int:
    from contacts import Registry
    from dispatcher.gateway_sim import Gateway, report, run_gateways

    url = args.mqtt_url or settings.mqtt_url
    if not url:
        print("shaozi: no broker: pass --mqtt-url or set SHAOZI_MQTT_URL", file=sys.stderr)
        return 2
    registry = Registry.load(settings.registry)
    devices = registry.devices_in([args.region]) if args.region else registry.devices
    devices = devices[:args.devices] if args.devices else devices
    if not devices:
        print(f"shaozi: the registry {settings.registry} has no gateways"
              + (f" in {args.region}" if args.region else ""), file=sys.stderr)
        return 2
    speak = Path(args.speak) if args.speak else None
    if speak:
        speak.mkdir(parents=True, exist_ok=True)
    gateways = [Gateway(d.id, d.key.get_secret_value(), url, settings.mqtt_prefix, play_s=args.play_s,
                        drop_acks=args.drop_acks, speak_dir=speak, ca_file=settings.mqtt_ca_file) for d in devices]
    print(f"{len(gateways)} simulated gateways on {url} (prefix {settings.mqtt_prefix}); Ctrl-C stops them",
          flush=True)
    started = time.time()

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await run_gateways(gateways, stop, offline_after=args.offline_after, offline_for=args.offline_for)

    asyncio.run(main())
    print(report(gateways, started))
    return 0


if __name__ == "__main__":
    sys.exit(main())
