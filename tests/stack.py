"""Run `pingtrack` service commands as real child processes for end-to-end tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

# Every service a test starts: a pg_cron round only where a test asks for one,
# and names resolved only from a hosts file the test pins, never by DNS.
TEST_ENVIRONMENT = {"PINGTRACK_SCHEDULE_LADDER": "false", "PINGTRACK_RESOLVE_SYSTEM": "false"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class ServiceProcess:
    """One `pingtrack <command>` child with its own environment and log file."""

    command: str
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    def start(self) -> None:
        # Spools beside the logs: a restarted prober finds its own, tests never share one.
        spool = {"PINGTRACK_SPOOL_DIR": str(self.log_path.parent / "spool")}
        env = {**os.environ, **TEST_ENVIRONMENT, **spool, **self.env}
        self.log_file = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "pingtrack", self.command],
            env=env,
            stdout=self.log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM, wait for a clean exit; return the exit code."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(
                f"{self.command} ignored SIGTERM for {timeout}s\n{self.log()}"
            ) from None
        finally:
            self.log_file.close()
        return code

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait()
        self.log_file.close()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]


def wait_healthy(base_url: str, process: ServiceProcess, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        assert process.process is not None
        if process.process.poll() is not None:
            raise AssertionError(f"{process.command} exited early:\n{process.log()}")
        try:
            response = httpx.get(f"{base_url}/health", timeout=2)
            if response.status_code == 200:
                return
            last = response.text
        except httpx.HTTPError as exc:
            last = exc
        time.sleep(0.2)
    raise AssertionError(f"API not healthy within {timeout}s: {last}\n{process.log()}")
