"""The ``responder`` command: parse arguments, load settings, call one function.

Each command is added by a small ``_add_<command>`` function (its flags, help text,
examples and exit codes) and run by a ``_<command>`` handler. ``main`` turns every
failure an admin can meet into one sentence on stderr and a documented exit code
(``EXIT_CODES``); a traceback is shown only with ``-v``.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import logging
import os
import sqlite3
import sys
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from responder import __version__
from responder.commands.summary import counts, once_summary
from responder.config import ConfigError, Settings, load_instances
from responder.logs import redact, setup_logging, warn_exposed_secrets
from responder.terminal import csv_cell, json_text, printable, printable_lines

log = logging.getLogger("responder")

DESCRIPTION = """\
Turns email replies to Halo approval requests (APPROVE / REJECT) into ticket approvals.

It watches one mailbox (IMAP, Maildir or Microsoft Graph), reads each reply the way a
person would, checks that the sender is a pending approver of the ticket and really sent
it, records the decision in Halo and answers the person. Start with `responder demo`, then write a
config with `responder init` (or by hand: config.example.toml) and run
`responder check --config config.toml`."""

EXIT_CODES = """\
exit codes:
  0    all went well
  1    something failed; one line on stderr says what
  2    bad usage or config; the message names the key (e.g. imap.port)
  130  interrupted (Ctrl-C)
  141  the output was closed early (e.g. piped into head)"""

OK, FAILED, USAGE, INTERRUPTED, BROKEN_PIPE = 0, 1, 2, 130, 141


class Failed(Exception):
    """A command could not do its job; the message is the one line the admin reads."""

    def __init__(self, message: str, code: int = FAILED) -> None:
        super().__init__(message)
        self.code = code


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        code = int(args.handler(args))
        sys.stdout.flush()  # a closed pipe shows here, inside the handling below
        return code
    except ConfigError as exc:
        _say(f"config error:\n{exc}")
        return USAGE
    except Failed as exc:
        _say(f"error: {exc}")
        return exc.code
    except KeyboardInterrupt:
        _say("interrupted")
        return INTERRUPTED
    except BrokenPipeError:
        # The reader (head, less) has gone: say nothing more, and keep Python's own
        # flush at exit from failing on the same pipe.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return BROKEN_PIPE
    except Exception as exc:
        known = _known_failure(exc)
        if known is not None:
            _say(f"error: {known}")
            return FAILED
        if getattr(args, "verbosity", 0) > 0:
            _say(traceback.format_exc().rstrip())
        _say(f"error: unexpected {type(exc).__name__}: {exc} (run with -v for the details)")
        return FAILED


def _say(text: str) -> None:
    """One line (or block) for the admin on stderr, with every known secret redacted and
    control characters (from a server's or a message's text) shown escaped."""
    print(redact(printable_lines(text)), file=sys.stderr)


def _known_failure(exc: Exception) -> str | None:
    """The sentence for a failure of a part outside the responder (Halo, mail, disk)."""
    from responder.halo.client import HaloAuthError, HaloError, HaloUnavailable
    from responder.ledger import LedgerError
    from responder.mailboxes import MailboxError
    from responder.senders.smtp import SmtpError

    if isinstance(exc, HaloAuthError):
        return f"Halo refused the sign-in (check halo.client_id and halo.client_secret): {exc}"
    if isinstance(exc, HaloUnavailable):
        return f"Halo is unavailable (try again later): {exc}"
    if isinstance(exc, HaloError):
        return f"Halo: {exc}"
    if isinstance(exc, MailboxError):
        return f"mailbox: {exc}"
    if isinstance(exc, SmtpError):
        return f"smtp: {exc}"
    if isinstance(exc, LedgerError):
        return str(exc)
    if isinstance(exc, sqlite3.Error):
        return f"ledger: {exc}"
    if isinstance(exc, OSError) and exc.filename:
        return f"{exc.filename}: {exc.strerror}"
    return None


# -- the parser -----------------------------------------------------------------------

def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="responder", description=DESCRIPTION, epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"responder {__version__}")
    _global_options(parser, defaults=True)
    sub = parser.add_subparsers(required=True, metavar="COMMAND", title="commands")
    for add in (_add_demo, _add_init, _add_check, _add_once, _add_run, _add_explain, _add_audit,
                _add_replay, _add_backup, _add_web_password):
        add(sub)
    return parser


def _global_options(parser: argparse.ArgumentParser, *, defaults: bool) -> None:
    """-v, -q and --log-format, accepted before the command and after it.

    The command's copy has no defaults (SUPPRESS), so it overrides the top-level value
    only when given after the command.
    """
    def default(value: object) -> object:
        return value if defaults else argparse.SUPPRESS

    group = parser.add_argument_group("logging (before or after the command)")
    group.add_argument("-v", "--verbose", action="store_const", const=1, dest="verbosity",
                       default=default(0), help="debug logging, and tracebacks on errors")
    group.add_argument("-q", "--quiet", action="store_const", const=-1, dest="verbosity",
                       default=default(0), help="warnings and errors only")
    group.add_argument("--log-format", choices=("text", "json"), default=default("text"),
                       help="text (default): one readable line per event on stderr; json: "
                            "one JSON object per line, for journald, Loki or Elasticsearch")


def _command(
    sub: Any, name: str, handler: Callable[[argparse.Namespace], int], summary: str,
    description: str, examples: str, exit_codes: str = "",
) -> argparse.ArgumentParser:
    """A command whose --help shows what it does, examples and its exit codes."""
    codes = exit_codes or "  0 all went well; 1 something failed; 2 bad usage or config"
    p: argparse.ArgumentParser = sub.add_parser(
        name, help=summary, description=f"{summary}.\n\n{description}".rstrip(),
        epilog=f"examples:\n{examples}\n\nexit codes:\n{codes}",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    _global_options(p, defaults=False)
    p.set_defaults(handler=handler)
    return p


def _config_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", "-c", type=Path, required=True, metavar="FILE",
                   help="the TOML config (see config.example.toml)")
    p.add_argument("--instance", metavar="NAME",
                   help="only this [instances.NAME] of the config")


def _add_demo(sub: Any) -> None:
    p = _command(
        sub, "demo", _demo, "run the whole pipeline against local stand-ins, then exit",
        "Needs no config and no outside service: a stand-in Halo, a local SMTP sink and a\n"
        "Maildir seeded with five realistic replies, processed in one real pass.",
        "  responder demo\n  responder demo --json | jq .outcome")
    p.add_argument("--json", action="store_true", help="one JSON object per message")


def _add_init(sub: Any) -> None:
    from responder.commands.init import add_arguments

    p = _command(
        sub, "init", _init, "write a working config by asking, trying each answer",
        "Asks for Halo, the mailbox and how answers leave, trying each as it is given;\n"
        "discovers the trust profile from the newest messages' headers (read-only); writes\n"
        "the config (mode 600) with secrets as file: or env: references. Every question\n"
        "has a flag: with --yes, or without a terminal, a missing answer exits 2.",
        "  responder init\n"
        "  responder init --yes --config-out /etc/halo-approval-responder/config.toml \\\n"
        "      --halo-url https://acme.halopsa.com --client-id ID \\\n"
        "      --client-secret-file /etc/halo-approval-responder/halo_secret \\\n"
        "      --mailbox imap --imap-host mail.acme.com --imap-user approvals@acme.com \\\n"
        "      --imap-password-env IMAP_PASSWORD --smtp-host mail.acme.com --trust auto",
        "  0 written; 1 a part refused (Halo, the mailbox, SMTP: the line says why); 2 a\n"
        "  missing or bad answer (named by its flag)")
    add_arguments(p)


def _add_check(sub: Any) -> None:
    p = _command(
        sub, "check", _check, "check the config and sign in to the mailbox, SMTP and Halo",
        "Validates the config (each error names its key), then signs in to each part in\n"
        "turn and prints one line per part. Nothing is read, moved or sent.",
        "  responder check --config /etc/halo-approval-responder/config.toml\n"
        "  responder check -c config.toml --json\n"
        "  responder check -c config.toml --sample internal.eml external.eml\n"
        "  responder check -c config.toml --online --ticket 1234\n"
        "  responder check -c config.toml --discover",
        "  0 every part is reachable and some trust is set (with --sample: every sample is\n"
        "  trusted and fits the [security] settings; with --discover: the config already\n"
        "  trusts what the newest messages fit, and it trusts at least one of them); 1 a\n"
        "  part failed, no trust is set, or a sample or the discovery does not fit (or not\n"
        "  one message would be trusted); 2 the config is invalid or a sample cannot be read")
    _config_options(p)
    p.add_argument("--json", action="store_true", help="one JSON object: part -> ok, detail")
    p.add_argument("--sample", nargs="+", action="extend", type=Path, metavar="FILE",
                   help="instead of signing in: judge saved replies (.eml) under the "
                        "[security] settings and say which profile they fit (offline)")
    p.add_argument("--discover", action="store_true",
                   help="read the headers of the newest messages in the mailbox (read-only: "
                        "nothing flagged or moved) and print the [security] block they fit")
    p.add_argument("--newest", type=_positive, default=20, metavar="N",
                   help="with --discover: how many of the newest messages to read (20)")
    p.add_argument("--online", action="store_true",
                   help="with --ticket: read a ticket from Halo (nothing is posted)")
    p.add_argument("--ticket", type=int, metavar="N",
                   help="with --online: how the responder reads ticket N's approvers")


def _add_once(sub: Any) -> None:
    p = _command(
        sub, "once", _once, "process the messages waiting now, then exit (for cron)",
        "One pass over the mailbox: every waiting message is decided, answered and filed.\n"
        "The last line counts the messages by outcome.",
        "  responder once --config config.toml\n"
        "  responder once -c config.toml --json",
        "  0 every message was handled; 1 a message failed or is still pending (Halo\n"
        "  unavailable), or the pass itself failed; 2 bad usage or config")
    _config_options(p)
    p.add_argument("--json", action="store_true",
                   help="one JSON object: the messages, counts by outcome, answers, error")


def _add_run(sub: Any) -> None:
    p = _command(
        sub, "run", _run, "serve: process mail as it arrives (IMAP IDLE, else polling)",
        "Runs until SIGTERM or Ctrl-C (finishing the pass in hand). SIGHUP reloads the\n"
        "config, [web] and the health port included. A mailbox or Halo that is down is\n"
        "retried with backoff.",
        "  responder run --config /etc/halo-approval-responder/config.toml --log-format json",
        "  0 stopped by SIGTERM; 1 it could not start (e.g. a newer ledger); 2 bad usage or\n"
        "  config (systemd: RestartPreventExitStatus=2, so a config error is not restarted\n"
        "  in a loop); 130 stopped by Ctrl-C (SIGINT)")
    _config_options(p)


def _add_explain(sub: Any) -> None:
    p = _command(
        sub, "explain", _explain, "show what the responder reads in one message",
        "Offline by default: no server is touched. With --config it also judges the\n"
        "sender's authentication and shows what it would do; --online looks the ticket up\n"
        "in Halo (nothing is ever submitted). The first line is the verdict.",
        "  responder explain reply.eml\n"
        "  responder explain reply.eml --config config.toml --online\n"
        "  responder explain - --json < reply.eml",
        "  0 the message was read; 1 the file cannot be read, or Halo cannot be reached\n"
        "  (--online); 2 bad usage or config")
    p.add_argument("message", type=Path, metavar="MESSAGE",
                   help="an .eml file ('-' for standard input)")
    p.add_argument("--json", action="store_true", help="one JSON object")
    p.add_argument("--config", "-c", type=Path, metavar="FILE",
                   help="use this config's tags, words and trust settings")
    p.add_argument("--online", action="store_true",
                   help="with --config: look the ticket up in Halo and show the planned action")


def _add_audit(sub: Any) -> None:
    p = _command(
        sub, "audit", _audit, "export the ledger: every message, its evidence and outcome",
        "One row per message: sender, authentication verdict, ticket, approver seq,\n"
        "decision, note, outcome, Halo's answers and times (UTC).",
        "  responder audit --config config.toml > ledger.csv\n"
        "  responder audit -c config.toml --json --since 2026-11-01\n"
        "  responder audit -c config.toml --format json --since 2026-11-01T09:30+01:00",
        "  0 exported; 1 the ledger does not exist (nothing is created); 2 bad usage or\n"
        "  config")
    _config_options(p)
    p.add_argument("--format", choices=("csv", "json"), default="csv",
                   help="csv (default) or json (one object per line)")
    p.add_argument("--json", action="store_const", const="json", dest="format",
                   help="the same as --format json")
    p.add_argument("--since", type=_date, metavar="WHEN",
                   help="only messages recorded since a date (2026-11-01) or a date-time "
                        "(2026-11-01T09:30, UTC unless it has an offset like +01:00)")


def _add_replay(sub: Any) -> None:
    p = _command(
        sub, "replay", _replay,
        "put one filed message back and run a pass, once its cause is fixed",
        "Finds the message by its Message-ID (from responder audit) in the folder its\n"
        "outcome filed it in, moves it back and runs one pass. An approved or rejected\n"
        "message is left alone: replaying twice never decides twice.",
        "  responder replay '<CAF=x9k@mail.example.com>' --config config.toml",
        "  0 replayed; 1 unknown Message-ID, message no longer in its folder, or the pass\n"
        "  failed; 2 bad usage or config")
    p.add_argument("message_id", metavar="MESSAGE-ID", help="its Message-ID (<> optional)")
    _config_options(p)
    p.add_argument("--json", action="store_true", help="one JSON object")


def _add_backup(sub: Any) -> None:
    p = _command(
        sub, "backup", _backup, "copy the ledger to a file, safely while the service runs",
        "Uses SQLite's online backup: the copy is consistent even while `responder run`\n"
        "writes to the ledger, and FILE appears only once complete (it is replaced if it\n"
        "exists). With several instances each gets FILE-NAME (e.g. backup-globex.sqlite3).\n"
        "Run it as the service's user so that the files SQLite keeps beside the ledger\n"
        "stay that user's. To restore: stop the service, copy FILE to state.path, start.",
        "  sudo -u responder responder backup -c /etc/halo-approval-responder/config.toml \\\n"
        "      /var/backups/responder-$(date +%F).sqlite3",
        "  0 written; 1 no ledger at state.path (nothing is created), or the copy failed;\n"
        "  2 bad usage or config")
    p.add_argument("file", type=Path, metavar="FILE", help="where to write the copy")
    _config_options(p)


def _add_web_password(sub: Any) -> None:
    _command(
        sub, "web-password", _web_password,
        "print the argon2id hash of a review-console password, for [web] password_hash",
        "Reads the password from the terminal (twice, not echoed) or one line on standard\n"
        "input, and prints only its hash. Use at least 12 characters.",
        "  responder web-password\n"
        "  printf '%s\\n' \"$CONSOLE_PASSWORD\" | responder web-password",
        "  0 printed; 1 the passwords differ or it is too short; 2 bad usage")


# -- the handlers -----------------------------------------------------------------------

MAIL_PARTS = ("halo", "mailbox", "smtp")  # once, replay: a pass, no console
ALL_PARTS = (*MAIL_PARTS, "web")  # run: the console's password hash too, when it is on


def _instances(
    args: argparse.Namespace, needs: tuple[str, ...] = ALL_PARTS
) -> dict[str, Settings]:
    """The config's instances (``--instance`` picks one), with logging set up for them.

    Only the secrets of the parts a command ``needs`` must be readable: ``audit`` and
    ``backup`` need none, so they work from a shell without the service's environment.
    """
    instances = load_instances(args.config)
    if getattr(args, "instance", None):
        if args.instance not in instances:
            raise ConfigError(f"no instance {args.instance!r} in {args.config} "
                              f"(it has: {', '.join(instances)})")
        instances = {args.instance: instances[args.instance]}
    if needs:
        problems = [p for settings in instances.values() for p in settings.secret_problems(*needs)]
        if problems:
            raise ConfigError("\n".join(problems))
    secrets = [s for settings in instances.values() for s in settings.secrets()]
    setup_logging(args.verbosity, args.log_format, secrets)
    warn_exposed_secrets(args.config, instances)
    return instances


def _init(args: argparse.Namespace) -> int:
    from responder.commands.init import InitStop, run_init

    setup_logging(args.verbosity if args.verbosity else -1, args.log_format)
    try:
        return run_init(args)
    except InitStop as exc:
        raise Failed(str(exc), exc.code) from None


def _check(args: argparse.Namespace) -> int:
    if args.sample:
        return _check_samples(args)
    if args.discover:
        return _check_discover(args)
    if args.ticket is not None or args.online:
        return _check_ticket(args)
    from responder.service import check

    report, ok = {}, True
    for name, settings in _instances(args, needs=()).items():  # a missing one fails its part
        lines = asyncio.run(check(settings))
        ok = ok and all(ln.ok for ln in lines)
        report[name] = {ln.component: {"ok": ln.ok, "detail": ln.detail} for ln in lines}
        if not args.json:
            _heading(report, name)
            for ln in lines:
                detail = ln.detail.replace("--config CONFIG", f"--config {args.config}")
                print(f"{ln.component:8} {'ok' if ln.ok else 'FAILED':6} {printable(detail)}")
    if args.json:
        _print_json(report)
    else:
        print(_check_summary(report))
    return OK if ok else FAILED


def _heading(report: dict[str, Any], name: str) -> None:
    """``[name]`` above an instance's lines, unless the config has the default one only."""
    if len(report) > 1 or name != "default":
        print(f"[{name}]")


def _print_json(report: dict[str, Any]) -> None:
    """The report as one JSON object: the default instance's alone, else by instance."""
    print(json.dumps(report["default"] if list(report) == ["default"] else report))


def _check_ticket(args: argparse.Namespace) -> int:
    """``check --online --ticket N``: the ticket's approvers as the responder reads them."""
    from responder.plan import describe
    from responder.service import read_ticket

    if args.ticket is None or not args.online:
        raise Failed("--online and --ticket N go together: "
                     "responder check --online --ticket 1234", USAGE)
    ok, report = True, {}
    for name, settings in _instances(args, needs=("halo",)).items():
        ticket = asyncio.run(read_ticket(settings, args.ticket))
        lines = describe(ticket) if ticket else [f"ticket {args.ticket} was not found in Halo"]
        ok = ok and ticket is not None
        report[name] = lines
        if not args.json:
            _heading(report, name)
            print("\n".join(printable(line) for line in lines))
    if args.json:
        _print_json(report)
    return OK if ok else FAILED


def _check_summary(report: dict[str, dict[str, dict[str, Any]]]) -> str:
    """The closing line: ``all 6 parts ok`` or ``2 of 6 parts FAILED: mailbox, halo``."""
    parts = [(name, part, v["ok"]) for name, found in report.items() for part, v in found.items()]
    failed = [part if len(report) == 1 else f"{name}.{part}" for name, part, ok in parts if not ok]
    if not failed:
        return f"all {len(parts)} parts ok"
    return f"{len(failed)} of {len(parts)} parts FAILED: {', '.join(failed)}"


def _check_samples(args: argparse.Namespace) -> int:
    """``check --sample``: each saved reply's evidence and verdict, and the profile it fits."""
    from responder.trust.samples import fit, read_sample, report_lines

    raws = {str(path): _read(path) for path in args.sample}
    ok, report = True, {}
    for name, settings in _instances(args, needs=()).items():
        samples = [read_sample(path, raw, settings.security) for path, raw in raws.items()]
        found = fit(samples, settings.security)
        ok = ok and not found.contradictions and all(s.verdict.trusted for s in samples)
        report[name] = {"samples": [s.as_json() for s in samples], "fits": found.__dict__}
        if not args.json:
            _heading(report, name)
            print("\n".join(printable(line) for line in report_lines(samples, found)))
    if args.json:
        _print_json(report)
    return OK if ok else FAILED


def _check_discover(args: argparse.Namespace) -> int:
    """``check --discover``: the profile the mailbox's newest messages fit, read-only."""
    from responder.service import peek_headers, watched
    from responder.trust.discovery import discover, report_lines

    ok, report = True, {}
    for name, settings in _instances(args, needs=("mailbox",)).items():
        headers = asyncio.run(peek_headers(settings, args.newest))
        found = discover(headers, settings.security)
        ok = ok and found.fits_config
        report[name] = found.as_json()
        if not args.json:
            _heading(report, name)
            print("\n".join(printable(line) for line in report_lines(found, watched(settings))))
    if args.json:
        _print_json(report)
    return OK if ok else FAILED


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= 500:
        raise argparse.ArgumentTypeError(f"expected a number from 1 to 500 (got {text!r})")
    return value


def _once(args: argparse.Namespace) -> int:
    from responder.service import once

    messages: list[dict[str, Any]] = []
    sent = unsent = digests = failed = 0
    errors: list[str] = []
    instances = _instances(args, needs=MAIL_PARTS)
    for name, settings in instances.items():
        try:
            result = asyncio.run(once(settings, name, _progress(name)))
            if sys.stderr.isatty():
                sys.stderr.write("\n")
        except Exception as exc:  # one instance's outage must not hide the others' work
            error = _known_failure(exc) or f"{type(exc).__name__}: {exc}"
            log.error("%s: pass failed: %s", name, error)
            errors.append(error if len(instances) == 1 else f"{name}: {error}")
            failed += 1
            continue
        messages += [{"instance": name, **r.as_json()} for r in result.reports]
        sent, unsent = sent + result.answers_sent, unsent + result.answers_failed
        digests += result.digests_sent
        failed += result.failed
    if args.json:
        print(json.dumps({"messages": messages, "outcomes": counts(messages),
                          "answers_sent": sent, "digests_sent": digests,
                          "answers_failed": unsent, "failed": failed,
                          "error": redact("; ".join(errors)) if errors else None}))
    else:
        print(redact(printable(once_summary(messages, sent, unsent, errors, digests))))
    return FAILED if failed else OK


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

    stopped_by = asyncio.run(serve(_instances(args), args.config))
    return INTERRUPTED if stopped_by == "SIGINT" else OK


def _explain(args: argparse.Namespace) -> int:
    from responder.commands.explain import describe, explain

    setup_logging(args.verbosity, args.log_format)
    if args.online and args.config is None:
        raise Failed("--online needs --config (the Halo to look the ticket up in)", USAGE)
    raw = sys.stdin.buffer.read() if str(args.message) == "-" else _read(args.message)
    settings = next(iter(load_instances(args.config).values())) if args.config else None
    if settings and args.online:
        settings.require_secrets("halo")  # offline, explain reads no secret
    if settings:
        setup_logging(args.verbosity, args.log_format, settings.secrets())
    report = asyncio.run(explain(raw, settings, online=args.online))
    if args.json:
        print(json_text(json.dumps(report, ensure_ascii=False)))
    else:
        print("\n".join(describe(report)))
    return OK


def _date(text: str) -> datetime:
    """A date (midnight UTC) or a date-time (UTC unless it carries an offset)."""
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a date or date-time: {text!r} (use 2026-11-01 or 2026-11-01T09:30)"
        ) from None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def _audit(args: argparse.Namespace) -> int:
    from responder.ledger import Ledger

    instances = _instances(args, needs=())
    ledgers = {name: Ledger.read_only(s.state.path) for name, s in instances.items()}
    writer, count = None, 0
    for name, ledger in ledgers.items():
        try:
            for row in ledger.rows(since=args.since):
                count += 1
                row = {"instance": name, **row}
                if args.format == "json":
                    print(json_text(json.dumps(row, ensure_ascii=False)))
                    continue
                if writer is None:
                    writer = csv.DictWriter(sys.stdout, fieldnames=list(row),
                                            lineterminator="\n")
                    writer.writeheader()
                writer.writerow({key: csv_cell(value) for key, value in row.items()})
        finally:
            ledger.close()
    sys.stdout.flush()
    log.info("%d message%s exported", count, "" if count == 1 else "s")  # stderr: data stays clean
    return OK


def _replay(args: argparse.Namespace) -> int:
    from responder.commands.replay import replay
    from responder.refile import Replayed

    done = Replayed(args.message_id, "unknown", f"no message {args.message_id} in the ledger")
    name = ""
    for name, settings in _instances(args, needs=MAIL_PARTS).items():
        done = asyncio.run(replay(settings, args.message_id, name, _progress(name)))
        if done.status != "unknown":
            break
    if sys.stderr.isatty() and done.status not in ("unknown", "decided", "not-found"):
        sys.stderr.write("\n")
    if args.json:
        instance = name if done.status != "unknown" else None
        print(json.dumps({"instance": instance, **done.as_json()}))
    else:
        print(printable(f"{done.message_id}: {done.detail}"))
    return OK if done.ok else FAILED


def _web_password(args: argparse.Namespace) -> int:
    import getpass

    from responder.console.auth import hash_password

    if sys.stdin.isatty():
        password = getpass.getpass("Console password: ")
        if getpass.getpass("Again: ") != password:
            print("error: the two passwords differ; nothing printed", file=sys.stderr)
            return 1
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if len(password) < 12:
        print("error: use at least 12 characters; nothing printed", file=sys.stderr)
        return 1
    print(hash_password(password))
    return 0


def _backup(args: argparse.Namespace) -> int:
    from responder.ledger import backup

    instances = _instances(args, needs=())
    for name, settings in instances.items():
        target = args.file
        if len(instances) > 1:
            target = target.with_name(f"{target.stem}-{name}{target.suffix}")
        version, count = backup(settings.state.path, target)
        print(f"backed up {settings.state.path} to {target}: {count} message"
              f"{'' if count == 1 else 's'}, schema version {version}")
    return OK


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise Failed(f"cannot read {path}: {exc.strerror}") from None


def _demo(args: argparse.Namespace) -> int:
    from responder.commands.demo import run_demo

    setup_logging(args.verbosity if args.verbosity else -1, args.log_format)
    return asyncio.run(run_demo(as_json=args.json))


if __name__ == "__main__":
    sys.exit(main())
