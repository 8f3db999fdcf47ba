"""Atomic batch writes: every file appears whole at its name, and nothing else is left behind."""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from pathlib import Path

import pytest

from vault.fsutil import BatchWriter, OutsideRoots, Staged


@pytest.mark.parametrize("unnamed", [True, False], ids=["o_tmpfile", "named-temp"])
def test_stage_and_publish_create_and_replace(tmp_path: Path, unnamed: bool) -> None:
    folder = tmp_path / "out" / "deep"
    (tmp_path / "out").mkdir()
    with BatchWriter(unnamed=unnamed) as writer:
        writer.publish(writer.stage(str(folder), "new.md", b"new\n", 0o644), exists=False)
        writer.publish(writer.stage(str(folder), "run.sh", b"#!/bin/sh\n", 0o755), exists=False)
        (folder / "old.md").write_text("old\n")
        writer.publish(writer.stage(str(folder), "old.md", memoryview(b"replaced\n"), 0o644))
        staged = writer.stage(str(folder), "raced.md", b"ours\n", 0o644)
        (folder / "raced.md").write_text("appeared meanwhile\n")
        writer.publish(staged, exists=False)  # replaced, as a rename would
        writer.write(str(folder), "empty", b"", 0o644)
    assert sorted(os.listdir(folder)) == ["empty", "new.md", "old.md", "raced.md", "run.sh"]
    assert (folder / "new.md").read_bytes() == b"new\n"
    assert (folder / "old.md").read_bytes() == b"replaced\n"
    assert (folder / "raced.md").read_bytes() == b"ours\n"
    assert (folder / "empty").read_bytes() == b""
    assert (folder / "run.sh").stat().st_mode & 0o777 == 0o755
    assert (folder / "new.md").stat().st_mode & 0o777 == 0o644


@pytest.mark.parametrize("unnamed", [True, False], ids=["o_tmpfile", "named-temp"])
def test_discarded_files_leave_nothing(tmp_path: Path, unnamed: bool) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.md").write_text("kept\n")
    with BatchWriter(unnamed=unnamed) as writer:
        writer.discard(writer.stage(str(out), "keep.md", b"never\n", 0o644))
        writer.discard(writer.stage(str(out), "gone.md", b"never\n", 0o644))
    assert os.listdir(out) == ["keep.md"]
    assert (out / "keep.md").read_text() == "kept\n"


def test_a_folder_swapped_for_a_symlink_is_not_written_through(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    folder = tmp_path / "out"
    folder.mkdir()
    with BatchWriter() as writer:
        folder.rmdir()
        folder.symlink_to(outside)
        with pytest.raises(OSError):
            writer.stage(str(folder), "x.md", b"x\n", 0o644)
    assert list(outside.iterdir()) == []


def test_threads_stage_into_one_folder_at_once(tmp_path: Path) -> None:
    names = [f"f{i:04d}.md" for i in range(400)]
    out = tmp_path / "out"
    with BatchWriter() as writer:
        staged: dict[str, Staged] = {}

        def stage(part: list[str]) -> None:
            for name in part:
                staged[name] = writer.stage(str(out), name, name.encode(), 0o644)

        threads = [threading.Thread(target=stage, args=(names[k::2],)) for k in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for name in names:
            writer.publish(staged[name], exists=False)
    assert sorted(os.listdir(out)) == names
    assert all((out / n).read_bytes() == n.encode() for n in names)


@pytest.mark.parametrize("exists", [False, True])
def test_an_unnamed_file_that_cannot_be_linked_is_copied(tmp_path: Path, exists: bool) -> None:
    """Where /proc will not link an O_TMPFILE file, its bytes go to a named temp file."""
    out = tmp_path / "out"
    out.mkdir()
    if exists:
        (out / "x.md").write_text("old\n")
    with BatchWriter() as writer:
        dir_fd = os.open(out, os.O_RDONLY | os.O_DIRECTORY)
        try:
            # O_EXCL: this unnamed file may never be linked, as on a system that forbids it
            fd = os.open(out, os.O_TMPFILE | os.O_RDWR | os.O_EXCL, 0o640)
        except OSError:
            os.close(dir_fd)
            pytest.skip("no O_TMPFILE here")
        os.write(fd, b"copied\n" * 10_000)
        writer.publish(Staged(str(out), dir_fd, "x.md", fd, None), exists=exists)
        os.close(dir_fd)
    assert os.listdir(out) == ["x.md"]
    assert (out / "x.md").read_bytes() == b"copied\n" * 10_000
    assert (out / "x.md").stat().st_mode & 0o777 == 0o640 & ~current_umask()


def current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def test_remove_makes_no_folder_and_a_batch_stays_in_its_roots(tmp_path: Path) -> None:
    root = tmp_path / "root"
    with BatchWriter(roots=(str(root),)) as writer:
        writer.remove(str(root / "gone"), "x.md")  # nothing there: nothing made
        assert not root.exists()
        writer.write(str(root / "a"), "x.md", b"x", 0o644)
        with pytest.raises(OutsideRoots):
            writer.write(str(tmp_path / "elsewhere"), "x.md", b"x", 0o644)
    assert (root / "a" / "x.md").read_bytes() == b"x"
    assert not (tmp_path / "elsewhere").exists()


def test_one_flush_per_filesystem(tmp_path: Path) -> None:
    shm = Path("/dev/shm")
    if not shm.is_dir() or shm.stat().st_dev == tmp_path.stat().st_dev:
        pytest.skip("needs a second filesystem (/dev/shm)")
    other = Path(tempfile.mkdtemp(dir=shm))
    try:
        with BatchWriter() as writer:
            for folder in (tmp_path / "a", tmp_path / "b", other):
                writer.write(str(folder), "x.md", b"x", 0o644)
            flushed = writer.filesystems()
        assert {Path(f).stat().st_dev for f in flushed} == {tmp_path.stat().st_dev,
                                                              other.stat().st_dev}
        assert len(flushed) == 2
    finally:
        shutil.rmtree(other)
