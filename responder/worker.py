"""The orchestrator: the one owner of the loop between mailbox, Halo, SMTP and ledger.

One pass (``responder once``; ``responder run`` repeats it whenever mail arrives):

1. claim the messages waiting in the mailbox (so that a second instance leaves them
   alone), fetch their text parts only, and read each one;
2. settle what needs no Halo call (machines, forgeries, no decision word, copies);
3. read each ticket involved once, concurrently, oldest message first, and match
   senders to pending approver entries;
4. post the decisions in batches as their tickets come in, and confirm Halo recorded
   them (from the POST's answer, else a re-read); at ``halo.pass_deadline_seconds`` the
   pass stops waiting, reads under way serve the next pass, which starts at once;
5. queue one answer per human message in the ledger's outbox, then send the outbox
   (``outbox.py``: the hourly limit per person and digests);
6. file each message in its folder, only after its work is recorded.

Every step is recorded in the ledger first, so a crash at any point resumes on the
next pass without acting twice (see ``ledger.py`` for the states).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import pickle
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from responder import ledger as states
from responder.analysis import Analyser, AnalysisUnavailable
from responder.analysis import shared as shared_analyser
from responder.answers.compose import template_environment
from responder.answers.outbox import Outbox
from responder.config import Settings
from responder.halo.client import HaloClient, HaloError, HaloRejected, HaloUnavailable, HaloUnusable
from responder.halo.tickets import Approver, Submission, Ticket
from responder.ledger import Ledger, Row
from responder.mailboxes import Incoming, Mailbox, MailboxAuthError, MailboxError
from responder.metrics import Metrics
from responder.plan import Outcome, Plan, Rules, confirm, folder_for
from responder.reading.message import Facts, analyse
from responder.records import (
    copy_plan,
    evidence_columns,
    ledger_owner,
    new_round,
    resumed_plan,
    vouched,
)
from responder.senders import Sender
from responder.trust.authenticity import DkimResult, Verdict, judge, verify_dkim

log = logging.getLogger("responder")
T = TypeVar("T")

DkimVerifier = Callable[[bytes], Sequence[DkimResult]]
READ_REUSE_SECONDS = 120.0  # a ticket read kept for the next pass serves it this long


@dataclass
class _Read:
    """A ticket read: under way, or done and kept for the pass that needs it."""

    task: asyncio.Future[Ticket | HaloError | None]
    finished: float | None = None  # loop time the answer came

    def done(self) -> None:
        self.finished = asyncio.get_running_loop().time()


@dataclass
class Item:
    """One message on its way through a pass."""

    incoming: Incoming
    facts: Facts
    verdict: Verdict | None = None
    plan: Plan | None = None
    ticket: Ticket | None = None
    row: Row | None = None
    reconcile: bool = False  # a POST may have reached Halo before a crash: re-read first
    halo_status: str | None = None  # what each Halo call for it answered, for the ledger
    copy_of: Row | None = None  # a recent message with the same content, another Message-ID
    found: dict[int, Approver | None] = field(default_factory=dict)  # Halo's entries by seq
    refused: str | None = None  # why Halo refused this message's decision, for good


@dataclass
class Report:
    """What happened to one message, for the CLI and the tests."""

    ref: str
    key: str
    sender: str | None
    ticket_id: int | None
    decision: str | None
    note: str | None
    outcome: str
    reason: str

    def as_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class PassResult:
    reports: list[Report] = field(default_factory=list)
    answers_sent: int = 0
    answers_failed: int = 0
    digests_sent: int = 0  # of answers_sent: emails that each answer several replies
    more: bool = False  # the pass deadline left Halo work for the next pass: start it now

    @property
    def failed(self) -> int:
        bad = {Outcome.FAILED.value, Outcome.PENDING.value}
        return sum(r.outcome in bad for r in self.reports) + self.answers_failed


class Responder:
    def __init__(
        self,
        settings: Settings,
        mailbox: Mailbox,
        halo: HaloClient,
        smtp: Sender,  # SMTP, or Graph's sendMail
        ledger: Ledger,
        *,
        dkim_verifier: DkimVerifier = verify_dkim,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        concurrency: int = 4,
        metrics: Metrics | None = None,
        name: str = "default",
        progress: Callable[[str], None] | None = None,
        owner: str | None = None,
        analyser: Analyser | None = None,
    ) -> None:
        self.settings = settings
        # Whose claims, in a shared mailbox: given, or this ledger's (``ledger_owner``),
        # read on the first pass.
        self.owner: str | None = owner
        self.mailbox = mailbox
        self.halo = halo
        self.smtp = smtp
        self.ledger = ledger
        self.dkim_verifier = dkim_verifier
        self.clock = clock
        self.concurrency = concurrency
        self.metrics = metrics
        self.name = name  # the config instance, in logs and metrics
        self._progress = progress or (lambda text: None)  # a backlog's progress, for a terminal
        self.rules = Rules.from_settings(settings)
        self.analyser = analyser or shared_analyser()  # reads each message in a process
        self.outbox = Outbox(settings, ledger, smtp, template_environment(
            settings.answers.templates))
        # Ticket reads, kept across passes: a read the pass deadline cut short finishes in
        # the background and serves the next pass (a backlog drains at the budget's pace).
        self._reads: dict[int, _Read] = {}
        self._gate = asyncio.Semaphore(concurrency)
        self._fresh_gate = asyncio.Semaphore(concurrency)  # reads that confirm a decision
        self._posted = -float("inf")  # loop time the last batch of decisions was posted
        self._thread = ThreadPoolExecutor(1, thread_name_prefix=f"responder-{name}")

    # -- the loop ---------------------------------------------------------------

    async def run(self, stop: asyncio.Event, retry_seconds: float = 60.0) -> None:
        """Serve until ``stop`` is set: a pass, then wait for mail (IDLE) or a retry tick."""
        backoff = 1.0
        while not stop.is_set():
            try:
                result = await self.run_once()
                backoff = 1.0
                if not result.more:  # a backlog goes on at once; else wait for mail
                    await self._wait(stop, retry_seconds)
            except MailboxError as exc:  # a refused sign-in (password changed) says so
                what = ("authentication failed" if isinstance(exc, MailboxAuthError)
                        else "unavailable")
                log.warning("mailbox %s: %s; retrying in %.0f s", what, exc, backoff)
                if self.metrics:
                    auth = isinstance(exc, MailboxAuthError)
                    self.metrics.mailbox_reachable(False, f"{what}: {exc}" if auth else str(exc),
                                                   instance=self.name, refused=auth)
                await self._sleep(stop, backoff)
                backoff = min(backoff * 2, 60.0)
                with contextlib.suppress(MailboxError):
                    await self.mailbox.close()
                    await self.mailbox.open()
            except Exception:  # a bug must not stop the service: log it, back off, go on
                log.exception("pass failed; retrying in %.0f s", backoff)
                await self._sleep(stop, backoff)
                backoff = min(backoff * 2, 60.0)

    async def _wait(self, stop: asyncio.Event, timeout: float) -> None:
        waiter = asyncio.ensure_future(self.mailbox.wait_for_mail(timeout))
        stopper = asyncio.ensure_future(stop.wait())
        done, _ = await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
        if waiter not in done:
            waiter.cancel()
            with contextlib.suppress(asyncio.CancelledError, MailboxError):
                await waiter
        else:
            waiter.result()  # re-raise a MailboxError

    @staticmethod
    async def _sleep(stop: asyncio.Event, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), seconds)

    async def run_once(self) -> PassResult:
        """One pass over the mailbox; returns what happened to each message."""
        if self.owner is None:
            self.owner = await self._off(ledger_owner, self.ledger, self.settings)
        incoming = await self.mailbox.claim_new(
            self.owner, self.settings.service.claim_timeout_seconds
        )
        # Parsing (up to ~2 s for a hostile message), DKIM look-ups (DNS) and SQLite
        # writes (synchronous=FULL) run in a worker thread: the event loop only waits,
        # so IDLE wake-ups, /healthz and other instances in the process are never held up.
        items = [await self._read(i) for i in incoming]
        result = PassResult()
        fresh = [it for it in items if await self._off(self._resume, it)]
        self._progress(f"{len(items)} messages, {len(fresh)} to look up in Halo")
        result.more = await self._decide(fresh)
        for item in items:
            await self._off(self._record_safely, item)
        self._progress("sending answers")
        sent = await self.outbox.send(self._off)
        result.answers_sent, result.answers_failed = sent.answers, sent.failed
        result.digests_sent = sent.digests
        for done, item in enumerate(items, 1):
            await self._file(item)
            result.reports.append(self._report(item))
            self._progress(f"filed {done}/{len(items)}")
        if self.metrics:
            self.metrics.record_pass(
                self.name,
                (r.outcome for r in result.reports),
                self._latencies(items),
                dict(self.halo.calls),
                await self._off(self.ledger.outbox_size),
                halo=(self.halo.reachable, self.halo.refused),
                outgoing=(sent.answers > 0) if sent.answers or sent.failed else None,
            )
        return result

    def _latencies(self, items: list[Item]) -> list[float]:
        """Seconds from arrival in the mailbox (or the Date: header) to the decision."""
        now = self.clock()
        decided = (Outcome.APPROVED, Outcome.REJECTED)
        arrivals = [it.incoming.arrived or it.facts.sent_at for it in items
                    if it.plan and it.plan.outcome in decided]
        return [(now - at).total_seconds() for at in arrivals if at is not None]

    # -- 1. read ----------------------------------------------------------------

    async def _read(self, incoming: Incoming) -> Item:
        """Read one message in a worker process, under the wall-clock limit.

        Not in a thread: the analysis holds the GIL, so a message shaped to read slowly
        would hold up the event loop (IDLE, /healthz, the console, other instances).
        """
        loop = asyncio.get_running_loop()
        args = (incoming.raw, self.settings.parsing, self.rules.grammar)
        try:
            facts = await loop.run_in_executor(None, self.analyser.analyse, *args)
        except (AnalysisUnavailable, OSError, pickle.PicklingError) as exc:
            log.warning("no process to read messages (%s): reading in a thread", exc)
            facts = await self._off(analyse, *args)
        row = await self._off(self.ledger.find, facts.key, facts.content_hash)
        return Item(incoming, facts, row=row)

    def _resume(self, item: Item) -> bool:
        """Pick up where the ledger says this message is; True if it still needs work."""
        row, facts = item.row, item.facts
        if row is not None and row.key != facts.key:  # same content, another Message-ID
            item.row = None
            item.copy_of = row if self._recent(row) else None
            row = None
        if row is not None and row.state == states.FILED:
            item.plan = Plan(Outcome.DUPLICATE, "a copy of a message already handled")
            return False
        if row is not None and row.state in (states.DECIDED, states.ANSWERED):
            item.plan = Plan(Outcome(row.outcome or Outcome.FAILED), row.reason or "")
            return False
        if row is not None and row.state == states.SUBMITTING and row.ticket_id is not None:
            item.reconcile = True
            item.plan = resumed_plan(row)
            return True
        item.verdict = self._authenticate(item)
        item.plan = self.rules.triage(facts, item.verdict, self.clock())
        if item.plan is not None and item.copy_of is not None:
            item.plan = copy_plan(item.copy_of)
        return item.plan is None

    def _recent(self, row: Row) -> bool:
        """Whether an earlier message with the same content came within the copy window."""
        try:
            at = datetime.fromisoformat(row.created_at)
        except ValueError:
            return True
        window = timedelta(minutes=self.settings.service.copy_window_minutes)
        return self.clock() - at <= window

    def _authenticate(self, item: Item) -> Verdict:
        row = item.row  # released in the console: the admin vouched for this very message
        if row is not None and row.vouched_by and row.content_hash == item.facts.content_hash:
            return vouched(row.vouched_by)
        facts = item.facts
        if facts.headers is None or not facts.sender_domain:
            return Verdict(False, "none", "no sender to authenticate")
        verdict = judge(facts.headers, facts.sender_domain, self.settings.security)
        if verdict.trusted or self.settings.security.policy == "off":
            return verdict
        if item.incoming.partial or "dkim-signature" not in {k.lower() for k in facts.headers}:
            return verdict
        results = self.dkim_verifier(item.incoming.raw)
        return judge(
            facts.headers, facts.sender_domain, self.settings.security, dkim_results=results
        )

    # -- 3. look up, 4. submit ---------------------------------------------------

    async def _decide(self, items: list[Item]) -> bool:
        """Read each ticket once, oldest message first, and post decisions as they come.

        Decisions go to Halo in batches (``_Batch``) as soon as their tickets are read, not
        after the whole backlog is read. At ``halo.pass_deadline_seconds`` the pass stops
        waiting: what is ready is posted (or, while the request budget is busy, kept with
        its read for the next pass, to fill a batch), and reads under way go on in the
        background for the next pass. True when work was left for the next pass.
        """
        halo = self.settings.halo
        loop = asyncio.get_running_loop()
        deadline = loop.time() + halo.pass_deadline_seconds
        waiting: dict[int, list[Item]] = {}
        for item in items:
            waiting.setdefault(_ticket_of(item) or 0, []).append(item)
        self._forget_stale_reads(t for t, group in waiting.items()
                                 if any(it.reconcile for it in group))
        reads = {self._read_ticket(ticket_id): ticket_id for ticket_id in waiting}
        claimed: dict[tuple[int, int], Facts] = {}  # entries decided this pass, and by whom
        batch = _Batch(self, halo.batch_size, halo.batch_seconds)
        while reads and loop.time() < deadline:
            due = batch.due(self.halo.budget_pressed)
            done, _ = await asyncio.wait(reads, timeout=max(min(deadline, due) - loop.time(), 0),
                                         return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                ticket_id = reads.pop(task)
                self._reads.pop(ticket_id, None)  # used: the next message reads it anew
                for item in waiting.pop(ticket_id):
                    self._plan(item, task.result(), claimed)
                    batch.add(item, ticket_id, task)
            if batch.full or not reads or batch.due(self.halo.budget_pressed) <= loop.time():
                batch.flush()
        busy = reads and batch.due(self.halo.budget_pressed) == float("inf")
        held = batch.hold() if busy else batch.flush()
        late = f"no answer from Halo within {halo.pass_deadline_seconds:g} s; next pass"
        for item in (it for group in waiting.values() for it in group):
            item.plan = Plan(Outcome.PENDING, f"Halo unavailable, will retry: {late}",
                             item.plan.submission if item.reconcile and item.plan else None)
        await batch.posted()
        return bool(waiting) or held

    def _plan(self, item: Item, found: Ticket | HaloError | None,
              claimed: dict[tuple[int, int], Facts]) -> None:
        """Match one message against its ticket as read (or the read's failure)."""
        item.halo_status = _lookup_answer(_ticket_of(item) or 0, found)
        if isinstance(found, HaloError):
            item.plan = _halo_failure(found)
            return
        item.ticket = found
        if item.reconcile:
            item.plan = self._reconciled(item)
        else:
            item.plan = self.rules.match(item.facts, found)
        if item.copy_of is not None and not new_round(item.plan, item.copy_of):
            item.plan = copy_plan(item.copy_of)
            return
        item.plan = _unclaimed(item.plan, claimed, item.facts)

    def _read_ticket(self, ticket_id: int) -> asyncio.Future[Ticket | HaloError | None]:
        """The read of a ticket under way or kept from an earlier pass, else a new one."""
        kept = self._reads.get(ticket_id)
        if kept is not None and not (kept.task.done() and isinstance(
                kept.task.result(), HaloUnavailable)):  # a failed read is tried anew
            return kept.task
        task = asyncio.ensure_future(self._get(ticket_id))
        read = self._reads[ticket_id] = _Read(task)
        task.add_done_callback(lambda _: read.done())
        return task

    async def _get(self, ticket_id: int, gate: asyncio.Semaphore | None = None
                   ) -> Ticket | HaloError | None:
        async with gate or self._gate:
            try:
                return await self.halo.get_ticket(ticket_id)
            except HaloError as exc:
                return exc
            except Exception as exc:  # a bug must not end the pass for every other message
                log.exception("reading ticket %d failed", ticket_id)
                return HaloUnavailable(f"reading the ticket failed ({type(exc).__name__})")

    def _forget_stale_reads(self, posted: Iterable[int]) -> None:
        """Reads finished long ago are not trusted for a decision, nor any read of a ticket
        a POST may have reached since (a submission being resumed): read those anew."""
        for ticket_id in posted:
            stale = self._reads.pop(ticket_id, None)
            if stale is not None:
                stale.task.cancel()
        now = asyncio.get_running_loop().time()
        for ticket_id, read in list(self._reads.items()):
            if read.finished is not None and now - read.finished > READ_REUSE_SECONDS:
                del self._reads[ticket_id]

    def close(self) -> None:
        """Drop the reads kept for a next pass (there is none: ``once``, shutdown)."""
        for read in self._reads.values():
            read.task.cancel()
        self._reads.clear()
        self._thread.shutdown(wait=True)  # the ledger is closed next: no write may be running

    async def _off(self, work: Callable[..., T], *args: Any) -> T:
        """Run blocking work (parsing, DNS, SQLite) in this responder's own worker thread.

        One thread, so the ledger's connection is never used by two threads at once.
        """
        return await asyncio.get_running_loop().run_in_executor(self._thread, work, *args)

    def _filed(self, key: str) -> None:
        self.ledger.record(key, state=states.FILED)

    def _reconciled(self, item: Item) -> Plan:
        """After a crash mid-submission: what Halo shows decided is never posted again."""
        assert item.plan is not None and item.plan.submission is not None
        subs = item.plan.submissions
        for sub in subs:
            item.found[sub.seq] = item.ticket.approver(sub.seq) if item.ticket else None
        if any(item.found[s.seq] is None for s in subs):
            return Plan(Outcome.FAILED, "the approver is gone from the ticket")
        if all(_decided(item.found[s.seq]) for s in subs):
            log.info("ticket %s seq %s: result already in Halo, not posting again",
                     subs[0].ticket_id, ", ".join(str(s.seq) for s in subs))
            return confirm(item.plan, item.found)
        return item.plan

    async def _tickets(self, ids: Iterable[int]) -> dict[int, Ticket | HaloError | None]:
        """Read each ticket anew, concurrently (to confirm); past the deadline: next pass."""
        unique = sorted(set(ids))
        # Their own gate: a backlog's reads waiting in the background must not hold them up.
        tasks = [asyncio.ensure_future(self._get(i, self._fresh_gate)) for i in unique]
        if not tasks:
            return {}
        await asyncio.wait(tasks, timeout=self.settings.halo.pass_deadline_seconds)
        late = HaloUnavailable(
            f"no answer within {self.settings.halo.pass_deadline_seconds:g} s; next pass"
        )
        for task in tasks:
            task.cancel()  # a no-op for those done
        return {i: t.result() if t.done() and not t.cancelled() else late
                for i, t in zip(unique, tasks, strict=True)}

    # -- 4. submit and confirm --------------------------------------------------

    async def _submit(self, items: list[Item]) -> None:
        if not items:
            return
        if len(items) > 1 and not self.settings.halo.batch_decisions:
            for item in items:
                await self._submit([item])
            return
        for item in items:
            await self._off(self._record_submitting, item)
        await self._post(items)
        await self._confirm(items)

    async def _post(self, items: list[Item]) -> None:
        """POST the entries of ``items`` Halo does not show decided yet, in one call.

        A refused batch may have been applied in part (Halo is silent on this): its
        tickets are re-read before anything is posted again, and what is still pending is
        then posted entry by entry, so that one bad entry cannot sink the others.
        """
        todo = [(it, s) for it in items for s in _undecided(it)]
        if not todo:
            return
        subs = [s for _, s in todo]
        deadline = self.settings.halo.pass_deadline_seconds
        try:
            # An answer later than the deadline is given up like a timeout: the POST may
            # have landed, so the rows stay "submitting" and the next pass re-reads first.
            # (Waiting for a slot in the request budget is not bounded: nothing is sent.)
            records = await self.halo.submit(subs, answer_within=deadline)
        except HaloRejected as exc:
            if len(subs) > 1:
                await self._isolate(items, exc)
                return
            item = todo[0][0]
            item.refused = f"Halo refused the decision: {exc}"
            _tell(item, f"{exc.method} {exc.path} {exc.status} {exc.excerpt}".strip())
            return
        except HaloError as exc:
            self._set_all(items, _halo_failure(exc), str(exc))
            return
        if self.settings.halo.confirm == "reread":
            records = None
        shown = {(a.ticket_id, a.seq): a for a in records or [] if a.decided}
        for item in {id(it): it for it, _ in todo}.values():  # once per message
            _tell(item, f"POST /api/ticketapproval 200 ({len(subs)} in one call)")
        for item, sub in todo:
            if (sub.ticket_id, sub.seq) in shown:
                item.found[sub.seq] = shown[(sub.ticket_id, sub.seq)]

    async def _isolate(self, items: list[Item], exc: HaloRejected) -> None:
        """After a refused batch: re-read, then post what is still pending one by one."""
        log.warning("Halo refused a batch of decisions (%s): re-reading before posting again",
                    exc)
        reread = await self._tickets(_ticket_of(it) or 0 for it in items)
        for item in items:
            found = reread.get(_ticket_of(item) or 0)
            if isinstance(found, HaloError):
                self._set_all([item], _halo_failure(found), str(found))
                item.reconcile = True
                continue
            for sub in _undecided(item):
                item.found[sub.seq] = found.approver(sub.seq) if found else None
            _tell(item, f"batch refused ({exc.status}); re-read")
        for item in items:
            assert item.plan is not None
            if item.plan.outcome is not Outcome.SUBMIT:
                continue
            for sub in _undecided(item):
                one = replace(item.plan, submission=sub, extra=())
                single = replace(item, plan=one, found={}, refused=None)
                await self._post([single])
                item.found.update(single.found)
                item.refused = item.refused or single.refused
                item.halo_status = single.halo_status
                if single.plan is not None and single.plan.outcome is not Outcome.SUBMIT:
                    item.plan = replace(single.plan, submission=item.plan.submission,
                                        extra=item.plan.extra)
                    item.reconcile = single.reconcile or item.reconcile
                    break

    async def _confirm(self, items: list[Item]) -> None:
        """Use the POST's answer where it shows the result; else re-read each ticket once.

        Halo may keep a decided entry in ``approvers`` or move it to ``approvers_history``;
        ``Ticket.approver`` looks in both, and a ``dateapproved`` counts as decided.
        """
        waiting = [it for it in items if it.plan and it.plan.outcome is Outcome.SUBMIT]
        # A refused decision is re-read too: someone may have decided the entry since we
        # read it, which is "already decided", not a failure.
        unsure = [it for it in waiting if _undecided(it)]
        reread = await self._tickets(_ticket_of(it) or 0 for it in unsure)
        for item in waiting:
            assert item.plan is not None
            if item in unsure:
                found = reread.get(_ticket_of(item) or 0)
                if isinstance(found, HaloError) and item.refused:
                    item.plan = replace(item.plan, outcome=Outcome.FAILED, reason=item.refused)
                    continue
                if isinstance(found, HaloError):
                    item.plan = _halo_failure(found)  # reconciled by re-reading next pass
                    item.reconcile = item.plan.outcome is Outcome.PENDING
                    continue
                for sub in _undecided(item):
                    item.found[sub.seq] = found.approver(sub.seq) if found else None
                item.halo_status = f"{item.halo_status}; re-read shows " + ", ".join(
                    f"seq {seq} result {a.result if a else None}" for seq, a in item.found.items())
            else:
                item.halo_status = f"{item.halo_status}; " + ", ".join(
                    f"result {a.result}" for a in item.found.values() if a) + " in its answer"
            plan = confirm(item.plan, item.found)
            if item.refused and plan.outcome is Outcome.FAILED:
                plan = replace(plan, reason=item.refused)
            item.plan = plan

    def _set_all(self, items: list[Item], plan: Plan, halo_status: str) -> None:
        for item in items:
            item.plan = replace(plan, submission=item.plan.submission if item.plan else None)
            _tell(item, halo_status)

    # -- 5. record, answer ------------------------------------------------------

    def _record_submitting(self, item: Item) -> None:
        sub = item.plan.submission if item.plan else None
        assert sub is not None
        self.ledger.record(
            item.facts.key,
            state=states.SUBMITTING,
            ticket_id=sub.ticket_id,
            seq=sub.seq,
            actionnumber=sub.actionnumber,
            decision=sub.result.name.lower(),
            note=sub.note,
            entries=",".join(f"{s.seq}:{s.actionnumber}" for s in item.plan.submissions)
            if item.plan else None,
            **self._facts_columns(item),
        )

    def _facts_columns(self, item: Item) -> dict[str, Any]:
        f = item.facts
        return {
            **({"halo_status": item.halo_status[:500]} if item.halo_status else {}),
            "message_id": f.message_id,
            "content_hash": f.content_hash,
            "sender": f.sender,
            "subject": f.subject[:500],
            "mailbox_ref": item.incoming.ref,
            **({"auth_verdict": item.verdict.reason} if item.verdict else {}),
            **evidence_columns(item.incoming.raw, f, item.verdict),
        }

    def _record(self, item: Item) -> None:
        """Record the outcome, and queue the answer, before anything is filed."""
        plan = item.plan
        if plan is None or plan.outcome is Outcome.DUPLICATE:
            return
        if item.row is not None and item.row.state in (states.DECIDED, states.ANSWERED):
            if item.row.state == states.DECIDED:
                self._queue_answer(item)
            return
        if plan.outcome is Outcome.PENDING:
            state = states.SUBMITTING if item.reconcile or plan.submission else states.SEEN
            row = item.row
            if row is not None and (row.state, row.outcome) == (state, plan.outcome.value):
                return  # a backlog's waiting messages: no write (and fsync) each pass
            self.ledger.record(item.facts.key, state=state, outcome=plan.outcome.value,
                               reason=plan.reason, **self._facts_columns(item))
            return
        columns: dict[str, Any] = {"ticket_id": item.facts.ticket_id}
        if plan.submission:
            columns.update(seq=plan.submission.seq, actionnumber=plan.submission.actionnumber)
        if item.facts.decision:
            columns.update(decision=item.facts.decision.value, note=item.facts.note)
        self.ledger.record(item.facts.key, state=states.DECIDED, outcome=plan.outcome.value,
                           reason=plan.reason, **columns, **self._facts_columns(item))
        self._queue_answer(item)

    def _record_safely(self, item: Item) -> None:
        """One message's bad luck (a broken custom template, say) must not stop the rest."""
        try:
            self._record(item)
        except Exception as exc:
            log.exception("could not record %s; it stays in the inbox", item.facts.key)
            item.plan = Plan(Outcome.PENDING, f"internal error: {type(exc).__name__}: {exc}")

    def _queue_answer(self, item: Item) -> None:
        assert item.plan is not None
        self.outbox.queue(item.facts, item.plan, item.ticket, lambda: self._may_digest(item))

    def _may_digest(self, item: Item) -> bool:
        """Only a person proven to be the sender gets answers past the limit (as digests)."""
        sender = item.facts.sender
        if sender is None or sender in self.rules.own_addresses:
            return False
        verdict = item.verdict or self._authenticate(item)  # resumed: not judged this pass
        return verdict.trusted and verdict.method != "policy-off"

    # -- 6. file ----------------------------------------------------------------

    async def _file(self, item: Item) -> None:
        assert item.plan is not None
        folder = folder_for(item.plan.outcome, self.settings.folders)
        if folder is None:
            return  # pending: stays in the inbox for the next pass
        try:
            await self.mailbox.move(item.incoming.ref, folder)
        except MailboxError as exc:
            log.warning("could not file %s into %s: %s", item.facts.key, folder, exc)
            return
        if item.plan.outcome is not Outcome.DUPLICATE:
            await self._off(self._filed, item.facts.key)

    def _report(self, item: Item) -> Report:
        assert item.plan is not None
        f = item.facts
        report = Report(
            ref=item.incoming.ref,
            key=f.key,
            sender=f.sender,
            ticket_id=f.ticket_id,
            decision=f.decision.value if f.decision else None,
            note=f.note,
            outcome=item.plan.outcome.value,
            reason=item.plan.reason,
        )
        log.info(
            "%s%s from %s, ticket %s: %s (%s)",
            "" if self.name == "default" else f"[{self.name}] ",
            f.key or item.incoming.ref, f.sender, f.ticket_id, report.outcome, report.reason,
            extra={"report": {"instance": self.name, **report.as_json()}},
        )
        return report


def _ticket_of(item: Item) -> int | None:
    """The ticket a message is about: its submission's (when resuming one), else its tag."""
    sub = item.plan.submission if item.plan else None
    return sub.ticket_id if sub else item.facts.ticket_id


class _Batch:
    """Decisions of a pass waiting for their POST, and when to send them.

    Posted when ``batch_size`` are ready, when no more reads are coming, or
    ``batch_seconds`` after the first was ready (so the first decision of a backlog goes
    within seconds) -- except while the request budget is busy, where a small POST would
    take a read's slot: then the batch fills, and what the pass deadline leaves is kept,
    with its ticket read, for the next pass (``hold``).
    """

    def __init__(self, owner: Responder, size: int, seconds: float) -> None:
        self.owner = owner
        self.size = size
        self.seconds = seconds
        self.items: list[Item] = []
        self.reads: dict[int, asyncio.Future[Ticket | HaloError | None]] = {}
        self.since: float | None = None
        self.posts: list[asyncio.Future[None]] = []

    def add(self, item: Item, ticket_id: int,
            read: asyncio.Future[Ticket | HaloError | None]) -> None:
        if item.plan and item.plan.outcome is Outcome.SUBMIT:
            self.items.append(item)
            self.reads[ticket_id] = read
            if self.since is None:
                self.since = asyncio.get_running_loop().time()

    @property
    def full(self) -> bool:
        return len(self.items) >= self.size

    def due(self, pressed: bool) -> float:
        """When to post the batch as it is; under a busy budget, only when no POST went
        for as long as a full batch takes to read (so the first decision goes at once)."""
        if not self.items or self.since is None:
            return float("inf")
        halo = self.owner.settings.halo
        filling = self.size * halo.window_seconds / halo.requests_per_window
        if pressed and asyncio.get_running_loop().time() - self.owner._posted < filling:
            return float("inf")
        return self.since + self.seconds

    def flush(self) -> bool:
        if self.items:
            self.owner._posted = asyncio.get_running_loop().time()
            self.posts.append(asyncio.ensure_future(self.owner._submit(list(self.items))))
        self.items.clear()
        self.reads.clear()
        self.since = None
        return False

    def hold(self) -> bool:
        """Keep the decisions for the next pass, and their reads with them."""
        if self.full:
            return self.flush()
        for ticket_id, read in self.reads.items():
            self.owner._reads[ticket_id] = _Read(read, asyncio.get_running_loop().time())
        for item in self.items:
            assert item.plan is not None
            item.plan = Plan(Outcome.PENDING, "waiting to fill a batch while the Halo request "
                             "budget is busy; next pass",
                             item.plan.submission if item.reconcile else None)
        held = bool(self.items)
        self.items.clear()
        self.reads.clear()
        return held

    async def posted(self) -> None:
        if self.posts:
            await asyncio.gather(*self.posts)


def _decided(approver: Approver | None) -> bool:
    return approver is not None and approver.decided


def _undecided(item: Item) -> list[Submission]:
    """The entries of an item's plan that Halo does not show decided (so far as we saw)."""
    subs = item.plan.submissions if item.plan else ()
    return [s for s in subs if not _decided(item.found.get(s.seq))]


def _unclaimed(plan: Plan, claimed: dict[tuple[int, int], Facts], facts: Facts) -> Plan:
    """Each entry is decided once per pass: entries an earlier message took are dropped.

    When every entry went to a message with the same content (the same reply delivered
    twice, or a copy arriving while the original waited for Halo), this one is a copy:
    filed without an answer, as a copy found in the ledger is."""
    if plan.outcome is not Outcome.SUBMIT:
        return plan
    taken = [claimed[e] for e in ((s.ticket_id, s.seq) for s in plan.submissions)
             if e in claimed]
    free = [s for s in plan.submissions if (s.ticket_id, s.seq) not in claimed]
    for s in free:
        claimed[(s.ticket_id, s.seq)] = facts
    if free:
        return replace(plan, submission=free[0], extra=tuple(free[1:]))
    if facts.content_hash and all(f.content_hash == facts.content_hash for f in taken):
        return Plan(Outcome.DUPLICATE, f"same content as {taken[0].key}")
    return Plan(Outcome.ALREADY_DECIDED, "decided by an earlier message")


def _lookup_answer(ticket_id: int, found: Ticket | HaloError | None) -> str:
    """What the ticket read answered, for the ledger and the console."""
    if isinstance(found, HaloError):
        return f"GET ticket {ticket_id}: {found}"
    if found is None:
        return f"GET /api/tickets/{ticket_id} 404 (no such ticket)"
    pending = sum(not a.decided for a in found.approvers)
    return (f"GET /api/tickets/{ticket_id} 200 ({len(found.entries)} approval entries, "
            f"{pending} pending)")


def _tell(item: Item, answer: str) -> None:
    """Add one Halo answer to what the message's Halo calls have answered so far."""
    item.halo_status = f"{item.halo_status}; {answer}" if item.halo_status else answer


def _halo_failure(exc: HaloError) -> Plan:
    """Halo could not be asked now: pending, nobody told yet; or refused it for good.

    A 4xx other than 401/429 (``HaloRejected``: 400, 403, 404 on a decision...) will not
    change on retry: the message fails, and the reason names the call and the status; so
    does JSON that cannot be trusted for a decision (``HaloUnusable``: another ticket's id,
    an entry without a numeric ``seq``), rather than a decision built on a guess.
    """
    if isinstance(exc, HaloRejected):
        return Plan(Outcome.FAILED, f"Halo refused it (HTTP {exc.status}), not retried: {exc}")
    if isinstance(exc, HaloUnusable):
        return Plan(Outcome.FAILED, f"Halo's answer cannot be used, not retried: {exc}")
    return Plan(Outcome.PENDING, f"Halo unavailable, will retry: {exc}")
