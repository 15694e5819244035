"""prepare_run_dir: a run folder the system refuses is one line naming the path and the reason."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from segcvae import cli
from segcvae.engine.run_dir import RunDirError, prepare_run_dir, remove_partial_writes


def test_a_new_nested_folder_is_made_and_an_existing_one_kept(tmp_path: Path) -> None:
    run = tmp_path / "runs" / "a"
    assert prepare_run_dir(run) == run and run.is_dir()
    (run / "last.pt").write_text("mine")
    assert prepare_run_dir(str(run)) == run
    assert [p.name for p in run.iterdir()] == ["last.pt"]  # the write check leaves nothing


def test_a_file_in_the_way(tmp_path: Path) -> None:
    blocker = tmp_path / "notes.txt"
    blocker.write_text("x")
    with pytest.raises(RunDirError, match=f"run folder {blocker} is an existing file"):
        prepare_run_dir(blocker)
    with pytest.raises(RunDirError) as info:
        prepare_run_dir(blocker / "runs" / "a", what="--out")
    message = str(info.value)
    assert message.startswith(f"--out {blocker / 'runs' / 'a'}: cannot create")
    assert f"{blocker} is a file" in message and "Not a directory" in message
    assert "\n" not in message and not (blocker.parent / "runs").exists()


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux /proc")
def test_a_path_the_system_will_not_create() -> None:
    with pytest.raises(RunDirError) as info:  # even root cannot make folders in /proc
        prepare_run_dir("/proc/segcvae-test/run")
    message = str(info.value)
    assert message.startswith("run folder /proc/segcvae-test/run: cannot create /proc/segcvae-test")
    assert "(No such file or directory)" in message and "choose another location" in message
    with pytest.raises(RunDirError, match=r"run folder /proc/self: cannot write in it \("):
        prepare_run_dir("/proc/self")  # exists, but nothing can be written there


def test_a_full_disk_is_found_by_the_write_check(tmp_path: Path, monkeypatch) -> None:
    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(RunDirError) as info:
        prepare_run_dir(tmp_path / "r")
    assert str(info.value) == (
        f"run folder {tmp_path / 'r'}: cannot write in it (No space left on device); choose "
        "another location"
    )
    assert list((tmp_path / "r").iterdir()) == []  # the probe is removed


def test_the_command_line_reports_it_as_a_users_mistake(tmp_path: Path, capsys) -> None:
    assert RunDirError in cli._errors() and issubclass(RunDirError, OSError)
    try:
        prepare_run_dir("/proc/segcvae-test/run", what="--out")
    except cli._errors() as e:
        code = cli._fail(cli._message(e), cli.USAGE_ERROR)
    assert code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: --out /proc/segcvae-test/run: cannot")


def test_only_the_temporary_files_of_unfinished_writes_are_removed(tmp_path: Path) -> None:
    partial = [".last.pt.x1.tmp", ".best.pt.y2.tmp", "metrics.jsonl.tmp", "train_log.jsonl.tmp"]
    kept = ["last.pt", "best.pt", "metrics.jsonl", "other.tmp", ".other.pt.z.tmp"]
    for name in partial + kept:
        (tmp_path / name).write_text(name)
    assert sorted(remove_partial_writes(tmp_path)) == sorted(partial)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(kept)
    assert remove_partial_writes(tmp_path) == []
