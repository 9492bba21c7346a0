"""The answer a person gets: rendered from templates, threaded under their message.

One template pair per outcome (``approved.txt`` + ``approved.html``, ...), in English at
the top of the folder and per language in ``<lang>/`` (de, fr, nl, es built in). The
answer is in the approver's language when the message says it (``Facts.language``: a
localized decision word, or the client's attribution line) and a template exists for it;
otherwise in English. A site can point ``[answers] templates`` at a folder of its own
(and add ``<lang>/`` folders there); any template missing there falls back to the
built-in one.
"""

from __future__ import annotations

from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path

import jinja2

from responder.config import ParsingSettings
from responder.halo.tickets import Ticket
from responder.plan import Plan
from responder.reading.message import RESPONDER_HEADER, Facts, strip_subject_prefixes


def template_environment(folder: Path | None) -> jinja2.Environment:
    loaders: list[jinja2.BaseLoader] = []
    if folder is not None:
        loaders.append(jinja2.FileSystemLoader(str(folder)))
    loaders.append(jinja2.PackageLoader("responder.templates", "."))  # top-level templates/
    return jinja2.Environment(
        loader=jinja2.ChoiceLoader(loaders),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default=False),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )


def compose(
    env: jinja2.Environment,
    facts: Facts,
    plan: Plan,
    ticket: Ticket | None,
    *,
    sender: str,
    parsing: ParsingSettings,
) -> EmailMessage:
    """The answer to ``facts.sender`` only, as a reply in the same thread."""
    assert facts.sender is not None
    context = {
        "outcome": plan.outcome.value,
        "reason": plan.reason,
        "ticket_id": facts.ticket_id,
        "summary": ticket.summary if ticket else "",
        "decision": facts.decision.value if facts.decision else None,
        "note": facts.note,
        "sender": facts.sender,
        "subject": facts.subject,
        "start_tag": parsing.start_tag,
        "end_tag": parsing.end_tag,
    }
    name = plan.outcome.value
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = facts.sender
    msg["Subject"] = reply_subject(facts.subject)
    msg["Date"] = formatdate(localtime=False)
    msg["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2] or None)
    if facts.message_id:
        msg["In-Reply-To"] = facts.message_id
        msg["References"] = " ".join((*facts.references, facts.message_id))
    msg["Auto-Submitted"] = "auto-replied"
    msg["X-Auto-Response-Suppress"] = "All"
    msg[RESPONDER_HEADER] = name
    text = localized(env, f"{name}.txt", facts.language)
    msg.set_content(text.render(context))
    msg.add_alternative(localized(env, f"{name}.html", facts.language).render(context),
                        subtype="html")
    if facts.language and (text.name or "").startswith(f"{facts.language}/"):
        msg["Content-Language"] = facts.language
    return msg


def localized(env: jinja2.Environment, name: str, language: str | None) -> jinja2.Template:
    """``<language>/<name>`` where there is one (the site's or ours), else ``<name>``."""
    names = [f"{language}/{name}"] if language and language.isalpha() else []
    return env.select_template([*names, name])


def reply_subject(subject: str) -> str:
    base = strip_subject_prefixes(subject).strip()
    return f"Re: {base}" if base else "Re: your approval message"
