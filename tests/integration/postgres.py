"""A real, throw-away PostgreSQL server for the integration tests (issue 14): initdb in a temporary
directory, listening only on a unix socket there. PostgreSQL refuses to run as root, so as root the
cluster is created and run as the unprivileged user `nobody`. Binaries come from
$PREWARM_POSTGRES_BIN, else /usr/lib/postgresql/15/bin; `missing()` says why they cannot run."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Optional

DEFAULT_BIN = "/usr/lib/postgresql/15/bin"
USER = "prewarm"  # The database superuser initdb creates.
PORT = 5432       # Only names the socket file, in a private directory.


def bin_dir() -> Path:
    return Path(os.environ.get("PREWARM_POSTGRES_BIN") or DEFAULT_BIN)


def missing() -> Optional[str]:
    """Why PostgreSQL cannot run here (its binaries are missing), or None."""
    for name in ("initdb", "pg_ctl", "postgres"):
        if not os.access(bin_dir() / name, os.X_OK):
            return (f"PostgreSQL binaries not found in {bin_dir()} (install Debian's postgresql "
                    f"package, or set PREWARM_POSTGRES_BIN)")
    return None


def _as_nobody() -> dict:
    """subprocess arguments that run the child as nobody when this process is root (set by
    subprocess itself after fork: safe with other threads running, unlike a preexec_fn)."""
    if os.geteuid() != 0:
        return {}
    nobody = pwd.getpwnam("nobody")
    return {"user": nobody.pw_uid, "group": nobody.pw_gid, "extra_groups": []}


class Postgres:
    """start() / stop() / restart(); uri(db) for prewarmd's --store."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="prewarm-pg-"))
        if os.geteuid() == 0:
            nobody = pwd.getpwnam("nobody")
            os.chown(self.dir, nobody.pw_uid, nobody.pw_gid)
        self.log = self.dir / "postgres.log"
        self.running = False
        self._run([str(bin_dir() / "initdb"), "-D", str(self.dir / "data"), "-U", USER,
                   "--auth=trust", "--locale=C", "-E", "UTF8"])

    def _run(self, argv: list[str]) -> None:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd="/",
                              **_as_nobody())
        if proc.returncode != 0:
            tail = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise RuntimeError(f"{' '.join(argv)} exited with {proc.returncode}: {proc.stdout}"
                               f"{proc.stderr}\n{tail}")

    def start(self) -> "Postgres":
        self._run([str(bin_dir() / "pg_ctl"), "-D", str(self.dir / "data"), "-w", "-s",
                   "-l", str(self.log), "-o",
                   # Small, and no /dev/shm (64 MiB in containers; tests run several at once).
                   f"-k {self.dir} -p {PORT} -c listen_addresses='' -c max_connections=200 "
                   f"-c shared_buffers=16MB -c dynamic_shared_memory_type=mmap",
                   "start"])
        self.running = True
        return self

    def stop(self, mode: str = "fast") -> None:
        """Stops the server: connections drop; `fast` rolls back open transactions."""
        self._run([str(bin_dir() / "pg_ctl"), "-D", str(self.dir / "data"), "-w", "-s",
                   "-m", mode, "stop"])
        self.running = False

    def uri(self, db: str = "postgres") -> str:
        return f"postgresql://{USER}@/{db}?host={self.dir}&port={PORT}"

    def psql(self, sql: str, db: str = "postgres") -> str:
        """Runs SQL through psql (client tools ship with the server); the unaligned output."""
        psql = shutil.which("psql") or str(bin_dir() / "psql")
        proc = subprocess.run([psql, "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql,
                               self.uri(db)], capture_output=True, text=True, timeout=60)
        if proc.returncode != 0:
            raise RuntimeError(f"psql {sql!r}: {proc.stderr}")
        return proc.stdout.strip()

    def close(self) -> None:
        if self.running:
            try:
                self.stop("immediate")
            except RuntimeError:
                pass
        shutil.rmtree(self.dir, ignore_errors=True)
