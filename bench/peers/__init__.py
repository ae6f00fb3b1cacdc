"""The peer tools the bench suite runs next to pgflow, each in a virtual environment of its own
under .pgflow/bench/ (made on first use; never a pgflow dependency):

- dlt: `dlt[postgres,sql-database]` + pyarrow, driven by dlt_run.py (sql_table with the
  pyarrow backend into dlt's postgres destination);
- Sling: the PyPI package `sling-linux-amd64` (it ships the sling binary; the package `sling`
  downloads it at run time instead), run as `sling run --src-conn ... --tgt-conn ...` with
  the connections given as URLs in environment variables.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from bench.common import Finished, run_tree, tail

REPO = Path(__file__).resolve().parents[2]
VENVS = REPO / ".pgflow" / "bench"
DLT_REQUIREMENTS = ("dlt[postgres,sql-database]==1.31.0", "pyarrow")
SLING_REQUIREMENTS = ("sling-linux-amd64==1.4.11",)
DLT_SCRIPT = Path(__file__).with_name("dlt_run.py")


def venv_python(name: str, requirements: tuple[str, ...], check: str) -> Path:
    """The interpreter of .pgflow/bench/<name>, made with `requirements` on first use; `check`
    is Python code that must run in it.

    Raises RuntimeError (with pip's complaint) when it cannot be made."""
    venv = VENVS / name
    python, marker = venv / "bin" / "python", venv / ".installed"
    wanted = " ".join(requirements)
    if python.exists() and marker.exists() and marker.read_text() == wanted:
        return python
    print(f"setting up {venv} (pip install {wanted}) ...", flush=True)
    shutil.rmtree(venv, ignore_errors=True)
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    steps = [[sys.executable, "-m", "venv", str(venv)], [*pip, *requirements]]
    for step in [*steps, [str(python), "-c", check]]:
        done = subprocess.run(step, capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            errors = [ln for ln in done.stderr.splitlines() if "WARNING" not in ln]
            raise RuntimeError(f"{' '.join(step[:4])} failed:\n{tail(chr(10).join(errors), 8)}")
    marker.write_text(wanted)
    return python


def clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["RUNTIME__DLTHUB_TELEMETRY"] = "false"
    env["SLING_DISABLE_TELEMETRY"] = "true"
    return env


@dataclass
class Dlt:
    """dlt: write_disposition "replace" (the whole table) or "merge" (incremental)."""

    source_uri: str
    sink_uri: str
    table: str
    dataset: str
    disposition: str
    work: Path
    file_format: str | None = None
    version: str = "?"

    @property
    def target(self) -> str:
        return f"{self.dataset}.{self.table}"

    def run(self) -> tuple[Finished, int]:
        """One run: the finished process and the rows dlt loaded."""
        python = venv_python("dlt-venv", DLT_REQUIREMENTS, "import dlt, pyarrow, psycopg2")
        settings = {
            "source_uri": self.source_uri,
            "sink_uri": self.sink_uri,
            "table": self.table,
            "dataset": self.dataset,
            "pipelines_dir": str(self.work / "dlt_pipelines"),
            "write_disposition": self.disposition,
            "file_format": self.file_format,
        }
        done = run_tree(
            [str(python), str(DLT_SCRIPT), json.dumps(settings)], clean_env(), self.work
        )
        if done.returncode != 0:
            raise RuntimeError(f"dlt failed:\n{tail(done.stderr)}")
        report = json.loads(done.stdout.strip().splitlines()[-1])
        self.version = report["dlt_version"]
        return done, int(report["rows"])


def sling_binary() -> Path:
    python = venv_python("sling-venv", SLING_REQUIREMENTS, "import sling_linux_amd64")
    found = subprocess.run(
        [str(python), "-c", "import sling_linux_amd64 as s; print(s.SLING_BIN)"],
        capture_output=True,
        text=True,
        check=True,
    )
    return Path(found.stdout.strip())


@dataclass
class Sling:
    """Sling: `--mode full-refresh`, or `--mode incremental` on primary key id and updated_at."""

    source_uri: str
    sink_uri: str
    table: str
    target: str
    mode: str
    work: Path
    version: str = SLING_REQUIREMENTS[0].split("==")[1]

    def run(self) -> tuple[Finished, int | None]:
        """One run: the finished process and the rows Sling reports (None if it says none)."""
        env = clean_env()
        env["BENCH_SLING_SOURCE"] = with_sslmode(self.source_uri)
        env["BENCH_SLING_TARGET"] = with_sslmode(self.sink_uri)
        env["SLING_HOME_DIR"] = str(self.work / "sling_home")
        cmd = [
            str(sling_binary()),
            "run",
            "--src-conn",
            "BENCH_SLING_SOURCE",
            "--src-stream",
            f"public.{self.table}",
            "--tgt-conn",
            "BENCH_SLING_TARGET",
            "--tgt-object",
            self.target,
            "--mode",
            self.mode,
        ]
        if self.mode == "incremental":
            cmd += ["--primary-key", "id", "--update-key", "updated_at"]
        done = run_tree(cmd, env, self.work)
        if done.returncode != 0:
            raise RuntimeError(f"sling failed:\n{tail(done.stderr + done.stdout)}")
        return done, sling_rows(done.stdout + done.stderr)


def with_sslmode(uri: str) -> str:
    return uri + ("&" if "?" in uri else "?") + "sslmode=disable"


def sling_rows(log: str) -> int | None:
    """The row count of Sling's "inserted N rows" log line."""
    for line in reversed(log.splitlines()):
        words = line.replace(",", "").split()
        for i, word in enumerate(words[:-1]):
            if word == "inserted" and words[i + 1].isdigit():
                return int(words[i + 1])
    return None
