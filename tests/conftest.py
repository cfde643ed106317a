"""Test setup: no network, offline model hubs, deterministic threads."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("NUMBA_CACHE_DIR", str(ROOT / ".numba-cache"))
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ["XDG_CACHE_HOME"] = str(ROOT / ".test-cache")  # the tiny model is built here once

import torch  # noqa: E402

torch.set_num_threads(1)  # 1 vs 2 threads differ in the last bits: keep runs comparable


class NetworkBlocked(OSError):
    pass


_connect = socket.socket.connect


_getaddrinfo = socket.getaddrinfo
LOOPBACK = ("127.0.0.1", "::1", "localhost")


def _guarded_connect(self: socket.socket, address, *args, **kwargs):
    if self.family == socket.AF_UNIX or (isinstance(address, tuple) and address[0] in LOOPBACK):
        return _connect(self, address, *args, **kwargs)
    raise NetworkBlocked(f"tests may not open network connections (tried {address!r})")


def _guarded_getaddrinfo(host, *args, **kwargs):
    if host in LOOPBACK:
        return _getaddrinfo(host, *args, **kwargs)
    raise NetworkBlocked(f"tests may not resolve host names (tried {host!r})")


@pytest.fixture(autouse=True, scope="session")
def _no_network():
    """Every test runs offline: only Unix sockets and this machine's loopback may connect."""
    socket.socket.connect = _guarded_connect
    socket.getaddrinfo = _guarded_getaddrinfo
    yield
    socket.socket.connect = _connect
    socket.getaddrinfo = _getaddrinfo


@pytest.fixture(autouse=True)
def _analysis_cache(tmp_path_factory, monkeypatch):
    """Each test analyses its tracks afresh: audio.envelopes.analyze_file caches in a dir of its own."""
    monkeypatch.setenv("DRIFTWAVE_ANALYSIS_CACHE", str(tmp_path_factory.mktemp("analysis")))


@pytest.fixture
def data_dir() -> Path:
    return DATA


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 60):
    """Run ``main.py`` in a real subprocess; returns the CompletedProcess."""
    import subprocess

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, str(ROOT / "main.py"), *args],
        capture_output=True,
        text=True,
        cwd=cwd or ROOT,
        env=env,
        timeout=timeout,
    )
