"""The runtime's one compiled piece: ``src/housing_runtime/io/native.c`` into ``_native.abi3.so``.

ctypes loads it and it uses no Python API, so one build serves every CPython 3.11+ (the abi3
tag), and the wheel's platform tag says which machine it is for. ``optional=True``: without a
C compiler the build warns and goes on, and the runtime takes its pure-Python paths, which give
the same bytes. The rest of the metadata is in pyproject.toml.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "housing_runtime.io._native",
            sources=["src/housing_runtime/io/native.c"],
            optional=True,
            py_limited_api=True,
            # No -march: the library runs on any CPU of the wheel's architecture.
            extra_compile_args=["-O2", "-std=gnu11", "-Wall", "-Wextra"],
        )
    ],
    options={"bdist_wheel": {"py_limited_api": "cp311"}},
)
