"""A private PostgreSQL cluster and a private RabbitMQ node for fault tests.

Fault tests stop and restart their database and broker; the machine's shared
ones serve everyone else's tests, so these run from a temporary directory on
their own ports and are torn down afterwards. Both skip with a reason when
their binaries are missing.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from shared.migrate import migrate_database
from shared.settings import REPO_ROOT
from tests.stack import free_port

PG_BIN = Path(os.environ.get("PINGTRACK_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))
RABBIT_BIN = Path(os.environ.get("PINGTRACK_TEST_RABBIT_BIN", "/usr/lib/rabbitmq/bin"))
IS_ROOT = os.geteuid() == 0


def _as_user(user: str, argv: list[str]) -> list[str]:
    """Root cannot run these servers: drop to their own account."""
    return ["runuser", "-u", user, "--", *argv] if IS_ROOT else argv


def _temp_dir(prefix: str, owner: str) -> Path:
    root = Path(tempfile.mkdtemp(prefix=prefix))
    if IS_ROOT:
        shutil.chown(root, owner, owner)
    return root


@dataclass
class PrivatePostgres:
    """One PostgreSQL cluster (trust auth, 127.0.0.1 only) in a temp dir."""

    root: Path
    port: int = field(default_factory=free_port)

    @property
    def data(self) -> Path:
        return self.root / "data"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def _ctl(self, *args: str, timeout: float = 60) -> None:
        argv = [str(PG_BIN / "pg_ctl"), "-D", str(self.data), *args]
        subprocess.run(_as_user("postgres", argv), check=True, capture_output=True, timeout=timeout)

    def init(self) -> None:
        argv = [str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "postgres"]
        argv += ["--auth=trust", "-E", "UTF8", "--no-sync"]
        subprocess.run(_as_user("postgres", argv), check=True, capture_output=True, timeout=120)
        options = [
            "listen_addresses = '127.0.0.1'",
            f"port = {self.port}",
            f"unix_socket_directories = '{self.root}'",
            # Durability against a power cut is not what these tests are about.
            "fsync = off",
            "full_page_writes = off",
        ]
        if (PG_BIN.parent / "lib" / "pg_cron.so").exists():
            options += ["shared_preload_libraries = 'pg_cron'", "cron.database_name = 'postgres'"]
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write("\n".join(options) + "\n")

    def start(self) -> None:
        self._ctl("-l", str(self.root / "server.log"), "-w", "-t", "60", "start")

    def stop(self, mode: str = "fast") -> None:
        """`fast` closes sessions and checkpoints; `immediate` is a crash."""
        self._ctl("-m", mode, "-w", "-t", "60", "stop")

    def running(self) -> bool:
        argv = [str(PG_BIN / "pg_ctl"), "-D", str(self.data), "status"]
        return subprocess.run(_as_user("postgres", argv), capture_output=True).returncode == 0

    def log(self) -> str:
        path = self.root / "server.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    async def new_database(self, migrations: Path = REPO_ROOT / "migrations") -> str:
        """A fresh, migrated database; returns its URL."""
        url = self.url(f"pt_fault_{uuid.uuid4().hex[:10]}")
        await migrate_database(url, migrations)
        return url


@dataclass
class PrivateRabbit:
    """One RabbitMQ node with its own name, ports, data and cookie, no plugins."""

    root: Path
    name: str = field(default_factory=lambda: f"pt-fault-{uuid.uuid4().hex[:6]}@localhost")
    port: int = field(default_factory=free_port)
    dist_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    def _env(self) -> dict[str, str]:
        return {
            # Its own HOME: its own Erlang cookie, shared with rabbitmqctl below.
            "HOME": str(self.root),
            "RABBITMQ_NODENAME": self.name,
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            # The system config pins the listener to 5672: use our own.
            "RABBITMQ_CONFIG_FILE": str(self.root / "rabbitmq.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.root / "enabled_plugins"),
            "RABBITMQ_MNESIA_BASE": str(self.root / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.root / "log"),
            "RABBITMQ_PID_FILE": str(self.root / "node.pid"),
        }

    def _argv(self, program: str, *args: str) -> list[str]:
        env = [f"{k}={v}" for k, v in self._env().items()]
        return _as_user("rabbitmq", ["env", *env, str(RABBIT_BIN / program), *args])

    def init(self) -> None:
        (self.root / "rabbitmq.conf").write_text(
            f"listeners.tcp.local = 127.0.0.1:{self.port}\nloopback_users = none\n"
        )
        (self.root / "enabled_plugins").write_text("[].\n")
        if IS_ROOT:
            for path in self.root.iterdir():
                shutil.chown(path, "rabbitmq", "rabbitmq")

    def ctl(self, *args: str, timeout: float = 60) -> str:
        argv = self._argv("rabbitmqctl", "-n", self.name, *args)
        done = subprocess.run(argv, capture_output=True, timeout=timeout, cwd=self.root)
        if done.returncode != 0:
            raise RuntimeError(f"rabbitmqctl {' '.join(args)}: {done.stderr.decode()[-2000:]}")
        return done.stdout.decode()

    def start(self, timeout: float = 60) -> None:
        with (self.root / "server.out").open("ab") as out:
            self.process = subprocess.Popen(
                self._argv("rabbitmq-server"),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.root,
            )
        deadline = time.monotonic() + timeout
        while not (self.root / "node.pid").exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"RabbitMQ node did not start:\n{self.log()}")
            time.sleep(0.1)
        self.ctl("wait", "--timeout", str(int(timeout)), str(self.root / "node.pid"))

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.ctl("stop", str(self.root / "node.pid"))
        self.process.wait(30)
        self.process = None
        (self.root / "node.pid").unlink(missing_ok=True)

    def kill(self) -> None:
        """The last resort: SIGKILL the Erlang VM itself (not just the runuser wrapper)."""
        pid_file = self.root / "node.pid"
        if pid_file.exists():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid_file.read_text().strip()), signal.SIGKILL)
        if self.process is not None:
            self.process.wait(10)
            self.process = None

    def log(self) -> str:
        path = self.root / "server.out"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""


def _require(binary: Path, what: str) -> None:
    if not binary.exists():
        pytest.skip(f"{what} not installed ({binary} missing)")
    if IS_ROOT and shutil.which("runuser") is None:
        pytest.skip("runuser missing: cannot drop root to run a private server")


@pytest.fixture(scope="module", name="private_postgres")
def private_postgres_fixture() -> Iterator[PrivatePostgres]:
    _require(PG_BIN / "initdb", "PostgreSQL server")
    server = PrivatePostgres(_temp_dir("pt-pg-", "postgres"))
    try:
        server.init()
        server.start()
        yield server
    finally:
        if server.running():
            server.stop("immediate")
        shutil.rmtree(server.root, ignore_errors=True)


@pytest.fixture(scope="module", name="private_rabbit")
def private_rabbit_fixture() -> Iterator[PrivateRabbit]:
    _require(RABBIT_BIN / "rabbitmq-server", "RabbitMQ server")
    node = PrivateRabbit(_temp_dir("pt-rmq-", "rabbitmq"))
    try:
        node.init()
        node.start()
        yield node
    finally:
        try:
            node.stop()
        except (RuntimeError, subprocess.SubprocessError):
            node.kill()
            raise
        finally:
            shutil.rmtree(node.root, ignore_errors=True)


def new_database(server: PrivatePostgres) -> str:
    return asyncio.run(server.new_database())
