"""Ray for batches: a local runtime bound to loopback (or a cluster by address), its logs kept in
the batch folder, and the board through which a batch's tasks report to the driver.

Ray is imported only here and only when a batch runs.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from engine.errors import DriftwaveError

LOOPBACK_ONLY = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "disabled"}


@contextmanager
def ray_runtime(address: str | None, *, cpus: int, logs: Path) -> Iterator[Any]:
    """Ray, started here with ``cpus`` CPUs (and this host's GPUs) when ``address`` is None, or
    connected to the cluster at ``address`` ("auto": the one running on this host). A local
    runtime listens on 127.0.0.1 only, shows no dashboard, and its logs are copied to ``logs``."""
    if address not in (None, "auto"):
        check_reachable(address)
    import ray

    temporary = Path(tempfile.mkdtemp(prefix="dw-ray-"))  # short: Ray's socket paths must fit 107 bytes
    options: dict[str, Any] = {"include_dashboard": False, "configure_logging": False, "log_to_driver": False}
    try:
        if address is None:
            with _environment(LOOPBACK_ONLY):  # read when Ray starts its processes
                ray.init(num_cpus=cpus, _temp_dir=str(temporary), **options)
        else:
            ray.init(address=address, **options)
    except ConnectionError as error:
        shutil.rmtree(temporary, ignore_errors=True)
        raise DriftwaveError(
            f"cannot connect to the Ray cluster at {address}: {error}", hint="start it with `ray start --head`"
        ) from None
    try:
        yield ray
    finally:
        ray.shutdown()
        if address is None:
            shutil.copytree(temporary / "session_latest" / "logs", logs, dirs_exist_ok=True, symlinks=False)
        shutil.rmtree(temporary, ignore_errors=True)


@contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def check_reachable(address: str, timeout: float = 5.0) -> None:
    """One line when nothing answers at ``address`` (``host:port`` or ``ray://host:port``)."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise DriftwaveError(
            f"--ray {address!r} is not an address", hint="give host:port of the cluster's head (e.g. 10.0.0.5:6379)"
        )
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as error:
        raise DriftwaveError(
            f"the Ray cluster at {address} cannot be reached: {error.strerror or error}",
            hint="check the address and that `ray start --head` runs there",
        ) from None


def gpus_available(ray) -> int:
    return int(ray.cluster_resources().get("GPU", 0))


class Board:
    """A batch's noticeboard (a Ray actor): tasks post each variant's newest progress and read
    whether to stop; the driver reads the posts and asks to stop."""

    def __init__(self) -> None:
        self.posts: dict[str, dict[str, Any]] = {}
        self.lines: list[tuple[str, str]] = []
        self.stopping = False

    def post(self, name: str, update: dict[str, Any]) -> None:
        entry = self.posts.setdefault(name, {"attempts": 0})
        if update.pop("started", False):
            entry["attempts"] += 1
        entry.update(update)

    def say(self, name: str, line: str) -> None:
        self.lines.append((name, line))

    def read(self) -> tuple[dict[str, dict[str, Any]], list[tuple[str, str]]]:
        """Every variant's newest post, and the lines said since the last read."""
        lines, self.lines = self.lines, []
        return {name: dict(entry) for name, entry in self.posts.items()}, lines

    def stop(self) -> None:
        self.stopping = True

    def should_stop(self) -> bool:
        return self.stopping
