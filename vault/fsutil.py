"""Atomic file writes: temp file in the same folder, fsync, rename, fsync the folder."""

from __future__ import annotations

import ctypes
import errno
import os
import stat
from pathlib import Path
from typing import Callable, NamedTuple, TypeVar

_libc: ctypes.CDLL | None = None
_UMASK: list[int] = []


def _write_all(fd: int, data: bytes | memoryview, mode: int) -> None:
    """Write all of data to a file just created with mode (which the umask may have cut)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
    if mode & _umask():
        os.fchmod(fd, mode)  # the umask took bits away


def _umask() -> int:
    """The process umask (read once: reading it means setting it)."""
    if not _UMASK:
        current = os.umask(0o022)
        os.umask(current)
        _UMASK.append(current)
    return _UMASK[0]


def new_file_mode(executable: bool) -> int:
    """The permission bits of a file the vault brings back where there was none: 0o644 or
    0o755 (git records no more than the executable bit), less what the umask takes away, as
    for any new file (a user whose umask is 077 gets 0o600)."""
    return (0o755 if executable else 0o644) & ~_umask()


def restored_mode(target: str, executable: bool) -> int:
    """The permission bits of a restored file: those of the live file it replaces (a memory
    kept private stays private), with the executable bits the vault recorded; for a new file,
    new_file_mode."""
    try:
        st = os.stat(target, follow_symlinks=False)
    except OSError:
        st = None
    if st is None or not stat.S_ISREG(st.st_mode):
        return new_file_mode(executable)
    perms = st.st_mode & 0o777
    return perms | (perms & 0o444) >> 2 if executable else perms & ~0o111


def running_as_root() -> bool:
    """True when this process runs as root: what it writes is root's unless given away."""
    return hasattr(os, "geteuid") and os.geteuid() == 0


def owner_for(target: str | Path, dir_fd: int | None = None) -> tuple[int, int] | None:
    """The (uid, gid) a file written at target gets when this process runs as root: the live
    file's own (a memory file of the agent's user stays the agent's: a root cron job must not
    take it away from its agent), else, for a new file, its folder's (as the agent would have
    made it); None when not root, or when root owns it anyway. dir_fd: target is a name in
    that open folder."""
    if not running_as_root():
        return None
    try:
        st = os.stat(target, dir_fd=dir_fd, follow_symlinks=False)
        if not stat.S_ISREG(st.st_mode):
            raise FileNotFoundError
    except OSError:
        try:
            st = os.fstat(dir_fd) if dir_fd is not None else os.stat(Path(target).parent)
        except OSError:
            return None
    return _unless_roots(st)


def _unless_roots(st: os.stat_result) -> tuple[int, int] | None:
    owner = (st.st_uid, st.st_gid)
    return None if owner == (os.geteuid(), os.getegid()) else owner


def give_owner(fd: int, owner: tuple[int, int] | None) -> None:
    """fchown fd to owner (from owner_for) when there is one. Best effort: a filesystem that
    keeps no owners (or refuses) leaves the file root's, written all the same."""
    if owner is not None:
        try:
            os.fchown(fd, *owner)
        except OSError:
            pass


def adopt_owner(folder: str | Path) -> None:
    """Run as root: give a folder just made the owner of the folder it is in (see owner_for)."""
    if running_as_root():
        try:
            give_owner_of(folder, _unless_roots(os.stat(os.path.dirname(
                os.path.abspath(folder)))))
        except OSError:
            pass


def give_owner_of(path: str | Path, owner: tuple[int, int] | None,
                  dir_fd: int | None = None) -> None:
    """give_owner for a path (not followed if it is a symlink)."""
    if owner is not None:
        try:
            os.chown(path, *owner, dir_fd=dir_fd, follow_symlinks=False)
        except OSError:
            pass


def exchange(a: str | Path, b: str | Path) -> bool:
    """Swap the files at the names a and b in one atomic step (Linux renameat2 with
    RENAME_EXCHANGE): neither name is ever missing, and whatever was at b (even a file put
    there a moment ago) is still there afterwards, at a. False where the system or the
    filesystem cannot do it (nothing moved then: the caller renames instead)."""
    libc = _load_libc()
    renameat2 = getattr(libc, "renameat2", None) if libc is not None else None
    if renameat2 is None:
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                          ctypes.c_uint]
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP):
        return False  # an old kernel, or a filesystem without it
    raise OSError(err, os.strerror(err), str(b))


_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def _load_libc() -> ctypes.CDLL | None:
    global _libc
    if _libc is None:
        try:
            _libc = ctypes.CDLL(None, use_errno=True)  # the running process: libc is in it
        except OSError:
            return None
    return _libc


def private_folder(folder: Path, home: Path) -> None:
    """Make folder, in the data dir home (or home itself), private as it is made: home and
    every folder made between them 0700 (mkdir's parents take the umask's mode: the data dir
    was made 0755 by the first file a sync cached in it). Folders already there stay as they
    are."""
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    missing = []
    while folder != home and folder != folder.parent and not folder.exists():
        missing.append(folder)
        folder = folder.parent
    for made in reversed(missing):
        made.mkdir(mode=0o700, exist_ok=True)


def atomic_write(path: Path, data: bytes, *, mode: int | None = None,
                 durable: bool = True) -> None:
    """Replace path with data so a crash leaves either the old or the new file, never a mix.

    durable=False skips the per-file fsyncs, for batches that end with one sync_filesystem().
    """
    directory = path.parent
    # One temp name per process and target: O_EXCL fails loudly if a stale one is in the way
    # (left by a crash), and then it is removed and tried once more.
    tmp = directory / f".{path.name}.{os.getpid()}.vault-tmp"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(tmp, flags, 0o600 if mode is None else mode)
    except FileExistsError:
        os.unlink(tmp)
        fd = os.open(tmp, flags, 0o600 if mode is None else mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        if mode is not None and mode & _umask():
            os.chmod(tmp, mode)  # the umask took bits away
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    if durable:
        fsync_dir(directory)


class OutsideRoots(OSError):
    """A BatchWriter with roots was asked to write somewhere else."""


class Staged(NamedTuple):
    """A file written in full but not yet in place (BatchWriter.stage, then publish)."""

    folder: str
    dir_fd: int
    name: str
    fd: int  # an unnamed O_TMPFILE file, or -1
    tmp: str | None  # or a temp name in the folder


class BatchWriter:
    """atomic_write(durable=False) for many files.

    stage() writes a file's bytes to a temp file in its own folder; publish() puts it at its
    name in one atomic step, so a crash leaves the old file or the new one, never a torn one.
    The caller ends the batch with one sync_filesystem() per folder in filesystems(). Where
    the system allows, the temp file is unnamed (O_TMPFILE) and a new file is published with
    linkat, an existing one with a rename: no stray temp names after a crash and fewer
    directory updates. Elsewhere it is a named temp file and a rename, like atomic_write.
    Folders are made and opened once; names are relative to the open folder
    (openat/linkat/renameat). One thread at a time.
    """

    _DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0)
    _FILE_FLAGS = (os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
                   | getattr(os, "O_NOFOLLOW", 0))
    # Read-write: should linking it fail, its bytes can still be copied to a named temp file.
    _TMPFILE_FLAGS = getattr(os, "O_TMPFILE", 0) | os.O_RDWR | os.O_CLOEXEC
    # Errors that mean "no O_TMPFILE here" (old kernel, or a filesystem without it).
    _NO_TMPFILE = frozenset({errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL, errno.ENOTSUP})
    _MAX_IDLE = 32  # open folders kept with nothing staged in them

    def __init__(self, *, unnamed: bool = True, roots: tuple[str, ...] = ()) -> None:
        self._folders: dict[str, list[int]] = {}  # folder -> [fd, files staged and unpublished]
        # Below a root, folders are opened (and made) one part at a time, none followed if it
        # is a symlink: a folder swapped for a link after the caller checked the path is
        # refused (ELOOP), not written through. Longest first: the innermost root applies.
        self._roots = sorted((r.rstrip("/") + "/" for r in roots), key=len, reverse=True)
        self._made: list[str] = []  # folders this batch made, parents first
        self.changes = 0  # files put in place, moved or removed so far
        # Folders below this one (a staging folder nobody sees yet) make no changes that count
        self.uncounted: str | None = None
        self._devices: dict[int, str] = {}  # a folder on each filesystem written to
        self._suffix = f".{os.getpid()}.vault-tmp"
        self._root = running_as_root()  # files and folders then get their owners (owner_for)
        self._owners: dict[str, tuple[int, int] | None] = {}  # (_folder_owner)
        # unnamed=False: named temp files only (as where O_TMPFILE is missing)
        self._tmpfile = unnamed and hasattr(os, "O_TMPFILE") and os.path.isdir("/proc/self/fd")
        _umask()  # read once, up front

    def __enter__(self) -> BatchWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def make_folder(self, folder: str) -> None:
        """Make folder (and its parents) if missing, as stage() would."""
        self._release(folder, self._acquire(folder))

    def stage(self, folder: str, name: str, data: bytes | memoryview, mode: int) -> Staged:
        """Write data to a temp file in folder, to become folder/name (created with mode)."""
        dir_fd = self._acquire(folder)
        try:
            fd, tmp = self._create(dir_fd, name, mode)
            try:
                _write_all(fd, data, mode)
                if self._root:  # the live file's owner, or its folder's: see owner_for
                    give_owner(fd, owner_for(name, dir_fd))
            except BaseException:
                os.close(fd)
                if tmp is not None:
                    _unlink_quietly(tmp, dir_fd)
                raise
            if tmp is not None:
                os.close(fd)
                fd = -1
        except BaseException:
            self._release(folder, dir_fd)
            raise
        return Staged(folder, dir_fd, name, fd, tmp)

    def write_new(self, folder: str, name: str, data: bytes | memoryview, mode: int) -> None:
        """Write a new file at folder/name itself, without a temp file: only in a folder that
        nobody else sees yet (a staging folder that is flushed, then moved into place whole).
        Plain creates cost a third less than unnamed temp files linked into place."""
        dir_fd = self._acquire(folder)
        try:
            fd = os.open(name, self._FILE_FLAGS, mode, dir_fd=dir_fd)
            try:
                _write_all(fd, data, mode)
                if self._root:  # a new file: its folder's owner
                    give_owner(fd, self._folder_owner(folder, dir_fd))
            finally:
                os.close(fd)
            self._count(folder)
        finally:
            self._release(folder, dir_fd)

    def _folder_owner(self, folder: str, dir_fd: int) -> tuple[int, int] | None:
        """owner_for a new file in folder, looked up once a folder (a restore writes thousands
        of files into a few folders)."""
        try:
            return self._owners[folder]
        except KeyError:
            owner = self._owners[folder] = _unless_roots(os.fstat(dir_fd))
            return owner

    def publish(self, staged: Staged, *, exists: bool = True) -> None:
        """Put a staged file at its name; exists=False: the name is expected to be free."""
        folder, dir_fd, name, fd, tmp = staged
        try:
            if fd >= 0:
                if not exists:
                    try:
                        os.link(f"/proc/self/fd/{fd}", name, dst_dir_fd=dir_fd,
                                follow_symlinks=True)
                        self._count(folder)
                        return
                    except OSError:
                        pass  # it appeared since (replaced below, as a rename would), or
                        # /proc will not link it (copied below)
                tmp = self._name_unnamed(fd, dir_fd, name)
            assert tmp is not None
            try:
                os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
            except BaseException:
                _unlink_quietly(tmp, dir_fd)
                raise
            self._count(folder)
        finally:
            if fd >= 0:
                os.close(fd)
            self._release(folder, dir_fd)

    def discard(self, staged: Staged) -> None:
        """Drop a staged file that will not be published."""
        folder, dir_fd, _name, fd, tmp = staged
        if fd >= 0:
            os.close(fd)  # an unnamed file goes away with its last descriptor
        if tmp is not None:
            _unlink_quietly(tmp, dir_fd)
        self._release(folder, dir_fd)

    def write(self, folder: str, name: str, data: bytes | memoryview, mode: int) -> None:
        """stage() and publish() in one step."""
        self.publish(self.stage(folder, name, data, mode))

    def move_in(self, folder: str, src: str, name: str, mode: int | None = None,
                replace: bool = True) -> None:
        """Rename folder/src over folder/name (first giving it mode, if one is given, and then,
        run as root, the owner of the file at name or of folder: as stage() does), in folder
        as this writer opened (and checked) it: a folder swapped for a symlink since is not
        followed. replace=False: FileExistsError rather than replace anything at name."""
        dir_fd = self._acquire(folder)
        try:
            if mode is not None:
                fd = os.open(src, os.O_RDONLY | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0),
                             dir_fd=dir_fd)
                try:
                    if self._root:
                        give_owner(fd, owner_for(name, dir_fd))
                    os.fchmod(fd, mode)
                finally:
                    os.close(fd)
            if replace:
                os.replace(src, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
            else:
                _move_no_replace(src, name, dir_fd)
            self._count(folder)
        finally:
            self._release(folder, dir_fd)

    def link_in(self, folder: str, src: str, name: str) -> None:
        """A second name, folder/name, for folder/src (a hard link; never over anything)."""
        dir_fd = self._acquire(folder)
        try:
            os.link(src, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd, follow_symlinks=False)
            self._count(folder)
        finally:
            self._release(folder, dir_fd)

    def remove(self, folder: str, name: str) -> None:
        """Remove folder/name if it is there, in folder as this writer opened it (a folder
        that is not there is not made)."""
        try:
            dir_fd = self._acquire(folder, create=False)
        except FileNotFoundError:
            return
        try:
            os.unlink(name, dir_fd=dir_fd)
            self._count(folder)
        except FileNotFoundError:
            pass
        finally:
            self._release(folder, dir_fd)

    def _count(self, folder: str) -> None:
        if self.uncounted is None or not (folder + "/").startswith(self.uncounted):
            self.changes += 1

    def filesystems(self) -> list[str]:
        """A folder on each filesystem this batch opened a folder on (one flush each)."""
        return list(self._devices.values())

    def remove_new_folders(self) -> None:
        """Remove the folders this batch made that are still empty (after a failed batch); the
        others stay listed (a later call tries them again)."""
        kept = []
        for folder in reversed(self._made):
            try:
                os.rmdir(folder)
            except FileNotFoundError:
                pass
            except OSError:
                kept.append(folder)  # not empty: it stays
        self._made = kept[::-1]

    def close(self) -> None:
        """Close every folder (files still staged are the caller's to discard first)."""
        folders, self._folders = self._folders, {}
        for fd, _users in folders.values():
            os.close(fd)

    def _name_unnamed(self, fd: int, dir_fd: int, name: str) -> str:
        """Give an unnamed file a temp name in its folder (to be renamed over name)."""
        tmp = f".{name}{self._suffix}"
        try:
            _replacing_stale(tmp, dir_fd, lambda: os.link(
                f"/proc/self/fd/{fd}", tmp, dst_dir_fd=dir_fd, follow_symlinks=True))
            return tmp
        except OSError:
            pass  # /proc will not link it here: copy it to a named temp file instead
        self._tmpfile = False
        copy, tmp = self._named(dir_fd, name, os.fstat(fd).st_mode & 0o7777)
        try:
            offset = 0
            while chunk := os.pread(fd, 1 << 20, offset):
                view = memoryview(chunk)
                while view:
                    view = view[os.write(copy, view):]
                offset += len(chunk)
            st = os.fstat(fd)
            if self._root:
                give_owner(copy, _unless_roots(st))
            os.fchmod(copy, st.st_mode & 0o7777)
        except BaseException:
            _unlink_quietly(tmp, dir_fd)
            raise
        finally:
            os.close(copy)
        return tmp

    def _create(self, dir_fd: int, name: str, mode: int) -> tuple[int, str | None]:
        if self._tmpfile:
            try:
                return os.open(".", self._TMPFILE_FLAGS, mode, dir_fd=dir_fd), None
            except OSError as exc:
                if exc.errno not in self._NO_TMPFILE:
                    raise
                self._tmpfile = False
        return self._named(dir_fd, name, mode)

    def _named(self, dir_fd: int, name: str, mode: int) -> tuple[int, str]:
        tmp = f".{name}{self._suffix}"
        return _replacing_stale(tmp, dir_fd, lambda: os.open(
            tmp, self._FILE_FLAGS, mode, dir_fd=dir_fd)), tmp

    def _acquire(self, folder: str, create: bool = True) -> int:
        entry = self._folders.get(folder)
        if entry is not None:
            entry[1] += 1
            return entry[0]
        fd = self._open_folder(folder, create)
        try:
            self._devices.setdefault(os.fstat(fd).st_dev, folder)
        except OSError:
            os.close(fd)
            raise
        if len(self._folders) >= self._MAX_IDLE:
            for other, (other_fd, users) in list(self._folders.items()):
                if not users:
                    os.close(other_fd)
                    del self._folders[other]
        self._folders[folder] = [fd, 1]
        return fd

    def _open_folder(self, folder: str, create: bool) -> int:
        """Open folder, making any part that is missing."""
        root = next((r for r in self._roots if (folder + "/").startswith(r)), None)
        if root is None:
            if self._roots:  # a batch with roots writes below them, nowhere else
                raise OutsideRoots(errno.EPERM, "not below the folders this batch writes to",
                                   folder)
            try:
                return os.open(folder, self._DIR_FLAGS)
            except FileNotFoundError:
                if not create:
                    raise
                self._make(folder)
                return os.open(folder, self._DIR_FLAGS)
        try:  # the root itself is the caller's choice, links and all
            fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except FileNotFoundError:
            if not create:
                raise
            self._make(root)
            fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        where = root.rstrip("/")
        try:
            for part in folder[len(root):].split("/"):
                if not part:
                    continue
                where += "/" + part
                try:
                    child = os.open(part, self._DIR_FLAGS, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        raise
                    try:
                        os.mkdir(part, 0o777, dir_fd=fd)
                        self._made.append(where)
                        if self._root:  # the owner of the folder it is made in
                            give_owner_of(part, _unless_roots(os.fstat(fd)), dir_fd=fd)
                    except FileExistsError:
                        pass  # made by someone else meanwhile
                    child = os.open(part, self._DIR_FLAGS, dir_fd=fd)
                except NotADirectoryError:  # a file, or a symlink (O_NOFOLLOW says ENOTDIR)
                    if stat.S_ISLNK(os.lstat(part, dir_fd=fd).st_mode):
                        raise OSError(errno.ELOOP, "a folder is a symbolic link", where) from None
                    raise
                os.close(fd)
                fd = child
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _make(self, folder: str) -> None:
        """os.makedirs(folder), noting each folder it makes."""
        missing = []
        current = folder.rstrip("/") or "/"
        while current and not os.path.lexists(current):
            missing.append(current)
            current = os.path.dirname(current)
        os.makedirs(folder, exist_ok=True)
        self._made.extend(reversed(missing))
        if self._root:
            for made in reversed(missing):  # parents first: each takes its parent's owner
                adopt_owner(made)

    def _release(self, folder: str, dir_fd: int) -> None:
        entry = self._folders.get(folder)
        if entry is not None and entry[0] == dir_fd:
            entry[1] -= 1


def _move_no_replace(src: str, name: str, dir_fd: int) -> None:
    """Rename src to name in one folder, refusing to replace anything at name: a hard link
    then an unlink for a file (atomic: link fails if the name is taken), a checked rename for
    what cannot be linked (a folder)."""
    try:
        os.link(src, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd, follow_symlinks=False)
    except FileExistsError:
        raise
    except OSError:  # a folder (EPERM), or a filesystem without hard links
        if _exists_at(name, dir_fd):
            raise FileExistsError(errno.EEXIST, "already exists", name) from None
        os.rename(src, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        return
    os.unlink(src, dir_fd=dir_fd)


def _exists_at(name: str, dir_fd: int) -> bool:
    try:
        os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


_T = TypeVar("_T")


def _replacing_stale(tmp: str, dir_fd: int, make: Callable[[], _T]) -> _T:
    """make() a temp name; once more after removing the one a crash left there (a process that
    had our pid: the names are per process)."""
    try:
        return make()
    except FileExistsError:
        os.unlink(tmp, dir_fd=dir_fd)
        return make()


def _unlink_quietly(name: str, dir_fd: int) -> None:
    try:
        os.unlink(name, dir_fd=dir_fd)
    except OSError:
        pass


def fsync_dir(directory: Path) -> None:
    """Make a rename in directory durable."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def sync_filesystem(path: Path) -> None:
    """Flush the filesystem holding path (syncfs: one call for a whole batch of writes)."""
    libc = _load_libc()
    try:
        if libc is not None:
            fd = os.open(path, os.O_RDONLY)
            try:
                if libc.syncfs(fd) == 0:
                    return
            finally:
                os.close(fd)
    except (OSError, AttributeError):
        pass
    os.sync()


def pid_alive(pid: int) -> bool:
    """True while a process with this id runs (what tells a dead writer's temp files)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # alive, someone else's
    return True
