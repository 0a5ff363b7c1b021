"""Where the Spark job reads and writes: which paths are local, the input's format and its CSV
headers, the checks that keep the user's files safe, and the claim that lets a failed job
remove exactly what it made. No Spark import: default_fs_is_local is handed the session."""

from __future__ import annotations

import bz2
import csv
import gzip
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from housing_runtime.errors import UserError, shown
from housing_runtime.files import nearest_existing_folder

FORMATS = ("parquet", "csv")
CSV_SUFFIXES = (".csv", ".csv.gz", ".csv.bz2")
GLOB_CHARS = set("*?[{")
# The files a Parquet write of Spark's makes in its output folder (and their checksums).
SPARK_OUTPUT_FILE = re.compile(r"^\.?(part-\d{5}-[0-9a-f-]{36}.*|_SUCCESS)(\.crc)?$")


def local_path(uri: str, default_fs_local: bool = True) -> Path | None:
    """The file-system path of a local URI, None for any other scheme. A plain path is local
    only where the default file system is (on many clusters it is HDFS)."""
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        return Path(parsed.path)
    if parsed.scheme or not default_fs_local:  # s3a://, gs://, abfss://, hdfs://, or a path on HDFS
        return None
    return Path(uri)


def default_fs_is_local(spark) -> bool:
    """Whether Spark resolves a plain path on this machine's file system (its fs.defaultFS)."""
    try:
        default_fs = spark.sparkContext._jsc.hadoopConfiguration().get("fs.defaultFS") or "file:///"
    except Exception:  # Spark Connect has no SparkContext: assume the cluster's own file system
        return False
    return default_fs.startswith("file:")


def data_files(folder: Path) -> list[Path]:
    """The files Spark reads in a local folder: not its hidden ones (_SUCCESS, .crc), sorted."""
    return sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(("_", ".")))


def input_format(uri: str, given: str, default_fs_local: bool = True) -> str:
    """parquet or csv: as given, else by the name's suffix, else by a local folder's files."""
    if given != "auto":
        return given
    name = uri.rstrip("/").lower()
    if name.endswith(CSV_SUFFIXES):
        return "csv"
    if name.endswith(".parquet"):
        return "parquet"
    path = local_path(uri, default_fs_local)
    if path is not None and path.is_dir():
        names = [p.name.lower() for p in data_files(path)]
        if names and all(n.endswith(CSV_SUFFIXES) for n in names):
            return "csv"
        if names and not all(n.endswith(".parquet") for n in names):
            raise UserError(f"cannot tell whether {shown(uri)} holds Parquet or CSV; pass --input-format")
    return "parquet"


def csv_header(path: Path) -> list[str]:
    """A CSV file's header as Spark reads it: the first record, names trimmed; [] if empty."""
    name = path.name.lower()
    opener = gzip.open if name.endswith(".gz") else bz2.open if name.endswith(".bz2") else open
    try:
        with opener(path, "rt", encoding="utf-8-sig", newline="") as fh:
            return [field.strip() for field in next(csv.reader(fh), [])]
    except (OSError, EOFError, UnicodeDecodeError, csv.Error) as err:
        raise UserError(f"CSV file {shown(str(path))}: its header cannot be read ({shown(str(err))[1:-1]})") from None


def csv_headers_checked(uri: str, default_fs_local: bool = True) -> bool:
    """Check that every local CSV file of the input has the first file's header; True if done.

    Spark applies one file's header to every file by position: files with another column order
    would be silently misread. Its own check (enforceSchema=false) refuses headers it renames,
    such as pandas' empty index name, so local files are checked here and Spark's is kept for
    the rest (remote paths and patterns)."""
    path = local_path(uri, default_fs_local)
    if path is None or GLOB_CHARS & set(uri) or not path.exists():
        return False
    files = [path] if path.is_file() else data_files(path)
    first: tuple[Path, list[str]] | None = None
    for file in files:
        header = csv_header(file)
        if not header:  # an empty file: Spark skips it
            continue
        if first is None:
            first = (file, header)
        elif header != first[1]:
            pairs = enumerate(zip(header, first[1], strict=False))
            at = next((i for i, (a, b) in pairs if a != b), min(len(header), len(first[1])))
            raise UserError(
                f"CSV file {shown(str(file))} has {shown(header[at] if at < len(header) else None)} as "
                f"column {at + 1} of its header where {shown(str(first[0]))} has "
                f"{shown(first[1][at] if at < len(first[1]) else None)}; every file needs the same header"
            )
    return True


def check_paths(input_uri: str, output_uri: str, default_fs_local: bool = True) -> None:
    """Refuse, before Spark starts, an output that would destroy or feed on the input, or that
    exists already (Spark's committer needs a fresh path to be all or nothing)."""
    src, dst = local_path(input_uri, default_fs_local), local_path(output_uri, default_fs_local)
    same, inside = input_uri.rstrip("/"), output_uri.rstrip("/")
    if same == inside:
        raise UserError(f"--output {shown(output_uri)} is the input; choose a new path")
    if (src is None or dst is None) and (inside.startswith(same + "/") or same.startswith(inside + "/")):
        raise UserError(
            f"--output {shown(output_uri)} overlaps the input {shown(input_uri)}; write the predictions somewhere else"
        )
    if src is not None and not GLOB_CHARS & set(input_uri):  # Spark resolves remote paths and patterns
        if not src.exists():
            raise UserError(f"--input {shown(input_uri)} not found")
        if dst is not None:
            src_real, dst_real = src.resolve(), dst.resolve()
            if dst_real == src_real or src_real in dst_real.parents or dst_real in src_real.parents:
                raise UserError(
                    f"--output {shown(output_uri)} overlaps the input {shown(input_uri)}; "
                    "write the predictions somewhere else"
                )
    if dst is not None:
        if dst.exists() or dst.is_symlink():
            raise UserError(
                f"--output {shown(output_uri)} already exists; the job writes a new folder, all or "
                "nothing: choose a new path, or remove the old one yourself"
            )
        blocking = next((a for a in dst.parents if a.exists() or a.is_symlink()), None)
        if blocking is not None and not blocking.is_dir():
            raise UserError(f"--output {shown(output_uri)}: {shown(str(blocking))} is not a folder")


@dataclass(frozen=True)
class OutputClaim:
    """What existed of a local output path before the job: enough to remove exactly what the job
    made, and nothing else. ``folder`` is None for remote outputs (nothing is removed there)."""

    folder: Path | None
    existed: bool
    top_existing: Path | None  # the nearest ancestor that existed before the job

    @classmethod
    def before_job(cls, output_uri: str, default_fs_local: bool = True) -> OutputClaim:
        dst = local_path(output_uri, default_fs_local)
        if dst is None:
            return cls(None, False, None)
        dst = Path(os.path.abspath(dst))
        return cls(dst, dst.exists() or dst.is_symlink(), nearest_existing_folder(dst))

    def remove(self, keep_committed: bool = False) -> None:
        """Remove what Spark made for this job's output, once the job has ended: its temporary
        folder, its part files and marker, the folder and the parents it created, if then
        empty. Nothing at all if the path existed before the job, or if the folder holds
        anything Spark does not make.
        ``keep_committed`` keeps an output that Spark committed (marked _SUCCESS)."""
        dst = self.folder
        if dst is None or self.existed or not dst.is_dir() or dst.is_symlink():
            return
        if keep_committed and (dst / "_SUCCESS").exists():
            return
        entries = list(dst.iterdir())
        if not all(e.name == "_temporary" or (SPARK_OUTPUT_FILE.match(e.name) and e.is_file()) for e in entries):
            return  # a file that Spark does not make: the folder is someone else's (made after the check)
        shutil.rmtree(dst / "_temporary", ignore_errors=True)
        for entry in entries:
            if entry.name != "_temporary":
                entry.unlink(missing_ok=True)
        for folder in [dst, *dst.parents]:
            if folder == self.top_existing:
                break
            try:
                folder.rmdir()  # only if empty
            except OSError:
                break
