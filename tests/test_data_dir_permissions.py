"""The embedded default's data directory holds password hashes, live sessions and the secret key:
it and the database files are the owner's alone, also under a permissive umask (issue 12)."""

import os
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FILES = ("sage.sqlite3", "sage.sqlite3-wal", "sage.sqlite3-shm", "secret_key")


def manage(data_dir: Path, *args: str) -> None:
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "CELERY_BROKER_URL", "SECRET_KEY"}}
    env["SAGE_DATA_DIR"] = str(data_dir)
    result = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=180, preexec_fn=lambda: os.umask(0o022))
    assert result.returncode == 0, result.stdout + result.stderr


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_new_data_directory_and_database_are_owner_only(tmp_path):
    data = tmp_path / "var"
    manage(data, "migrate", "--no-input", "-v0")
    assert mode(data) == 0o700
    assert mode(data / "sage.sqlite3") == 0o600 and mode(data / "secret_key") == 0o600
    # SQLite gives the WAL and shared-memory files the database's mode when it creates them.
    old = os.umask(0o022)
    try:
        db = sqlite3.connect(data / "sage.sqlite3")
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("CREATE TABLE probe (x)")
        assert mode(data / "sage.sqlite3-wal") == 0o600 and mode(data / "sage.sqlite3-shm") == 0o600
        db.close()
    finally:
        os.umask(old)


def test_an_existing_readable_data_directory_is_tightened(tmp_path):
    data = tmp_path / "var"
    data.mkdir(mode=0o755)
    data.chmod(0o755)
    for name in FILES:
        (data / name).write_bytes(b"" if name != "secret_key" else b"k" * 64)
        (data / name).chmod(0o644)
    manage(data, "check")
    assert mode(data) == 0o700
    assert {name: mode(data / name) for name in FILES} == dict.fromkeys(FILES, 0o600)
