"""Fast reads for bulk restores: loose objects straight from disk, anything else via repo.

repo.py is the module that owns the vault's git data; this one only reads, and only what a
restore of thousands of files needs in bulk: the file list of a commit and the blobs. Any
object that is not a plain loose object (packed, damaged, unusual) goes through VaultRepo,
which reports it the usual way.

A restore reads thousands of small blobs. pygit2 opens and reads each loose object twice
(once for its type, once for its bytes); here it takes one open and one read, relative to the
open objects folder. The checks are the ones libgit2 makes: the zlib stream is whole, the
header says blob with the right size, and the content hashes to its id. A blob can be looked
at (its first bytes) before it is inflated, so that a large one can be handed to someone else
to inflate. The object files of a restore's plan can be read ahead by threads (read_ahead),
so that a disk that no longer caches them answers several reads at once.
"""

from __future__ import annotations

import hashlib
import os
import time
import zlib
from collections.abc import Callable, Iterator
from datetime import datetime, timezone

from vault.errors import RepoError
from vault.repo import HEX, CommitInfo, FileMap, VaultRepo

HINT = "`vault doctor` checks the vault; `vault doctor --repair` re-clones it from its remote"
_FLAGS = os.O_RDONLY | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0)
_LARGE = 1 << 20  # a stored object this big is inflated into a buffer of its exact size
_CHUNK = 1 << 16  # the first read of an object file


class Blob:
    """One blob, read from the vault; inflated and checked on first use of its content."""

    __slots__ = ("oid", "_raw", "_rest", "_whole", "_start")

    def __init__(self, oid: str, raw: bytes | None = None, data: bytes | None = None,
                 rest: Callable[[], bytes] | None = None) -> None:
        self.oid = oid
        self._raw = raw  # the loose object as stored (zlib), until inflated
        self._rest = rest  # when raw is only its start: reads the whole of it
        self._whole = data  # the inflated object (header and content), or just the content
        self._start = 0  # where the content starts in _whole

    def head(self, size: int) -> bytes:
        """The first size bytes of the content (fewer when it is shorter).

        A large blob is only inflated (and read) that far (b"" when it is damaged: data() says
        how); a small one is inflated and checked whole, once.
        """
        if self._raw is not None and (self._rest is not None or len(self._raw) > _LARGE):
            try:
                start = zlib.decompressobj().decompress(self._raw, 64 + size)
            except zlib.error:
                return b""
            nul = start.find(b"\0")
            return start[nul + 1:nul + 1 + size] if nul > 0 else b""
        self._inflate()
        assert self._whole is not None
        return self._whole[self._start:self._start + size]

    def data(self) -> bytes:
        """The content, checked against the blob's id; RepoError when damaged."""
        self._inflate()
        assert self._whole is not None
        return self._whole[self._start:] if self._start else self._whole

    def contains(self, needle: bytes) -> bool:
        """True when needle occurs in the content."""
        self._inflate()
        assert self._whole is not None
        return self._whole.find(needle, self._start) >= 0

    def view(self) -> memoryview:
        """data() without copying it out of the inflated object (for large blobs)."""
        self._inflate()
        assert self._whole is not None
        return memoryview(self._whole)[self._start:]

    def _inflate(self) -> None:
        if self._rest is not None:
            self._raw, self._rest = self._rest(), None
        if self._raw is not None:
            self._whole, self._start = _inflate_blob(self.oid, self._raw)
            self._raw = None


class BlobReader:
    """Reads blobs of one vault; packed or unusual objects go through VaultRepo.read_blob.

    It holds the objects folder open: close() it (or use it as a context manager).
    """

    def __init__(self, repo: VaultRepo) -> None:
        self.repo = repo
        try:  # object files are opened relative to it: no walk of the whole path each time
            self._dir_fd: int | None = os.open(repo.path / "objects",
                                               os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            self._dir_fd = None  # every read goes through repo, which says what is wrong
        self._ahead: _ReadAhead | None = None

    def __enter__(self) -> BlobReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def read_ahead(self, oids: list[str]) -> None:
        """Read the object files of oids (in the order they will be asked for) on threads of
        their own, a little ahead of get(): see _ReadAhead. close() stops them."""
        if self._dir_fd is not None and self._ahead is None and len(oids) >= _AHEAD_MIN:
            self._ahead = _ReadAhead(self._dir_fd, oids)

    def close(self) -> None:
        """Let go of the objects folder."""
        if self._ahead is not None:
            self._ahead.stop()  # (before the folder it reads in is closed)
            self._ahead = None
        if self._dir_fd is not None:
            os.close(self._dir_fd)
            self._dir_fd = None

    def read(self, oid: str) -> bytes:
        """The bytes of one blob, checked against its id; RepoError when missing or damaged."""
        return self.get(oid).data()

    def get(self, oid: str) -> Blob:
        """One blob, read from disk but not inflated yet (a large one: only its start, until
        more than its head is asked for)."""
        if len(oid) != 40 or self._dir_fd is None:
            return self._from_repo(oid)
        return self._loose(oid, whole=False) or self._from_repo(oid)

    def _loose(self, oid: str, whole: bool) -> Blob | None:
        """A loose object's blob; None when there is no such file (packed, or missing)."""
        if self._ahead is not None:
            raw = self._ahead.take(oid)
            if raw is not None:
                return Blob(oid, raw=raw)
        try:
            fd = os.open(f"{oid[:2]}/{oid[2:]}", _FLAGS, dir_fd=self._dir_fd)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise RepoError(f"vault object {oid} cannot be read: {exc.strerror}",
                            hint=HINT) from None
        try:
            raw = os.read(fd, _CHUNK)
            if len(raw) == _CHUNK:  # most objects fit in one read; this one goes on
                if not whole and os.fstat(fd).st_size > _LARGE:
                    # Often a database's dump, which goes to the other process whole: the
                    # rest is read only if this one needs it.
                    return Blob(oid, raw=raw, rest=lambda: self._whole_raw(oid))
                parts = [raw]
                while part := os.read(fd, 1 << 20):
                    parts.append(part)
                raw = b"".join(parts)
        except OSError as exc:
            raise RepoError(f"vault object {oid} cannot be read: {exc.strerror}",
                            hint=HINT) from None
        finally:
            os.close(fd)
        return Blob(oid, raw=raw)

    def _whole_raw(self, oid: str) -> bytes:
        """The whole file of a loose object (also once the reader is closed)."""
        try:
            fd = os.open(self.repo.path / "objects" / oid[:2] / oid[2:], _FLAGS)
            try:
                parts = []
                while part := os.read(fd, 1 << 20):
                    parts.append(part)
            finally:
                os.close(fd)
        except OSError as exc:
            raise RepoError(f"vault object {oid} cannot be read: {exc.strerror}",
                            hint=HINT) from None
        return b"".join(parts)

    def _from_repo(self, oid: str) -> Blob:
        return Blob(oid, data=self.repo.read_blob(oid))


_AHEAD_MIN = 256  # fewer blobs are read as they are asked for
_AHEAD_WINDOW = 512  # object files read ahead and not asked for yet, at most
# Threads reading ahead: a disk answers several reads at once. 10,000 objects, cold cache,
# whole restore: 2.0-2.2 s with one thread, 1.45-1.55 s with four, 1.7-1.95 s with eight.
_AHEAD_THREADS = 4


class _ReadAhead:
    """Object files read by threads ahead of the reader that will ask for them.

    A restore reads thousands of small object files, one after the other, between the writes
    of the files they hold. When the page cache does not hold them (a machine that reclaims
    idle pages: this VM reclaims within seconds), each open and read waits for the disk in
    turn: 10,000 objects took 0.9 s to read cold here, 0.2 s warm. The threads' reads wait
    for the disk (several at once, each thread every _AHEAD_THREADS-th file) while the restore
    writes; the GIL is let go while they wait. What they read is only kept for get(), which
    checks it as it checks any object file (inflated whole, its id recomputed); a file they
    cannot read, or one larger than one read, is left for get() to read and report on. They
    never get more than _AHEAD_WINDOW files ahead.
    """

    def __init__(self, dir_fd: int, oids: list[str]) -> None:
        import threading

        self._dir_fd = dir_fd
        self._oids = oids
        self._ready: dict[str, bytes] = {}
        self._taken = 0  # files the reader asked for so far
        self._stopped = False
        self.served = 0  # files get() had from the threads
        self._threads = [threading.Thread(target=self._run, args=(n,), name="vault-read-ahead",
                                          daemon=True) for n in range(_AHEAD_THREADS)]
        for thread in self._threads:
            thread.start()

    def take(self, oid: str) -> bytes | None:
        """The object file of oid, if a thread has read it."""
        self._taken += 1
        raw = self._ready.pop(oid, None)
        if raw is not None:
            self.served += 1
        return raw

    def stop(self) -> None:
        self._stopped = True
        for thread in self._threads:
            thread.join()

    def _run(self, first: int) -> None:
        ready = self._ready
        oids = self._oids
        for index in range(first, len(oids), _AHEAD_THREADS):
            oid = oids[index]
            if index < self._taken:
                continue  # asked for already: the reader read it itself
            while len(ready) >= _AHEAD_WINDOW and not self._stopped:
                time.sleep(0.005)  # (the reader takes ~0.1 ms a file: plenty are ready)
            if self._stopped:
                return
            try:
                fd = os.open(f"{oid[:2]}/{oid[2:]}", _FLAGS, dir_fd=self._dir_fd)
            except OSError:
                continue
            try:
                raw = os.read(fd, _CHUNK)
            except OSError:
                continue
            finally:
                os.close(fd)
            # (a larger one is read whole by get(), or by the restore's helper; one the reader
            # asked for meanwhile, it read itself)
            if len(raw) < _CHUNK and index >= self._taken:
                ready[oid] = raw


def _damaged(oid: str, why: str) -> RepoError:
    return RepoError(f"vault object {oid} is missing or damaged: {why}", hint=HINT)


def _inflate_blob(oid: str, raw: bytes) -> tuple[bytes, int]:
    """Inflate a loose object, check it is the blob oid names; (object, where content starts)."""
    try:
        if len(raw) > _LARGE:
            # Its header gives the size: inflate once into a buffer of that size, instead of
            # growing one by copies (a large dump is tens of MB).
            peek = zlib.decompressobj().decompress(raw, 64)
            nul = peek.find(b"\0")
            size = peek[peek.find(b" ") + 1:nul]
            whole = zlib.decompress(raw, bufsize=nul + 1 + int(size)) if nul > 0 and \
                size.isdigit() else zlib.decompress(raw)
        else:
            whole = zlib.decompress(raw)
    except zlib.error:
        raise _damaged(oid, "truncated or not a zlib stream") from None
    nul = whole.find(b"\0", 0, 32)
    kind, _, size = whole[:max(nul, 0)].partition(b" ")
    if kind != b"blob":
        if nul > 0 and size.isdigit():
            raise RepoError(f"vault object {oid} is not a file", hint=HINT)
        raise _damaged(oid, "bad header")
    if not size.isdigit() or int(size) != len(whole) - nul - 1:
        raise _damaged(oid, "wrong size")
    if hashlib.sha1(whole).hexdigest() != oid:
        raise _damaged(oid, "its content does not match its id")
    return whole, nul + 1


def tree_files(repo: VaultRepo, commit_id: str) -> FileMap:
    """repo.files(commit_id), read from loose objects by hand (repo.files when any is not)."""
    files: FileMap = {}
    objects = os.fspath(repo.path / "objects")
    commit = loose_body(objects, commit_id, b"commit")
    if commit is None or not commit.startswith(b"tree ") or commit[45:46] != b"\n":
        return repo.files(commit_id)
    stack = [(commit[5:45].decode("ascii"), "")]
    while stack:
        oid, prefix = stack.pop()
        body = loose_body(objects, oid, b"tree")
        if body is None:
            return repo.files(commit_id)
        try:
            for mode, name, entry in tree_entries(body):
                path = prefix + name.decode("utf-8")
                if mode == 0o40000:
                    stack.append((entry, path + "/"))
                else:
                    files[path] = (entry, mode)
        except ValueError:  # an entry that cannot be read, a name that is not UTF-8
            return repo.files(commit_id)
    return files


def tree_entries(body: bytes) -> Iterator[tuple[int, bytes, str]]:
    """A tree object's entries: (mode, name, id); ValueError for one that cannot be read (no
    space or NUL where one must be, a bad mode, an id cut short)."""
    i, end = 0, len(body)
    while i < end:  # entries: b"<mode> <name>\0<20-byte id>"
        space = body.index(b" ", i)
        nul = body.index(b"\0", space)
        entry = body[nul + 1:nul + 21]
        if len(entry) != 20:
            raise ValueError("an entry's id is cut short")
        yield int(body[i:space], 8), body[space + 1:nul], entry.hex()
        i = nul + 21


def commit_info(repo: VaultRepo, oid: str) -> CommitInfo:
    """repo's CommitInfo of a commit, read from its loose object by hand (VaultRepo reads any
    other: packed, unusual, or not a commit, which it reports)."""
    return loose_commit(repo, oid) or repo.resolve(oid)


def first_parent_line(repo: VaultRepo, start: str) -> Iterator[CommitInfo]:
    """repo.walk_first_parent(start), read from loose objects by hand while they are loose."""
    oid: str | None = start
    while oid is not None:
        info = loose_commit(repo, oid)
        if info is None:
            yield from repo.walk_first_parent(oid)
            return
        yield info
        oid = info.parents[0] if info.parents else None


def loose_commit(repo: VaultRepo, oid: str) -> CommitInfo | None:
    """The commit as VaultRepo describes it (pygit2's message: leading newlines dropped), or
    None for anything but a whole, checked loose commit in the layout git writes."""
    if len(oid) != 40 or not set(oid) <= HEX:
        return None
    body = loose_body(os.fspath(repo.path / "objects"), oid, b"commit")
    if body is None:
        return None
    head, blank, message = body.partition(b"\n\n")
    parents: list[str] = []
    when: int | None = None
    for line in head.split(b"\n"):
        key, _, value = line.partition(b" ")
        if key == b"parent" and len(value) == 40 and set(value.decode("latin-1")) <= HEX:
            parents.append(value.decode("ascii"))
        elif key == b"committer":
            stamp = value.rsplit(b" ", 2)
            if len(stamp) != 3 or not stamp[1].isdigit():
                return None
            when = int(stamp[1])
        elif key in (b"parent", b"encoding"):
            return None  # (an odd parent line, or a message in another encoding)
    try:
        text = message.decode("utf-8").lstrip("\n")
    except UnicodeDecodeError:
        return None
    if not blank or when is None:
        return None
    return CommitInfo(id=oid, time=datetime.fromtimestamp(when, timezone.utc),
                      summary=text.split("\n", 1)[0], message=text, parents=tuple(parents))


def loose_body(objects: str, oid: str, kind: bytes) -> bytes | None:
    """The body of a whole, checked loose object of that kind; None for anything else."""
    try:
        with open(f"{objects}/{oid[:2]}/{oid[2:]}", "rb", buffering=0) as handle:
            whole = zlib.decompress(handle.read())
    except (OSError, zlib.error):
        return None
    nul = whole.find(b"\0", 0, 32)
    if nul < 0 or whole[:nul] != kind + b" " + str(len(whole) - nul - 1).encode() or \
            hashlib.sha1(whole).hexdigest() != oid:
        return None
    return whole[nul + 1:]
