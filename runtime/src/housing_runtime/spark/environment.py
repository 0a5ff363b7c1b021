"""What a local Spark run needs (Java, pyspark) and the local session's settings.

On a cluster (spark-submit, Databricks, EMR, Dataproc) the platform provides both and its own
settings; this module only checks and configures the session that the job starts itself.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from housing_runtime.errors import EnvironmentFault

# Spark 4 runs on Java 17 and 21.
SUPPORTED_JAVA = (17, 21)
JAVA_HINT = "on Debian or Ubuntu: apt-get install openjdk-17-jre-headless (or set JAVA_HOME)"
PYSPARK_HINT = "`make spark-env` installs requirements-spark.txt into the project's venv"
# Rows per Arrow batch handed to a task: bounds each task's memory whatever the file layout.
ARROW_BATCH_ROWS = 65_536


def java_command() -> str | None:
    """The java Spark's launcher will run: $JAVA_HOME/bin/java if JAVA_HOME is set, else PATH's."""
    home = os.environ.get("JAVA_HOME")
    if home:
        candidate = Path(home) / "bin" / "java"
        return str(candidate) if os.access(candidate, os.X_OK) else None
    return shutil.which("java")


def java_major(java: str) -> int | None:
    """The major version `java -version` reports (17 for "17.0.15", 8 for "1.8.0_402")."""
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=60).stderr
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.search(r'version "(\d+)(?:\.(\d+))?', out)
    if not m:
        return None
    major = int(m.group(1))
    return int(m.group(2) or 0) if major == 1 else major


def check_java() -> None:
    java = java_command()
    if java is None:
        where = (
            f"JAVA_HOME={os.environ['JAVA_HOME']!r} has no bin/java"
            if os.environ.get("JAVA_HOME")
            else "no `java` on PATH"
        )
        raise EnvironmentFault(
            f"Spark needs a Java {' or '.join(map(str, SUPPORTED_JAVA))} runtime and there is "
            f"none ({where}); {JAVA_HINT}"
        )
    major = java_major(java)
    if major is None or major < SUPPORTED_JAVA[0]:
        raise EnvironmentFault(
            f"{java} is Java {major or 'of an unknown version'}; Spark 4 needs Java "
            f"{' or '.join(map(str, SUPPORTED_JAVA))}: {JAVA_HINT}"
        )


def check_pyspark() -> None:
    try:
        import pyspark  # noqa: F401
    except ImportError:
        raise EnvironmentFault(f"pyspark is not installed in {sys.executable}; {PYSPARK_HINT}") from None


def submitted() -> bool:
    """True when spark-submit (or a platform) started this process and owns the session."""
    return "PYSPARK_GATEWAY_PORT" in os.environ or "SPARK_REMOTE" in os.environ


def local_conf(master: str) -> dict[str, str]:
    """Settings for a session this job starts itself: loopback only, no web UI, no progress bar."""
    return {
        "spark.master": master,
        "spark.app.name": "housing-score",
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.driver.host": "127.0.0.1",
        "spark.driver.bindAddress": "127.0.0.1",
        # A data error is not worth retrying: local[N] already tries each task once.
        "spark.task.maxFailures": "1",
    }


@contextlib.contextmanager
def stderr_to_devnull() -> Iterator[None]:
    """File descriptor 2 points at /dev/null while the JVM starts, so that the JVM (and the Python
    workers it forks) inherit that: their warnings and stack traces never reach the user, whose
    one line is the job's own. The Python process gets its own stderr back at once."""
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def local_session(master: str, log_level: str = "off"):
    """A SparkSession on this machine (``master`` local[N] or a cluster URL), after checking
    that Java and pyspark are there; one line if not. ``log_level`` off silences Spark's own
    output; error, warn or info show Spark's log at that level on stderr."""
    check_pyspark()
    check_java()
    # The workers run this Python (pyspark reads only the environment for it): PATH's python3
    # may lack onnxruntime.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    from pyspark.sql import SparkSession

    builder = SparkSession.builder
    for key, value in local_conf(master).items():
        builder = builder.config(key, value)
    try:
        with stderr_to_devnull() if log_level == "off" else contextlib.nullcontext():
            spark = builder.getOrCreate()
    except Exception as err:  # Py4J and the launcher raise their own types
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise EnvironmentFault(f"Spark did not start ({first})") from None
    if log_level != "off":
        spark.sparkContext.setLogLevel(log_level.upper())
    return spark
