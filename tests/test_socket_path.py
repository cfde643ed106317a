"""Where the engine socket goes: ``--socket`` never changes an existing directory's mode, a new
directory is private, unsafe places are refused with a message, the default stays private."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT
from test_engine_server import Client, start_engine

from engine.errors import DriftwaveError
from engine.protocol import runtime_dir, socket_path
from engine.server import prepare_socket, socket_directory


def octal(permissions: int) -> str:
    return f"{permissions:04o}"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def existing(path: Path, permissions: int) -> Path:
    path.mkdir()
    os.chmod(path, permissions)  # exactly, whatever the umask
    return path


def listen(path: Path) -> socket.socket:
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen()
    return server


@pytest.mark.parametrize("permissions", [0o755, 0o700, 0o1777, 0o1770], ids=octal)
def test_an_existing_directory_keeps_its_mode_and_takes_the_socket(tmp_path, permissions):
    directory = existing(tmp_path / "place", permissions)
    path = directory / "engine.sock"
    prepare_socket(path)
    listen(path).close()
    assert mode(directory) == permissions


def test_a_new_directory_is_created_private(tmp_path):
    path = tmp_path / "new" / "deeper" / "engine.sock"
    old_umask = os.umask(0o022)
    try:
        prepare_socket(path)
    finally:
        os.umask(old_umask)
    assert mode(path.parent) == 0o700
    assert not path.exists()


@pytest.mark.parametrize("permissions", [0o775, 0o770, 0o757, 0o777], ids=octal)
def test_a_directory_others_can_write_without_the_sticky_bit_is_refused(tmp_path, permissions):
    directory = existing(tmp_path / "open", permissions)
    with pytest.raises(DriftwaveError) as raised:
        prepare_socket(directory / "engine.sock")
    message = str(raised.value)
    assert f"the socket directory {directory} is writable by others (mode {permissions:04o})" in message
    assert f"chmod go-w {directory}" in raised.value.hint
    assert mode(directory) == permissions and not (directory / "engine.sock").exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="making a directory owned by another user needs root")
def test_a_directory_of_another_user_is_refused(tmp_path):
    directory = existing(tmp_path / "theirs", 0o755)
    os.chown(directory, 65534, 65534)
    with pytest.raises(DriftwaveError, match="belongs to another user") as raised:
        prepare_socket(directory / "engine.sock")
    assert str(directory) in str(raised.value) and "directory of yours" in raised.value.hint


def test_a_file_at_the_socket_path_is_refused_not_deleted(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("keep me")
    with pytest.raises(DriftwaveError, match="exists and is not a socket"):
        prepare_socket(path)
    assert path.read_text() == "keep me"


def test_a_stale_socket_is_removed_and_a_live_one_refused(tmp_path):
    path = tmp_path / "engine.sock"
    listen(path).close()  # closed: nobody answers
    prepare_socket(path)
    assert not path.exists()
    server = listen(path)
    try:
        with pytest.raises(DriftwaveError, match="already running"):
            prepare_socket(path)
    finally:
        server.close()


def test_the_default_directory_is_our_own_and_private(tmp_path, monkeypatch):
    monkeypatch.delenv("DRIFTWAVE_SOCKET", raising=False)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(existing(tmp_path / "xdg", 0o755)))
    path = socket_path()
    assert path.parent == runtime_dir() == tmp_path / "xdg" / "driftwave"
    prepare_socket(path)
    assert mode(path.parent) == 0o700 and mode(tmp_path / "xdg") == 0o755
    os.chmod(path.parent, 0o755)  # loosened by someone: our own directory is made private again
    assert socket_directory(path) == path.parent and mode(path.parent) == 0o700


@pytest.mark.parametrize("permissions", [0o755, 0o1777], ids=octal)
def test_a_real_engine_leaves_an_existing_directory_as_it_was(tmp_path, permissions):
    directory = existing(tmp_path / "shared", permissions)
    path = directory / "engine.sock"
    process = start_engine(path)
    try:
        client = Client(path)
        assert client.snapshot()["pid"] == process.pid
        assert mode(directory) == permissions and mode(path) == 0o600
        client.send("shutdown")
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
    assert mode(directory) == permissions and not path.exists()


def test_the_engine_refuses_an_unsafe_directory_with_a_message(tmp_path):
    directory = existing(tmp_path / "open", 0o777)
    result = subprocess.run(
        [sys.executable, str(ROOT / "main.py"), "engine", "--socket", str(directory / "engine.sock")],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=60,
    )
    assert result.returncode == 2
    assert f"error: the socket directory {directory} is writable by others" in result.stderr
    assert "Traceback" not in result.stderr and mode(directory) == 0o777
