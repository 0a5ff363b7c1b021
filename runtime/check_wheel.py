"""Refuse a runtime wheel without its compiled library: ``python check_wheel.py WHEEL``.

setup.py's Extension is optional, so that a source install without a C compiler still works;
a failed compile then only warns, and the wheel would still carry a platform tag. `make wheel`
and the image's builder stage run this after building, so such a wheel stops the build.
"""

from __future__ import annotations

import sys
import zipfile

LIBRARY_PREFIX = "housing_runtime/io/_native."


def main(paths: list[str]) -> int:
    for path in paths:
        if not any(name.startswith(LIBRARY_PREFIX) for name in zipfile.ZipFile(path).namelist()):
            print(
                f"check_wheel: {path} holds no {LIBRARY_PREFIX}* library: native.c did not compile "
                "(install a C compiler, e.g. gcc, and build again)",
                file=sys.stderr,
            )
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
