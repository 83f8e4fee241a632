"""One long-running process of a loopback deployment: started in its own session, its output in a log file,
stopped by its process group and its descendants' (never by name)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import psutil  # a dependency of accelerate and peft, both fedmllm's

from fedmllm.deploy.commands import Command
from fedmllm.errors import FedmllmError


@dataclass
class Process:
    """A long-running process a deployment started; its stdout and stderr go to `log`."""

    name: str
    command: Command
    popen: subprocess.Popen[bytes]
    log: Path
    started: float  # time.monotonic() at start
    ready_seconds: float | None = None  # set once the launcher saw it ready (SuperLink: /health answered)
    stopped: bool = False
    _log_file: IO[bytes] | None = field(default=None, repr=False)

    @classmethod
    def start(cls, name: str, command: Command, env: Mapping[str, str], log: Path) -> Process:
        """Start `command` with the full environment `env`, appending its output to `log`."""
        log.parent.mkdir(parents=True, exist_ok=True)
        log_file = log.open("ab")
        try:
            # own session: the process and the superexec/app processes it spawns form one group we can clean up
            popen = subprocess.Popen(
                command.argv,
                env=dict(env),
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        except BaseException:
            log_file.close()
            raise
        return cls(name, command, popen, log, time.monotonic(), _log_file=log_file)

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def returncode(self) -> int | None:
        """None while running."""
        return self.popen.poll()

    def wait(self, timeout: float) -> int:
        """Wait for the process to exit; raise FedmllmError (with the log's tail) if it is still running."""
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired as err:
            raise FedmllmError(f"{self.name} (pid {self.pid}) still running after {timeout}s\n{self.tail()}") from err

    def text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace") if self.log.exists() else ""

    def tail(self, chars: int = 3000) -> str:
        return f"--- {self.log} (last {chars} chars) ---\n{self.text()[-chars:]}"

    def descendants(self) -> list[psutil.Process]:
        """Every process this one started, and theirs, while they are still its descendants (an orphan is adopted
        by init). Its group does not hold them all: the SuperLink starts its SuperExec, which starts the
        ServerApps, in a session of its own; that SuperExec notices its parent is gone within 0.2 s, but only
        stops once a busy ServerApp has, seconds later."""
        try:
            return psutil.Process(self.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []

    def stop(self, grace: float) -> int:
        """SIGTERM the process (a SuperNode then deactivates cleanly), SIGKILL its group after `grace` seconds,
        then the group of any descendant still running (`descendants`).

        Only the process group this process leads (its own session) and its descendants' are signalled, never
        anything by name.
        """
        if self.stopped:  # its pid (and group id) may belong to someone else by now
            return int(self.popen.returncode)
        children = self.descendants()
        if self.returncode is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                os.killpg(self.pid, signal.SIGKILL)
                self.popen.wait(timeout=grace)
        # children (superexec, serverapp/clientapp) that outlived their parent
        with contextlib.suppress(ProcessLookupError):  # raised when the group is empty: everything already exited
            os.killpg(self.pid, signal.SIGKILL)
        for child in children:
            with contextlib.suppress(ProcessLookupError, psutil.NoSuchProcess):
                group = os.getpgid(child.pid)
                if child.is_running() and group != os.getpgrp():  # psutil compares start times: a reused pid
                    os.killpg(group, signal.SIGKILL)  # is not ours; and never this process's own group
        self.stopped = True
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        return int(self.popen.returncode)
