"""The ``responder`` command: parse arguments, load settings, call one function.

    responder demo                          the whole pipeline on local stand-ins
    responder check   --config config.toml  can every part be reached and signed in to?
    responder once    --config config.toml  one pass over the mailbox, then exit (cron)
    responder run     --config config.toml  serve: wait for mail with IMAP IDLE
    responder explain MESSAGE.eml [--json]  what the responder reads in one message
    responder audit   --config config.toml  the ledger as CSV or JSON lines (evidence per decision)
    responder replay  MESSAGE-ID --config config.toml  run one filed message again (idempotent)

Exit codes: 0 all went well; 1 something failed (details on stderr); 2 bad usage or
config.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import logging
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from responder import __version__
from responder.config import ConfigError, Settings, load_instances, readable_by_others
from responder.logs import setup_logging

log = logging.getLogger("responder")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except ConfigError as exc:
        print(f"config error:\n{exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-v", "--verbose", action="store_const", const=1, dest="verbosity",
                        default=0, help="debug logging")
    common.add_argument("-q", "--quiet", action="store_const", const=-1, dest="verbosity",
                        help="warnings and errors only")
    common.add_argument("--log-format", choices=("text", "json"), default="text")
    parser = argparse.ArgumentParser(prog="responder", description=__doc__.split("\n")[0],
                                     parents=[common])
    parser.add_argument("--version", action="version", version=f"responder {__version__}")
    sub = parser.add_subparsers(required=True, metavar="COMMAND")

    def command(name: str, handler: Any, help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help, parents=[common])
        p.set_defaults(handler=handler)
        return p

    p = command("demo", _demo, "run the whole pipeline against local stand-ins and exit")
    p.add_argument("--json", action="store_true", help="one JSON object per message")
    for name, handler, text in (
        ("check", _check, "check the config and sign in to the mailbox, SMTP and Halo"),
        ("once", _once, "process the messages waiting now, then exit (for cron)"),
        ("run", _run, "serve: process mail as it arrives (IMAP IDLE, else polling)"),
    ):
        p = command(name, handler, text)
        p.add_argument("--config", "-c", type=Path, required=True, help="the TOML config")
        p.add_argument("--instance", help="only this [instances.NAME] of the config")
        if name != "run":
            p.add_argument("--json", action="store_true", help="JSON output")
    p = command("audit", _audit, "export the ledger: every message, its evidence and outcome")
    p.add_argument("--config", "-c", type=Path, required=True, help="the TOML config")
    p.add_argument("--format", choices=("csv", "json"), default="csv",
                   help="csv (default) or json (one object per line)")
    p.add_argument("--since", type=_date, help="only messages recorded since (YYYY-MM-DD)")
    p.add_argument("--instance", help="only this [instances.NAME] of the config")
    p = command("replay", _replay, "put one filed message back and run a pass, once its "
                "cause is fixed (an approved or rejected message is left alone)")
    p.add_argument("message_id", metavar="MESSAGE-ID", help="its Message-ID (<> optional)")
    p.add_argument("--config", "-c", type=Path, required=True, help="the TOML config")
    p.add_argument("--instance", help="only this [instances.NAME] of the config")
    p.add_argument("--json", action="store_true", help="one JSON object")
    p = command("explain", _explain, "show what the responder reads in one message")
    p.add_argument("message", type=Path, help="an .eml file ('-' for standard input)")
    p.add_argument("--json", action="store_true", help="one JSON object")
    p.add_argument("--config", "-c", type=Path, help="use this config's tags, words and trust")
    p.add_argument("--online", action="store_true",
                   help="with --config: look the ticket up in Halo and show the planned action")
    return parser


def _instances(args: argparse.Namespace) -> dict[str, Settings]:
    """The config's instances (``--instance`` picks one), with logging set up for them."""
    instances = load_instances(args.config)
    if getattr(args, "instance", None):
        if args.instance not in instances:
            raise ConfigError(f"no instance {args.instance!r} in {args.config} "
                              f"(it has: {', '.join(instances)})")
        instances = {args.instance: instances[args.instance]}
    secrets = [s for settings in instances.values() for s in settings.secrets()]
    setup_logging(args.verbosity, args.log_format, secrets)
    if readable_by_others(args.config) and secrets:
        log.warning("%s holds secrets and is readable by other users: chmod 600 it",
                    args.config)
    return instances


def _check(args: argparse.Namespace) -> int:
    from responder.service import check

    report, ok = {}, True
    for name, settings in _instances(args).items():
        lines = asyncio.run(check(settings))
        ok = ok and all(ln.ok for ln in lines)
        report[name] = {ln.component: {"ok": ln.ok, "detail": ln.detail} for ln in lines}
        if not args.json:
            if len(report) > 1 or name != "default":
                print(f"[{name}]")
            for ln in lines:
                print(f"{ln.component:8} {'ok' if ln.ok else 'FAILED':6} {ln.detail}")
    if args.json:
        print(json.dumps(report["default"] if list(report) == ["default"] else report))
    return 0 if ok else 1


def _once(args: argparse.Namespace) -> int:
    from responder.service import once

    messages: list[dict[str, Any]] = []
    sent = unsent = failed = 0
    for name, settings in _instances(args).items():
        try:
            result = asyncio.run(once(settings, name, _progress(name)))
            if sys.stderr.isatty():
                sys.stderr.write("\n")
        except Exception as exc:  # one instance's outage must not hide the others' work
            log.error("%s: pass failed: %s", name, exc)
            failed += 1
            continue
        messages += [{"instance": name, **r.as_json()} for r in result.reports]
        sent, unsent = sent + result.answers_sent, unsent + result.answers_failed
        failed += result.failed
    if args.json:
        print(json.dumps({"messages": messages, "answers_sent": sent,
                          "answers_failed": unsent, "failed": failed}))
    else:
        print(f"{len(messages)} messages, {sent} answers sent, {failed} failed")
    return 1 if failed else 0


def _progress(name: str) -> Callable[[str], None] | None:
    """A one-line progress display on a terminal; nothing when output is piped."""
    if not sys.stderr.isatty():
        return None

    def show(text: str) -> None:
        label = "" if name == "default" else f"[{name}] "
        sys.stderr.write(f"\r\033[K{label}{text}")
        sys.stderr.flush()

    return show


def _run(args: argparse.Namespace) -> int:
    from responder.service import serve

    asyncio.run(serve(_instances(args), args.config))
    return 0


def _explain(args: argparse.Namespace) -> int:
    from responder.explain import explain

    setup_logging(args.verbosity, args.log_format)
    raw = sys.stdin.buffer.read() if str(args.message) == "-" else _read(args.message)
    if raw is None:
        return 2
    settings = next(iter(load_instances(args.config).values())) if args.config else None
    if args.online and settings is None:
        print("--online needs --config", file=sys.stderr)
        return 2
    if settings:
        setup_logging(args.verbosity, args.log_format, settings.secrets())
    report = asyncio.run(explain(raw, settings, online=args.online))
    if args.json:
        print(json.dumps(report, ensure_ascii=False))
    else:
        for key, value in report.items():
            if key == "reply_text":
                continue
            print(f"{key:15} {value if value is not None else '-'}")
        print("reply_text")
        for line in str(report["reply_text"]).splitlines() or [""]:
            print(f"  | {line}")
    return 0


def _date(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text).replace(tzinfo=UTC)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date: {text!r} (use YYYY-MM-DD)") from None


def _audit(args: argparse.Namespace) -> int:
    from responder.ledger import Ledger

    writer = None
    for name, settings in _instances(args).items():
        ledger = Ledger(settings.state.path)
        try:
            for row in ledger.rows(since=args.since):
                row = {"instance": name, **row}
                if args.format == "json":
                    print(json.dumps(row, ensure_ascii=False))
                    continue
                if writer is None:
                    writer = csv.DictWriter(sys.stdout, fieldnames=list(row),
                                            lineterminator="\n")
                    writer.writeheader()
                writer.writerow(row)
        finally:
            ledger.close()
    return 0


def _replay(args: argparse.Namespace) -> int:
    from responder.replay import Replayed, replay

    done = Replayed(args.message_id, "unknown", f"no message {args.message_id} in the ledger")
    name = ""
    for name, settings in _instances(args).items():
        done = asyncio.run(replay(settings, args.message_id, name, _progress(name)))
        if done.status != "unknown":
            break
    if sys.stderr.isatty() and done.status not in ("unknown", "decided", "not-found"):
        sys.stderr.write("\n")
    if args.json:
        instance = name if done.status != "unknown" else None
        print(json.dumps({"instance": instance, **done.as_json()}))
    else:
        print(f"{done.message_id}: {done.detail}")
    return 0 if done.ok else 1


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError as exc:
        print(f"cannot read {path}: {exc.strerror}", file=sys.stderr)
        return None


def _demo(args: argparse.Namespace) -> int:
    from responder.demo import run_demo

    setup_logging(args.verbosity if args.verbosity else -1, args.log_format)
    return asyncio.run(run_demo(as_json=args.json))


if __name__ == "__main__":
    sys.exit(main())
