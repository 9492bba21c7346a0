"""Family 4: attribution lines and quote marks in forms beyond "On … wrote:" and '>'.

Whatever follows them is quoted: it is never the person's text, never the decision. Each
case is a whole message composed in the client's format, read as ``analyse`` reads it.
"""

from __future__ import annotations

import pytest

from responder.reading.message import analyse
from responder.reading.quotes import split_reply
from tests.harness import RESPONDER_ADDRESS, reply

QUOTED = "Ticket 1234 needs your approval.\nApprove or reject it by replying."
SD = f"Service Desk <{RESPONDER_ADDRESS}>"


def quoted(mark: str = "> ") -> str:
    return "\n".join(mark + line for line in QUOTED.split("\n"))


ATTRIBUTED = {
    # Gmail before 2017 in many locales: ISO date, GMT offset, name and address, colon.
    "gmail-2016-de": f"2016-03-03 17:21 GMT+01:00 {SD}:\n\n{quoted()}",
    "gmail-2016-wrapped": f"2016-03-03 17:21 GMT+01:00 Service Desk <\n{RESPONDER_ADDRESS}>:\n\n"
                          f"{quoted()}",
    "gmail-2016-unquoted": f"2016-03-03 17:21 GMT+01:00 {SD}:\n\n{QUOTED}",
    "gmail-2016-zh": f"2016年3月3日 17:21 {SD}:\n\n{QUOTED}",
    "date-and-name": f"03.03.2016 17:21, Service Desk:\n{QUOTED}",
    "date-and-name-iso": f"2016-03-03 17:21 Service Desk:\n{QUOTED}",
    "date-and-name-above-a-quote": f"03.03.2016 17:21, Service Desk\n{quoted()}",
    "zoho": f"---- On Thu, 03 Mar 2016 17:21:00 +0100 {SD} wrote ----\n\n{QUOTED}",
    "zoho-de": f"---- Am Do, 03 Mär 2016 17:21:00 +0100 {SD} schrieb ----\n\n{QUOTED}",
    "pipe": f"On 03/03/2016 17:21, {SD} wrote:\n{quoted('| ')}",
    "pipe-no-date": f"Service Desk wrote:\n{quoted('| ')}",
    "pipe-alone": quoted("| "),
    "yahoo-indented": f"    On Thursday, March 3, 2016, 05:21:00 PM GMT+1, {SD} wrote:  \n \n \n "
                      + QUOTED.replace("\n", "\n "),
    "yahoo-android": f"Sent from Yahoo Mail on Android \n \n  On Thu, 3 Mar 2016 at 17:21, Service"
                     f" Desk<{RESPONDER_ADDRESS}> wrote:   {QUOTED.replace(chr(10), ' ')}",
}


@pytest.mark.parametrize("tail", ATTRIBUTED.values(), ids=ATTRIBUTED.keys())
def test_what_follows_the_attribution_is_quoted(tail: str) -> None:
    raw = reply("alice@example.com", "Re: Approval required [ID:1234]",
                f"Reject - not this quarter\n\n{tail}\n")
    facts = analyse(raw)
    assert (facts.decision, facts.note) == ("reject", "not this quarter")
    assert facts.reply_text == "Reject - not this quarter"
    assert "Approve or reject" in facts.original


@pytest.mark.parametrize("tail", ATTRIBUTED.values(), ids=ATTRIBUTED.keys())
def test_nothing_written_above_the_attribution_decides_nothing(tail: str) -> None:
    facts = analyse(reply("alice@example.com", "Re: Approval required [ID:1234]", tail + "\n"))
    assert facts.decision is None
    assert "Approve" not in facts.reply_text


@pytest.mark.parametrize("mark", ["> ", "| "])
def test_an_answer_below_a_pipe_or_angle_quote_is_read(mark: str) -> None:
    body = f"On 03/03/2016 17:21, {SD} wrote:\n{quoted(mark)}\n\nApprove\n"
    assert split_reply(body).text == "Approve"


@pytest.mark.parametrize(
    "text",
    [
        "2026-11-28 we spoke about this: approve it after the audit.",  # a sentence
        "Approve\n| one cell |",  # a lone table row stays text
        "Approve\n\n03.03.2016 was the day we agreed on budget, see notes below:\nfine",
    ],
)
def test_text_like_an_attribution_stays_text(text: str) -> None:
    assert split_reply(text).text == text
