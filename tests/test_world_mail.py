# ruff: noqa: RUF001, RUF002 - localized sample text and full-width marks are meant literally
"""More of the world's mail: clients and locales beyond the big four, read right.

Each class of issue 21's "More of the world's mail" is shown here on fixtures of our own,
modelled on what those clients write: a decision word glued to full-width punctuation,
Outlook's reply and forward prefixes and header-block labels in the languages it ships,
and the attributions and quote marks of The Bat!, Eastern European, Korean and Chinese
webmails (with the reply above the quote, below it, or absent). Two of them go end to end
through ``responder once`` against Dovecot, the stand-in Halo and aiosmtpd.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from responder.commands.cli import main
from responder.reading.decision import Decision, read_decision
from responder.reading.message import analyse, strip_subject_prefixes
from responder.reading.quotes import split_reply
from tests.harness import RESPONDER_ADDRESS, Harness, reply, text_of

SD = f'"Service Desk" <{RESPONDER_ADDRESS}>'
REQUEST = ("Ticket 1234 needs your approval: New laptop for Dana.\n"
           "Reply APPROVE or REJECT, with a note after the word if you like.")


def quoted(mark: str = "> ") -> str:
    return "\n".join(mark + line for line in REQUEST.splitlines())


# -- a decision word glued to full-width punctuation ----------------------------------------


@pytest.mark.parametrize(
    ("text", "decision", "note"),
    [
        ("REJECT，预算不够", Decision.REJECT, "预算不够"),
        ("APPROVE。", Decision.APPROVE, None),
        ("approve！", Decision.APPROVE, None),
        ("Approve：下周采购", Decision.APPROVE, "下周采购"),
        ("reject；来年再说", Decision.REJECT, "来年再说"),
        ("承認します\n\nAPPROVE", None, None),  # the first word is not one of ours
        ("APPROVE\u3000予算内です", Decision.APPROVE, "予算内です"),  # ideographic space
        ("Approved、ありがとう", Decision.APPROVE, "ありがとう"),
        ("「REJECT」 高すぎます", Decision.REJECT, "高すぎます"),
        ("REJECT，预算不够。\n请下季度再提交。\n\n谢谢", Decision.REJECT,
         "预算不够。 请下季度再提交。"),
    ],
)
def test_a_word_glued_to_full_width_punctuation_still_decides(
    text: str, decision: Decision | None, note: str | None
) -> None:
    read = read_decision(text)
    assert (read.decision, read.note) == (decision, note)


@pytest.mark.parametrize("text", ["approve？", "APPROVE，还是REJECT？", "approve，或者reject",
                                  "Approve，or reject?", "approveの件"])
def test_a_full_width_question_or_choice_decides_nothing(text: str) -> None:
    assert read_decision(text).decision is None


# -- Outlook's subject prefixes in every language it ships -----------------------------------

REPLY_PREFIXES = ["RE", "AW", "SV", "VS", "Antw", "RIF", "R", "RES", "Odp", "Odpověď", "YNT",
                  "ΑΠ", "ΣΧΕΤ", "השב", "תשובה", "رد", "回复", "答复", "回覆", "答覆", "返信",
                  "회신", "답장", "Ответ", "Отв", "VÁ", "CVP"]
FORWARD_PREFIXES = ["FW", "Fwd", "WG", "TR", "RV", "ENC", "VL", "VB", "FS", "Doorst", "PD",
                    "TOV", "İLT", "ΠΡΘ", "הועבר", "إعادة توجيه", "转发", "轉寄", "転送", "전달",
                    "Пересл"]


@pytest.mark.parametrize("prefix", REPLY_PREFIXES + FORWARD_PREFIXES)
@pytest.mark.parametrize("colon", [": ", "：", ":"])
def test_localized_prefixes_are_stripped_from_the_subject(prefix: str, colon: str) -> None:
    subject = f"{prefix}{colon}RE: Approval required [ID:1234]"
    assert strip_subject_prefixes(subject) == "Approval required [ID:1234]"


def encoded(subject: str) -> str:
    return "=?utf-8?b?" + base64.b64encode(subject.encode()).decode() + "?="


@pytest.mark.parametrize("prefix", FORWARD_PREFIXES)
def test_a_localized_forward_prefix_marks_a_forward(prefix: str) -> None:
    facts = analyse(reply("alice@example.com", encoded(f"{prefix}: Approval required [ID:1234]"),
                          "FYI\n"))
    assert facts.forwarded and facts.ticket_id == 1234


@pytest.mark.parametrize("prefix", REPLY_PREFIXES)
def test_a_localized_reply_prefix_is_no_forward_and_a_mailto_subject_decides(prefix: str) -> None:
    """A mailto: link's reply: an empty body, the word in the subject after the prefix."""
    facts = analyse(reply("alice@example.com", encoded(f"{prefix}: APPROVE [ID:1234]"), ""))
    assert not facts.forwarded
    assert (facts.ticket_id, facts.decision) == (1234, "approve")


# -- Outlook's forwarded-header block in every language it ships -----------------------------

HEADER_BLOCKS = {
    "zh-cn": ("发件人", "发送时间", "收件人", "主题", "2026年11月28日 8:55"),
    "zh-tw": ("寄件者", "寄件日期", "收件者", "主旨", "2026年11月28日 上午 08:55"),
    "ja": ("差出人", "送信日時", "宛先", "件名", "2026年11月28日 8:55"),
    "ko": ("보낸 사람", "보낸 날짜", "받는 사람", "제목", "2026년 11월 28일 토요일 오전 8:55"),
    "ru": ("От", "Отправлено", "Кому", "Тема", "28 ноября 2026 г. 8:55"),
    "uk": ("Від", "Надіслано", "Кому", "Тема", "28 листопада 2026 р. 8:55"),
    "pl": ("Od", "Wysłano", "Do", "Temat", "sobota, 28 listopada 2026 08:55"),
    "cs": ("Od", "Odesláno", "Komu", "Předmět", "sobota 28. listopadu 2026 8:55"),
    "tr": ("Kimden", "Gönderildi", "Kime", "Konu", "28 Kasım 2026 Cumartesi 08:55"),
    "el": ("Από", "Αποστολή", "Προς", "Θέμα", "Σάββατο, 28 Νοεμβρίου 2026 8:55 πμ"),
    "he": ("מאת", "נשלח", "אל", "נושא", "שבת 28 נובמבר 2026 08:55"),
    "ar": ("من", "تم الإرسال", "إلى", "الموضوع", "السبت، 28 نوفمبر، 2026 08:55 ص"),
    "hu": ("Feladó", "Küldve", "Címzett", "Tárgy", "2026. november 28. 8:55"),
    "mail.ru": ("От кого", "Дата", "Кому", "Тема", "Суббота, 28 ноября 2026, 8:55 +03:00"),
}


def header_block(labels: tuple[str, str, str, str, str]) -> str:
    frm, sent, to, subject, when = labels
    return (f"________________________________\n{frm}: {SD}\n{sent}: {when}\n"
            f"{to}: Alice <alice@example.com>\n{subject}: Approval required [ID:1234]\n\n"
            f"{REQUEST}\n")


@pytest.mark.parametrize("labels", HEADER_BLOCKS.values(), ids=HEADER_BLOCKS.keys())
def test_what_follows_a_localized_header_block_is_the_original(
    labels: tuple[str, str, str, str, str],
) -> None:
    facts = analyse(reply("alice@example.com", "Re: budget", "Reject - not this quarter\n\n"
                          + header_block(labels)))
    assert (facts.decision, facts.note) == ("reject", "not this quarter")
    assert facts.ticket_id == 1234  # from the block's subject line: its label was read
    assert "Reply APPROVE or REJECT" in facts.original


@pytest.mark.parametrize("labels", HEADER_BLOCKS.values(), ids=HEADER_BLOCKS.keys())
def test_a_localized_header_block_alone_decides_nothing(
    labels: tuple[str, str, str, str, str],
) -> None:
    facts = analyse(reply("alice@example.com", "FW: Approval required [ID:1234]",
                          header_block(labels)))
    assert facts.decision is None and facts.reply_text == ""


# -- attributions and quote marks beyond the big four -----------------------------------------

ATTRIBUTIONS = {
    # The Bat! (its Russian and English default templates), initials-prefixed quotes
    "the-bat-ru": f"Вы писали 28 ноября 2026 г., 8:55:51:\n\n{quoted(' SD> ')}",
    "the-bat-en": f"You wrote 28.11.2026, 8:55:51:\n\n{quoted(' SD> ')}",
    "the-bat-nested": f"Вы писали 28 ноября 2026 г., 8:55:51:\n\n{quoted(' SD>> ')}",
    "the-bat-named": f"Service Desk писал 28.11.2026 8:55:\n\n{quoted('SD> ')}",
    # Russian webmails
    "mail.ru": f"Суббота, 28 ноября 2026, 8:55 +03:00 от Service Desk <{RESPONDER_ADDRESS}>:"
               f"\n{quoted()}",
    "yandex": f"28.11.2026, 08:55, {SD}:\n{quoted()}",
    "yandex-wrote": f"28.11.2026, 08:55, Service Desk пишет:\n{quoted()}",
    # Eastern European webmails
    "seznam": f"---------- Původní e-mail ----------\nOd: {SD}\nKomu: alice@example.com\n"
              f"Datum: 28. 11. 2026 8:55:51\nPředmět: Approval required [ID:1234]\n{REQUEST}",
    "seznam-napsal": f"Dne 28. 11. 2026 8:55 napsal(a) Service Desk <{RESPONDER_ADDRESS}>:\n"
                     f"{quoted()}",
    "wp": f"Dnia 28 listopada 2026 08:55 Service Desk <{RESPONDER_ADDRESS}> napisał(a):\n"
          f"{quoted()}",
    "onet": f"W dniu 2026-11-28 08:55:51 użytkownik Service Desk <{RESPONDER_ADDRESS}> "
            f"napisał:\n\n{REQUEST}",
    "ukr.net": f"28 листопада 2026, 08:55:51, від \"Service Desk\" <{RESPONDER_ADDRESS}>:\n"
               f"{quoted()}",
    # Korean webmails
    "naver": f"-----Original Message-----\nFrom: {SD}\nTo: \"Alice\"<alice@example.com>;\n"
             f"Cc:\nSent: 2026-11-28 (토) 08:55:51\nSubject: Approval required [ID:1234]\n\n"
             f"{REQUEST}",
    "daum": f"----- 원본 메일 -----\n보낸사람: {SD}\n받는사람: <alice@example.com>\n"
            f"날짜: 2026년 11월 28일 토요일, 08시 55분 51초 +0900\n"
            f"제목: Approval required [ID:1234]\n\n{REQUEST}",
    "korean-attribution": f"2026. 11. 28. 오전 8:55, Service Desk <{RESPONDER_ADDRESS}>님이 작성:"
                          f"\n{quoted()}",
    # Chinese webmails
    "qq": f"------------------ 原始邮件 ------------------\n发件人: {SD};\n"
          f"发送时间: 2026年11月28日(星期六) 上午8:55\n收件人: \"Alice\"<alice@example.com>;\n"
          f"主题: Approval required [ID:1234]\n\n{REQUEST}",
    "163": f"在 2026-11-28 08:55:51，{SD} 写道：\n{quoted()}",
    "163-no-address": f"在 2026年11月28日 08:55，Service Desk 写道：\n{quoted()}",
    "163-forward": f"-------- 转发邮件信息 --------\n发件人：{SD}\n发送日期：2026-11-28 08:55:51\n"
                   f"收件人：alice@example.com\n主题：Approval required [ID:1234]\n\n{REQUEST}",
}


@pytest.mark.parametrize("tail", ATTRIBUTIONS.values(), ids=ATTRIBUTIONS.keys())
def test_what_follows_the_attribution_is_quoted(tail: str) -> None:
    facts = analyse(reply("alice@example.com", "Re: Approval required [ID:1234]",
                          f"Reject - not this quarter\n\n{tail}\n"))
    assert (facts.decision, facts.note) == ("reject", "not this quarter")
    assert facts.reply_text == "Reject - not this quarter"
    assert "Reply APPROVE or REJECT" in facts.original


@pytest.mark.parametrize("tail", ATTRIBUTIONS.values(), ids=ATTRIBUTIONS.keys())
def test_nothing_written_above_the_attribution_decides_nothing(tail: str) -> None:
    facts = analyse(reply("alice@example.com", "Re: Approval required [ID:1234]", tail + "\n"))
    assert facts.decision is None
    assert "APPROVE" not in facts.reply_text


# Those that quote with a mark ('>' or initials): a reply below such a quote is read.
BOTTOM_POSTED = {k: v for k, v in ATTRIBUTIONS.items() if ">" in v.splitlines()[-1]}


@pytest.mark.parametrize("tail", BOTTOM_POSTED.values(), ids=BOTTOM_POSTED.keys())
def test_a_reply_written_below_the_quote_is_read(tail: str) -> None:
    body = f"{tail}\n\nApprove - within budget\n"
    facts = analyse(reply("alice@example.com", "Re: Approval required [ID:1234]", body))
    assert (facts.decision, facts.note) == ("approve", "within budget")


def test_the_bats_greeting_and_signature_around_a_reply_below_the_quote() -> None:
    """The Bat!'s default template: greeting, attribution, quote, the cursor, signature."""
    body = ("Здравствуйте, Service.\n\nВы писали 28 ноября 2026 г., 8:55:51:\n\n"
            f"{quoted(' SD> ')}\n\nReject, бюджет исчерпан\n\n-- \nС уважением,\n"
            " Alice                            mailto:alice@example.com\n")
    facts = analyse(reply("alice@example.com", "Re: Approval required [ID:1234]", body))
    assert (facts.decision, facts.note) == ("reject", "бюджет исчерпан")
    assert "Reply APPROVE or REJECT" in facts.original


def test_a_greeting_alone_above_an_unquoted_original_decides_nothing() -> None:
    body = f"Здравствуйте, Service.\n\nВы писали 28 ноября 2026 г., 8:55:51:\n\n{REQUEST}\n"
    assert analyse(reply("alice@example.com", "Re: x [ID:1234]", body)).decision is None


@pytest.mark.parametrize(
    "text",
    [
        "Approve\nAB> one line alone is text, not a quote",
        "Approve - ok\n\nNB> see the figures",
    ],
)
def test_a_lone_initials_line_stays_text(text: str) -> None:
    assert split_reply(text).text == text


def test_initials_quotes_are_unquoted_in_the_original() -> None:
    split = split_reply(f"Approve\n\nВы писали 28.11.2026 8:55:\n\n{quoted(' SD> ')}\n")
    assert split.original.splitlines()[-1] == REQUEST.splitlines()[-1]


# -- end to end through `responder once` ------------------------------------------------------


def run_once(harness: Harness, tmp_path: Path, capsys: pytest.CaptureFixture[str]
             ) -> dict[str, object]:
    config = harness.write_config(tmp_path / "config.toml")
    assert main(["once", "--config", str(config), "--json"]) == 0
    [message] = json.loads(capsys.readouterr().out)["messages"]
    assert isinstance(message, dict)
    return message


def test_a_chinese_full_width_reply_end_to_end(
    harness: Harness, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """QQ Mail / Outlook in Chinese: 回复： subject, REJECT，note, 原始邮件 header block."""
    body = ("REJECT，预算不够，请下季度再提交\n\n"
            "------------------ 原始邮件 ------------------\n"
            f"发件人: {SD};\n发送时间: 2026年11月28日(星期六) 上午8:55\n"
            "收件人: \"Alice\"<alice@example.com>;\n主题: Approval required [ID:1234]\n\n"
            f"{REQUEST}\n")
    harness.deliver(reply("Alice Approver <alice@example.com>",
                          encoded("回复：Approval required [ID:1234]"), body))

    message = run_once(harness, tmp_path, capsys)

    assert message["outcome"] == "rejected"
    approver = harness.halo.approver(1234, 1)
    assert (approver["result"], approver["note"]) == (2, "预算不够，请下季度再提交")
    [answer] = harness.answers()
    assert answer["To"] == "alice@example.com"
    assert "rejection of ticket 1234" in text_of(answer)


def test_a_russian_the_bat_reply_end_to_end(
    harness: Harness, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The Bat! in Russian, windows-1251: greeting, "Вы писали", initials quote, the reply
    below it, the signature."""
    body = ("Здравствуйте, Service.\r\n\r\nВы писали 28 ноября 2026 г., 8:55:51:\r\n\r\n"
            + quoted(" SD> ").replace("\n", "\r\n")
            + "\r\n\r\nApprove, бюджет согласован\r\n\r\n-- \r\nС уважением,\r\n"
            " Bob                              mailto:bob@example.com\r\n")
    head = reply("Bob <bob@example.com>", "Re: Approval required [ID:1234]", "",
                 extra_headers="X-Mailer: The Bat! (v11.2) Professional\n",
                 content_type="text/plain; charset=windows-1251")
    harness.deliver(head + body.encode("cp1251"))

    message = run_once(harness, tmp_path, capsys)

    assert message["outcome"] == "approved"
    approver = harness.halo.approver(1234, 2)
    assert (approver["result"], approver["note"]) == (1, "бюджет согласован")
    [answer] = harness.answers()
    assert answer["To"] == "bob@example.com"
    assert "approval of ticket 1234" in text_of(answer)
