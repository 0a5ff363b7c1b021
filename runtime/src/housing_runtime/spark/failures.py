"""A failed Spark job as one line: a task's UserError as raised, Spark's classified errors as the
user's (exit 2), anything else as the machine's (exit 1)."""

from __future__ import annotations

import re

from housing_runtime.errors import SHOWN_CHARS, EnvironmentFault, UserError

# How a task's UserError appears in the Python worker's traceback that Spark hands back:
# its qualified name (housing_runtime.errors.UserError), read from the class so a move follows.
USER_ERROR_LINE = re.compile(re.escape(f"{UserError.__module__}.{UserError.__qualname__}") + r": (.+)")
# Root causes that are the machine's, whatever Spark condition wraps them: I/O, network, the
# JVM's own errors (out of memory), Hadoop's and the cloud SDKs' clients.
MACHINE_CAUSES = (
    "java.io.",
    "java.net.",
    "java.lang.OutOfMemoryError",
    "java.lang.StackOverflowError",
    "java.lang.InternalError",
    "org.apache.hadoop.",
    "com.amazonaws.",
    "software.amazon.",
    "com.google.cloud.",
    "com.azure.",
)
# The lines of Spark's CSV header check that say what differs and where.
CSV_HEADER_DETAIL = re.compile(r"^\s*(Expected: .+|CSV file: .+)$", re.MULTILINE)


def java_causes(err: BaseException) -> list[tuple[str | None, str, str]]:
    """(condition, Java class, message) of a Py4J error's Java exception and each of its causes,
    outermost first; empty for other errors."""
    causes: list[tuple[str | None, str, str]]
    causes, java = [], getattr(err, "java_exception", None)
    while java is not None and len(causes) < 20:
        try:
            condition = java.getCondition() if hasattr(java, "getCondition") else None
        except Exception:  # not a SparkThrowable
            condition = None
        causes.append((condition, java.getClass().getName(), str(java.getMessage() or "")))
        java = java.getCause()
    return causes


def first_line(text: str, default: str) -> str:
    """The first non-empty line of ``text``, cut to SHOWN_CHARS."""
    line = next((line.strip() for line in text.splitlines() if line.strip()), default)
    return line if len(line) <= SHOWN_CHARS else line[: SHOWN_CHARS - 3] + "..."


class OutputExists(UserError):
    """Spark found the output path there (made after the job's own check): someone else's."""


def translated(err: BaseException) -> UserError:
    """A failed Spark job as one line: a task's UserError as it was raised; Spark's classified
    errors (a path, a schema, a malformed record, a file that is not Parquet) as the user's, by
    their most specific condition and the root cause; anything else, such as a full disk, as the
    machine's, by its root cause."""
    text = str(err)
    found = USER_ERROR_LINE.search(text)
    if found:
        return UserError(found.group(1).strip())
    causes = java_causes(err)  # Py4J round trips: walked once
    condition = (err.getCondition() if hasattr(err, "getCondition") else None) or next(
        (c for c, _, _ in reversed(causes) if c), None
    )
    if condition == "PATH_ALREADY_EXISTS":
        return OutputExists(
            "the output path already exists; the job writes a new folder, all or nothing: "
            "choose a new path, or remove the old one yourself"
        )
    causes = java_causes(err)
    header = CSV_HEADER_DETAIL.findall("\n".join([text, *(m for _, _, m in causes)]))
    if header:  # which file, and which name differs: the lines after Spark's first
        return UserError(
            f"a CSV file's header differs from the first file's ({'; '.join(dict.fromkeys(header))}); "
            "every file needs the same header"
        )
    if causes:
        classified = [(c, m) for c, _, m in causes if c]
        root_class, root = causes[-1][1], causes[-1][2]
        detail = first_line(classified[-1][1], condition or "") if classified else ""  # classified: condition set
        if root and not causes[-1][0]:
            detail = f"{detail}: {first_line(root, root_class)}" if detail else first_line(root, root_class)
        if classified and not root_class.startswith(MACHINE_CAUSES):
            return UserError(f"Spark refused the job: {detail}{hint_for(condition)}")
        return EnvironmentFault(f"Spark failed: {detail or first_line(text, type(err).__name__)}")
    if condition:
        return UserError(f"Spark refused the job: {first_line(text, condition)}{hint_for(condition)}")
    return EnvironmentFault(f"Spark failed: {first_line(text, type(err).__name__)}")


def hint_for(condition: str | None) -> str:
    """What to do about the conditions whose words alone do not say it."""
    if condition and "FILE_FOOTER" in condition:
        return "; if the input is CSV, pass --input-format csv"
    if condition and condition.startswith(("CANNOT_MERGE", "FAILED_READ_FILE.PARQUET_COLUMN_DATA_TYPE")):
        return "; the Parquet files give a column different types (pyarrow.parquet.read_schema shows each file's)"
    return ""
