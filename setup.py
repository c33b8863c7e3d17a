"""Builds the optional C accelerator of the EXI codec (exi/_speedups.c); everything else is in pyproject.toml.

The extension is optional: without a C compiler (or Python headers) the install still succeeds, prints that
the fast path is off, and `exi` runs on its pure-Python codec (exi.backend == "python").
"""

from __future__ import annotations

import os
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

# CI sets SECC_STRICT_C=1: every warning is an error there (-Wall -Wextra -Werror).
STRICT = os.environ.get("SECC_STRICT_C") == "1"
FLAGS = ["-O2", "-Wall", "-Wextra", "-std=c11", "-fno-strict-aliasing"] + (["-Werror"] if STRICT else [])


class OptionalBuildExt(build_ext):
    """build_ext that reports a failed compile as 'fast path off' instead of failing the install."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as e:  # no compiler at all (distutils raises before compiling anything)
            self._off(e)

    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
        except Exception as e:
            if STRICT:
                raise
            self._off(e)

    @staticmethod
    def _off(e: Exception) -> None:
        print(f"*** secc: the EXI C accelerator was not built ({e}); the EXI fast path is OFF and the "
              "pure-Python codec is used. Install a C compiler and the Python headers, then reinstall, "
              "to turn it on.", file=sys.stderr)


setup(
    ext_modules=[Extension("exi._speedups", sources=["exi/_speedups.c"], extra_compile_args=FLAGS,
                           optional=not STRICT)],
    cmdclass={"build_ext": OptionalBuildExt},
)
