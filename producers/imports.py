"""Import a file of tickets (CSV or JSONL, ``producers/files.py``) as one batch: every row
validated before any is queued, in bounded memory, and safe to run again.

Three passes, none of which holds the file:

1. **Hash**: the file's sha256, read in blocks (any other stream, standard input say, is
   spooled to a temp file on the way, so that it can be read again). A row's idempotency
   key is its own ``idempotency_key``, else ``import-<24 hex of the hash>-<line>`` (with no
   character a Redis key name must escape: escaping costs a second per 200,000 rows): the
   same file imported again names the same jobs, so a run cut short (Redis failing, a
   Ctrl-C) or repeated by mistake makes no second ticket, and reports those rows as
   already known.
2. **Validate**: each row becomes a job spec (``Producer.validate``: the contract every
   producer is held to) or a reject. The valid ones are serialized once (``NewJob``) into a
   temp file, a chunk at a time, so that 200,000 rows cost one chunk of memory.
3. **Queue**, only if no row was rejected (or the caller skips the rejects): the batch's
   record is opened, then chunk by chunk the jobs are stored all or none and the new ones
   sent (``Producer.store_bulk``, ``send_stored``), and the chunk is added to the batch's counts.

Redis failing part way raises ``ImportInterrupted``, saying how many rows were queued:
the same import run again queues the rest, as the derived keys name the same jobs.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from typing import BinaryIO, TextIO

from producers.client import BrokerError, InvalidJob, Producer, broker_errors
from producers.files import BadRow, FileProblem, Format, RejectWriter, Row, read_rows
from worker.store.batches import Batches
from worker.store.jobs import NewJob

CHUNK_ROWS = 2_000  # rows stored (and counted on the batch) per round
KEY_HASH_CHARS = 24  # of the file's sha256, in a derived idempotency key
NO_ACCOUNT = "account_id: missing: the row names no account and no default account was given"
_BLOCK_BYTES = 1 << 20
_REPORT_EVERY = 1_000  # rows validated between two progress reports

Source = str | os.PathLike[str] | BinaryIO


class Stage(StrEnum):
    """What a progress report counts: bytes hashed, lines validated, rows queued."""

    HASHING = "hashing"
    VALIDATING = "validating"
    QUEUEING = "queueing"


# (stage, done, total or None when unknown: standard input's size)
OnProgress = Callable[[Stage, int, int | None], None]
OnReject = Callable[[BadRow], None]


@dataclass(frozen=True)
class ImportOptions:
    account_id: str | None = None  # for the rows that name no account
    skip_invalid: bool = False  # queue the valid rows even when some are rejected
    chunk_rows: int = CHUNK_ROWS


@dataclass(frozen=True)
class ImportReport:
    """What an import (or a check) did with a file."""

    batch_id: str | None  # None: nothing was queued (a check, rows refused, or none valid)
    sha256: str
    rows: int  # rows read, valid or not
    valid: int
    rejected: int
    accepted: int = 0  # rows queued as new jobs
    already_known: int = 0  # rows whose idempotency key named a job already


class ImportInterrupted(BrokerError):
    """Redis failed part way through the queueing: ``queued`` of the ``valid`` rows are
    stored. Running the same import again queues the rest and none twice."""

    def __init__(self, queued: int, valid: int, cause: BrokerError) -> None:
        self.queued = queued
        self.valid = valid
        super().__init__(
            f"{cause}; {queued:,} of {valid:,} rows were queued before it failed. Run the "
            "same import again to queue the rest: the rows already queued are known by "
            "their idempotency keys and are not queued twice"
        )


@dataclass(frozen=True)
class _Hooks:
    progress: OnProgress
    reject: OnReject
    rejects: TextIO | None  # where rejected rows are written back, in the input's format


def check_file(
    source: Source,
    fmt: Format,
    options: ImportOptions = ImportOptions(),
    *,
    rejects: TextIO | None = None,
    on_progress: OnProgress | None = None,
    on_reject: OnReject | None = None,
) -> ImportReport:
    """A dry run: hash and validate the file, reporting each reject (and writing it to
    ``rejects``); nothing is stored and Redis is never contacted. ``FileProblem`` when the
    file as a whole cannot be read; ``OSError`` when it cannot be opened."""
    hooks = _hooks(rejects, on_progress, on_reject)
    with _validated(source, fmt, options, hooks, batch_id=None, spool=False) as checked:
        return checked.report()


def import_file(
    producer: Producer,
    source: Source,
    fmt: Format,
    options: ImportOptions = ImportOptions(),
    *,
    name: str | None = None,
    rejects: TextIO | None = None,
    on_progress: OnProgress | None = None,
    on_reject: OnReject | None = None,
) -> ImportReport:
    """Validate every row, then, if none was rejected (or ``skip_invalid``), queue the
    valid ones in the bulk lane as one batch. ``name`` is recorded as the batch's source
    (default: the path). Raises as ``check_file`` does, and ``ImportInterrupted`` (a
    ``BrokerError``) when Redis fails part way."""
    hooks = _hooks(rejects, on_progress, on_reject)
    batch_id = uuid.uuid4().hex
    with _validated(source, fmt, options, hooks, batch_id=batch_id, spool=True) as checked:
        refused = checked.rejected and not options.skip_invalid
        if refused or not checked.valid:
            return checked.report()
        if name is None and isinstance(source, str | os.PathLike):
            name = os.fspath(source)
        return _queue(producer, checked, batch_id, name, hooks)


def _hooks(
    rejects: TextIO | None, on_progress: OnProgress | None, on_reject: OnReject | None
) -> _Hooks:
    return _Hooks(on_progress or _ignore, on_reject or _ignore, rejects)


def _ignore(*args: object) -> None:
    """A hook nobody asked for."""


# The validation pass


class _Spool:
    """The valid rows' jobs, pickled to a temp file a chunk at a time (one chunk in memory)
    and read back the same way: plain tuples, because the file is our own and short-lived,
    and pickle reads tuples of strings back faster than anything else (JSON, or objects)."""

    def __init__(self, file: BinaryIO, chunk_rows: int) -> None:
        self._file = file
        self._chunk_rows = chunk_rows
        self._chunk: list[tuple[int, *tuple[str | None, ...]]] = []

    def add(self, line: int, job: NewJob) -> None:
        self._chunk.append((line, *job))
        if len(self._chunk) >= self._chunk_rows:
            self._flush()

    def chunks(self) -> Iterator[tuple[list[int], list[NewJob]]]:
        """Each chunk's lines, and its jobs."""
        self._flush()
        self._file.seek(0)
        while True:
            try:
                rows = pickle.load(self._file)
            except EOFError:
                return
            yield [row[0] for row in rows], [NewJob(*row[1:]) for row in rows]

    def _flush(self) -> None:
        if self._chunk:
            pickle.dump(self._chunk, self._file, protocol=pickle.HIGHEST_PROTOCOL)
            self._chunk = []


@dataclass
class _Checked:
    """The validation pass's outcome: counts, the accounts seen, the spooled jobs."""

    sha256: str
    spool: _Spool | None
    rows: int = 0
    rejected: int = 0
    accounts: set[str] = field(default_factory=set)  # of valid rows; two are enough to tell

    @property
    def valid(self) -> int:
        return self.rows - self.rejected

    @property
    def account_id(self) -> str | None:
        """The batch's account: the one every valid row names, else None."""
        return next(iter(self.accounts)) if len(self.accounts) == 1 else None

    def report(
        self, batch_id: str | None = None, accepted: int = 0, already_known: int = 0
    ) -> ImportReport:
        return ImportReport(
            batch_id, self.sha256, self.rows, self.valid, self.rejected, accepted, already_known
        )


@contextmanager
def _validated(
    source: Source,
    fmt: Format,
    options: ImportOptions,
    hooks: _Hooks,
    *,
    batch_id: str | None,
    spool: bool,
) -> Iterator[_Checked]:
    """The file hashed and every row validated; the valid rows' jobs spooled if asked
    (and while they may still be queued: once a row is refused without ``skip_invalid``,
    nothing will be)."""
    with (
        _hashed(source, hooks.progress) as (stream, sha256, lines),
        tempfile.TemporaryFile() as spool_file,
    ):
        checked = _Checked(sha256, _Spool(spool_file, options.chunk_rows) if spool else None)
        rows = read_rows(stream, fmt)
        writer = RejectWriter(hooks.rejects, fmt, rows.columns) if hooks.rejects else None
        prefix = f"import-{sha256[:KEY_HASH_CHARS]}"
        first_with: dict[tuple[str, str], int] = {}  # the line each given key was first on
        for item in rows:
            checked.rows += 1
            job = item if isinstance(item, BadRow) else _job(item, options, prefix, batch_id)
            if not isinstance(job, BadRow):
                job = _first_with_its_key(item, job, first_with)
            if isinstance(job, BadRow):
                checked.rejected += 1
                if writer is not None:
                    writer.write(job)
                hooks.reject(job)
            else:
                if len(checked.accounts) < 2:
                    checked.accounts.add(job.account_id)
                if checked.spool is not None and (options.skip_invalid or not checked.rejected):
                    checked.spool.add(item.line, job)
            if checked.rows % _REPORT_EVERY == 0:
                hooks.progress(Stage.VALIDATING, item.line, lines)
        hooks.progress(Stage.VALIDATING, lines, lines)
        if not checked.rows:
            raise FileProblem("no rows: the file holds nothing to import")
        yield checked


def _first_with_its_key(
    row: Row | BadRow, job: NewJob, first_with: dict[tuple[str, str], int]
) -> NewJob | BadRow:
    """A row whose ``idempotency_key`` an earlier row of the same file gave (for the same
    account) would silently become that row's job: refused, naming the first. Derived keys
    are one per line, so only keys the file gives are kept."""
    given = row.fields.get("idempotency_key") if isinstance(row, Row) else None
    if given is None or not isinstance(row, Row):
        return job
    first = first_with.setdefault((job.account_id, given), row.line)
    if first == row.line:
        return job
    return row.rejected(f"idempotency_key: {given!r} was given on line {first} already")


def _job(row: Row, options: ImportOptions, prefix: str, batch_id: str | None) -> NewJob | BadRow:
    """A row as a job, validated as ``Producer.validate`` validates every job: its account
    (else the default), its idempotency key (else one derived from the file and its line)."""
    fields = row.fields
    account = fields.get("account_id")
    if account is None:
        account = options.account_id
    if account is None:
        return row.rejected(NO_ACCOUNT)
    key = fields.get("idempotency_key")
    try:
        spec = Producer.validate(
            account,
            fields["ticket"],
            ref=fields.get("ref"),
            idempotency_key=f"{prefix}-{row.line}" if key is None else key,
            batch_id=batch_id,
        )
    except InvalidJob as exc:
        return row.rejected(str(exc))
    return NewJob.of(spec)


@contextmanager
def _hashed(source: Source, progress: OnProgress) -> Iterator[tuple[BinaryIO, str, int]]:
    """The input to read rows from (at its start), its sha256 and its number of lines. A
    path is read twice; any other stream is spooled to a temp file while it is hashed."""
    if isinstance(source, str | os.PathLike):
        with open(source, "rb") as stream:
            yield _hash(stream, None, os.fstat(stream.fileno()).st_size, progress)
    else:
        with tempfile.TemporaryFile() as copy:
            yield _hash(source, copy, None, progress)


def _hash(
    stream: BinaryIO, copy: BinaryIO | None, size: int | None, progress: OnProgress
) -> tuple[BinaryIO, str, int]:
    """Read ``stream`` to its end (into ``copy`` if given): the stream to read again,
    rewound, its sha256 and how many lines it has."""
    digest = hashlib.sha256()
    lines = done = 0
    last = b"\n"
    while block := stream.read(_BLOCK_BYTES):
        digest.update(block)
        lines += block.count(b"\n")
        done += len(block)
        last = block[-1:]
        if copy is not None:
            copy.write(block)
        progress(Stage.HASHING, done, size)
    readable = stream if copy is None else copy
    readable.seek(0)
    return readable, digest.hexdigest(), lines + (last != b"\n")


# The queueing pass


def _queue(
    producer: Producer, checked: _Checked, batch_id: str, name: str | None, hooks: _Hooks
) -> ImportReport:
    """The spooled jobs stored a chunk at a time, each chunk all or none, under a batch
    record opened first; its counts grow with each chunk. A chunk's new jobs are sent on a
    thread while the next chunk is stored: storing mostly waits for Redis, sending is
    mostly Python, and overlapping them takes a tenth off a 200,000-row import."""
    assert checked.spool is not None, "queued from the spool"
    batches = Batches(producer.store)
    accepted = known = 0
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="ticketq-import-send") as sender:
        sending: Future[None] | None = None
        try:
            with broker_errors():
                batches.open(batch_id, at=time.time(), account_id=checked.account_id, source=name)
                batches.count(batch_id, rows=checked.rejected, rejected=checked.rejected)
                for lines, jobs in checked.spool.chunks():
                    stored = producer.store_bulk(jobs, lines)
                    new = sum(s.is_new for s in stored)
                    accepted, known = accepted + new, known + len(stored) - new
                    batches.count(
                        batch_id, rows=len(stored), accepted=new, already_known=len(stored) - new
                    )
                    if sending is not None:
                        sending.result()  # one chunk in flight: memory stays bounded
                    sending = sender.submit(producer.send_stored, stored)
                    hooks.progress(Stage.QUEUEING, accepted + known, checked.valid)
        except BrokerError as exc:
            raise ImportInterrupted(accepted + known, checked.valid, exc) from exc
    return checked.report(batch_id=batch_id, accepted=accepted, already_known=known)
