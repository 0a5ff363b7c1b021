"""A failed Spark job as one line: a task's UserError as raised, Spark's classified errors as the
user's (exit 2), anything else as the machine's (exit 1)."""
from __future__ import annotations

import re

from pipeline.errors import EnvironmentFault, UserError, shown

# How a task's UserError appears in the Python worker's traceback that Spark hands back.
USER_ERROR_LINE = re.compile(r"pipeline\.errors\.UserError: (.+)")


def java_causes(err: Exception) -> list[tuple[str | None, str, str]]:
    """(condition, Java class, message) of a Py4J error's Java exception and each of its causes,
    outermost first; empty for other errors."""
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
    return shown(next((line.strip() for line in text.splitlines() if line.strip()), default))[1:-1]


def condition_of(err: Exception) -> str | None:
    """Spark's error condition for ``err``: pyspark's own, else the deepest in its Java causes."""
    condition = err.getCondition() if hasattr(err, "getCondition") else None
    if condition:
        return condition
    return next((c for c, _, _ in reversed(java_causes(err)) if c), None)


def translated(err: Exception) -> UserError:
    """A failed Spark job as one line: a task's UserError as it was raised; Spark's classified
    errors (a path, a schema, a malformed record, a file that is not Parquet) as the user's, by
    their most specific condition and the root cause; anything else, such as a full disk, as the
    machine's, by its root cause."""
    text = str(err)
    found = USER_ERROR_LINE.search(text)
    if found:
        return UserError(found.group(1).strip())
    condition = condition_of(err)
    if condition == "PATH_ALREADY_EXISTS":
        return UserError("the output path already exists (made after the job checked it); the job writes a "
                         "new folder, all or nothing: choose a new path, or remove the old one yourself")
    causes = java_causes(err)
    if causes:
        classified = [(c, m) for c, _, m in causes if c]
        root_class, root = causes[-1][1], causes[-1][2]
        detail = first_line(classified[-1][1], condition) if classified else ""
        if root and not causes[-1][0]:
            detail = f"{detail}: {first_line(root, root_class)}" if detail else first_line(root, root_class)
        if classified and not root_class.startswith("java.io."):
            hint = "; if the input is CSV, pass --input-format csv" if "FILE_FOOTER" in condition else ""
            return UserError(f"Spark refused the job: {detail}{hint}")
        return EnvironmentFault(f"Spark failed: {detail or first_line(text, type(err).__name__)}")
    if condition:
        return UserError(f"Spark refused the job: {first_line(text, condition)}")
    return EnvironmentFault(f"Spark failed: {first_line(text, type(err).__name__)}")
