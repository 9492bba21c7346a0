"""The README and docs/ say what the code does: their configs load, their commands exist.

Like sqlite-utils' test_docs: every `toml` block validates through the config loader
(a block that is not a whole config is merged into a minimal one, its sections replacing
the minimal one's), every `responder ...` command shown exists with the options shown,
every command has its own section in docs/operations.md, the outputs shown for the demo,
`explain` and a config error are the real ones, and every link between the pages
resolves, #anchors included.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args

import pytest
from pydantic import BaseModel

from responder.commands.cli import BROKEN_PIPE, FAILED, INTERRUPTED, OK, USAGE, _parser, main
from responder.config import ConfigError, SecuritySettings, Settings, parse_instances
from responder.trust.discovery import trust_summary

REPO = Path(__file__).parent.parent
README = REPO / "README.md"
DOCS = REPO / "docs"
PAGES = [README, *sorted(DOCS.glob("*.md"))]
MAILBOXES = ("imap", "maildir", "graph")

# The README's minimal config: what a fragment (one or two sections) is merged into.
MINIMAL: dict[str, Any] = {
    "halo": {"base_url": "https://yourcompany.halopsa.com",
             "client_id": "00000000-0000-0000-0000-000000000000", "client_secret": "x"},
    "imap": {"host": "imap.example.com", "username": "approvals@example.com",
             "password": "x"},
    "smtp": {"host": "smtp.example.com", "from": "approvals@example.com"},
    "security": {"trusted_authserv_id": ["mx.example.com"]},
}


@dataclass(frozen=True)
class Block:
    """One fenced code block of a page."""

    page: Path
    line: int  # of the opening fence, 1-based
    lang: str
    text: str

    @property
    def id(self) -> str:
        return f"{self.page.relative_to(REPO)}:{self.line}"


def _blocks(page: Path) -> list[Block]:
    """The fenced blocks, indented ones (inside list items) too, their indent removed."""
    found: list[Block] = []
    lines = page.read_text(encoding="utf-8").splitlines()
    opening: tuple[int, str, str] | None = None
    body: list[str] = []
    for number, line in enumerate(lines, 1):
        fence = re.match(r"^(\s*)```(\S*)\s*$", line)
        if opening is None and fence:
            opening, body = (number, fence.group(1), fence.group(2)), []
        elif opening is not None and fence and fence.group(1) == opening[1] \
                and not fence.group(2):
            found.append(Block(page, opening[0], opening[2], "\n".join(body) + "\n"))
            opening = None
        elif opening is not None:
            body.append(line.removeprefix(opening[1]))
    assert opening is None, f"{page.name}:{opening[0]}: a code block is never closed"
    return found


def _all_blocks(lang: str) -> list[Block]:
    return [b for page in PAGES for b in _blocks(page) if b.lang == lang]


def _prose(page: Path) -> str:
    """The page without its fenced blocks."""
    return re.sub(r"^\s*```.*?^\s*```\s*$", "", page.read_text(encoding="utf-8"),
                  flags=re.M | re.S)


# -- every toml block loads -------------------------------------------------------------

def _merged(fragment: dict[str, Any]) -> dict[str, Any]:
    """A fragment's sections replace the minimal config's (one mailbox kind for another)."""
    base = dict(MINIMAL)
    if any(kind in fragment for kind in MAILBOXES):
        base = {k: v for k, v in base.items() if k not in MAILBOXES}
    return {**base, **fragment}


def _whole(data: dict[str, Any]) -> bool:
    """Halo, a mailbox and a way out: a config on its own (else a fragment of one)."""
    return "halo" in data and any(k in data for k in MAILBOXES) and (
        "smtp" in data or "graph" in data)


def _with_secrets(text: str, folder: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every env: secret set, every file: secret pointed at a file that holds one."""
    for name in re.findall(r'"env:([A-Za-z_][A-Za-z0-9_]*)"', text):
        monkeypatch.setenv(name, "a secret")
    for number, path in enumerate(re.findall(r'"file:([^"]+)"', text)):
        secret = folder / f"secret-{number}"
        secret.write_text("a secret\n")
        text = text.replace(f'"file:{path}"', f'"file:{secret}"')
    return text


@pytest.mark.parametrize("block", _all_blocks("toml"), ids=lambda b: b.id)
def test_every_toml_block_validates(block: Block, tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    data = tomllib.loads(_with_secrets(block.text, tmp_path, monkeypatch))
    config = data if _whole(data) else _merged(data)
    if "mistakes on purpose" in block.text:
        with pytest.raises(ConfigError):
            parse_instances(config)
        return
    assert parse_instances(config)


def _section(page: Path, heading: str) -> str:
    text = page.read_text(encoding="utf-8")
    return text.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]


def _model(annotation: Any) -> type[BaseModel]:
    """The section model of a Settings field (``ImapSettings | None`` -> ImapSettings)."""
    for candidate in (annotation, *get_args(annotation)):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    raise AssertionError(f"not a section: {annotation}")


def test_every_config_key_is_documented() -> None:
    guide = DOCS / "configuration.md"
    for name, field in Settings.model_fields.items():
        model = _model(field.annotation)
        keys = [f.alias or key for key, f in model.model_fields.items()]
        if name == "matching":
            name, keys = "matching.aliases", []
        section = _section(guide, f"`[{name}]`")
        missing = [key for key in keys if f"`{key}`" not in section]
        assert not missing, f"docs/configuration.md, [{name}]: no word about {missing}"


def test_the_example_config_validates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = (REPO / "config.example.toml").read_text(encoding="utf-8")
    assert parse_instances(tomllib.loads(_with_secrets(text, tmp_path, monkeypatch)))


def test_the_readme_shows_the_minimal_config_with_its_nine_keys() -> None:
    [minimal] = [b for b in _blocks(README) if b.lang == "toml"]
    data = tomllib.loads(minimal.text)
    assert sum(len(section) for section in data.values()) == 9
    assert {k: set(v) for k, v in data.items()} == {k: set(v) for k, v in MINIMAL.items()}


# -- every command shown exists, with the options shown ----------------------------------

def _commands() -> dict[str, Any]:
    return _parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]


_INVOCATION = re.compile(r"(?:^|(?<=[\s`$(/]))responder(?=[ \t])([^\n`]*)")
_SEPARATORS = {"|", ">", "<", "&&", ";", "#", "2>", "\\"}


def _command_lines(page: Path) -> Iterator[str]:
    """What a reader would type: sh blocks, `$ ` lines of others, inline `code` commands."""
    for block in _blocks(page):
        for line in re.sub(r"\\\n", " ", block.text).splitlines():  # continued lines joined
            if block.lang == "sh" or line.startswith("$ "):
                yield line
    for span in re.findall(r"`([^`\n]+)`", _prose(page)):
        if re.match(r"(sudo |responder )", span):
            yield span


def _shown() -> set[tuple[str, str]]:
    """(command, long option) pairs of every `responder ...` shown; option "" = none."""
    shown: set[tuple[str, str]] = set()
    for page in PAGES:
        for line in _command_lines(page):
            line = re.sub(r"-u responder\b", "-u USER", line)  # the user, not the command
            for match in _INVOCATION.finditer(line):
                tokens = match.group(1).split()
                words = [t for t in tokens if not t.startswith("-")]
                if not words or not re.fullmatch(r"[a-z][a-z-]*", words[0]):
                    continue  # a log line ("responder 0.1.0 starting"), a path, a user
                command = words[0]
                shown.add((command, ""))
                for token in tokens[tokens.index(command) + 1:]:
                    if token in _SEPARATORS:
                        break
                    option = token.strip("[]").split("=")[0]
                    if option.startswith("--"):
                        shown.add((command, option))
    return shown


def test_the_pages_show_commands() -> None:
    shown = {command for command, _ in _shown()}
    assert {"demo", "check", "run", "once", "explain", "audit"} <= shown


@pytest.mark.parametrize("command, option", sorted(_shown()), ids=lambda x: x or "-")
def test_every_command_shown_exists(command: str, option: str,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    commands = _commands()
    assert command in commands, f"`responder {command}` is shown but does not exist"
    assert not option or option in commands[command]._option_string_actions, (
        f"`responder {command} {option}` is shown but {option} does not exist")
    with pytest.raises(SystemExit) as done:
        main([command, "--help"])
    assert done.value.code == 0
    assert f"usage: responder {command}" in capsys.readouterr().out


# -- every command is documented ----------------------------------------------------------

def _headings(page: Path) -> list[str]:
    return re.findall(r"^#{1,6} +(.+?)\s*$", _prose(page), re.M)


def test_every_command_has_its_section_in_operations() -> None:
    documented = {m.group(1) for h in _headings(DOCS / "operations.md")
                  if (m := re.fullmatch(r"`responder ([a-z-]+)`", h))}
    missing = set(_commands()) - documented
    assert not missing, f"docs/operations.md has no `responder NAME` section for {missing}"
    unknown = documented - set(_commands())
    assert not unknown, f"docs/operations.md documents commands that do not exist: {unknown}"


def test_the_exit_code_table_is_the_codes_the_commands_use() -> None:
    text = (DOCS / "operations.md").read_text(encoding="utf-8")
    table = text.split("## Exit codes", 1)[1].split("\n## ", 1)[0]
    codes = {int(code) for code in re.findall(r"^\| (\d+) \|", table, re.M)}
    assert codes == {OK, FAILED, USAGE, INTERRUPTED, BROKEN_PIPE}


def test_audit_json_is_said_to_be_json_lines() -> None:
    section = (DOCS / "operations.md").read_text().split("## `responder audit`")[1]
    assert "JSON Lines" in section.split("\n## ")[0]


# -- outputs shown are the real ones ------------------------------------------------------

def _block_after(page: Path, marker: str, lang: str = "text") -> Block:
    """The first `lang` block after the first block whose text contains marker."""
    blocks = _blocks(page)
    start = next(i for i, b in enumerate(blocks) if marker in b.text)
    return next(b for b in blocks[start + 1:] if b.lang == lang)


def test_the_demo_output_in_the_readme_is_the_real_one(
        capsys: pytest.CaptureFixture[str]) -> None:
    shown = _block_after(README, "responder demo")
    assert main(["demo"]) == 0
    assert capsys.readouterr().out.strip() == shown.text.strip()


def test_explain_output_in_operations_is_the_real_one(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    page = DOCS / "operations.md"
    blocks = _blocks(page)
    message = next(b for b in blocks if b.text.startswith("From: Alice"))
    eml = tmp_path / "reply.eml"
    eml.write_text(message.text)

    assert main(["explain", str(eml)]) == 0
    assert capsys.readouterr().out.strip() == \
        _block_after(page, "responder explain reply.eml\n").text.strip()

    assert main(["explain", str(eml), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == \
        json.loads(_block_after(page, "responder explain reply.eml --json", "json").text)


def test_the_config_error_shown_is_the_real_one(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    page = DOCS / "configuration.md"
    [bad] = [b for b in _blocks(page) if "mistakes on purpose" in b.text]
    path = tmp_path / "bad.toml"
    path.write_text(_with_secrets(bad.text, tmp_path, monkeypatch))
    shown = _block_after(page, "mistakes on purpose", "console").text.splitlines()
    assert shown[0] == "$ responder check --config bad.toml"

    assert main(["check", "--config", str(path)]) == USAGE
    captured = capsys.readouterr()
    assert (captured.out + captured.err).strip().splitlines() == shown[1:]


def test_the_trust_lines_shown_are_the_real_ones(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    [minimal] = [b for b in _blocks(README) if b.lang == "toml"]
    [settings] = parse_instances(
        tomllib.loads(_with_secrets(minimal.text, tmp_path, monkeypatch))).values()
    ok, line = trust_summary(settings.security)
    assert ok and f"trust    ok     {line}\n" in README.read_text()
    assert f"trust    ok     {line}\n" in (DOCS / "operations.md").read_text()

    ok, line = trust_summary(SecuritySettings())
    assert not ok and f"trust    FAILED {line}\n" in (DOCS / "operations.md").read_text()


# -- links resolve ------------------------------------------------------------------------

def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    seen: dict[str, int] = {}
    anchors = set()
    for heading in _headings(page):
        slug = _slug(heading)
        anchors.add(f"{slug}-{seen[slug]}" if slug in seen else slug)
        seen[slug] = seen.get(slug, 0) + 1
    return anchors


def _links(page: Path) -> list[str]:
    return [target for target in re.findall(r"\]\(([^)\s]+)\)", _prose(page))
            if not re.match(r"[a-z]+:", target)]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_link_resolves(page: Path) -> None:
    for target in _links(page):
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        assert linked.exists(), f"{page.name}: link to a missing file: {target}"
        if anchor:
            assert linked.suffix == ".md", f"{page.name}: anchor into a non-page: {target}"
            assert anchor in _anchors(linked), f"{page.name}: no such anchor: {target}"


def test_every_guide_is_linked_from_the_readme() -> None:
    linked = {(README.parent / t.partition("#")[0]).resolve() for t in _links(README)}
    assert {p.resolve() for p in DOCS.glob("*.md")} <= linked


def test_the_readme_stays_a_front_door() -> None:
    readme = README.read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 330
    assert ("python3 -m venv .venv && . .venv/bin/activate && pip install -e . "
            "&& responder demo") in readme
    assert readme.index("scripts/test.sh") < readme.index("## What you need")
