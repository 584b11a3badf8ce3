"""Builds the Cython core.

Release build by default, optimised for the CPU it is built on (the venue is
built where it runs; `-march=native` is what turns event zeroing into vector
stores; ``FLOWGATE_MARCH=x86-64-v2``, say, builds for any CPU of that level,
which tools that do not know every instruction, like valgrind, also run).
``FLOWGATE_CHECKED=1`` builds with Cython's bounds,
wraparound and initialisation checks on, without optimisation, and with the
undefined-behaviour sanitizer aborting on any signed overflow, so the test suite
can run against both. (Cython's None checks stay off: the core runs without the
GIL, where they cannot run, and its `self` is never None.)
"""

import os

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup

CHECKED = os.environ.get("FLOWGATE_CHECKED", "") not in ("", "0")

directives = {
    "language_level": 3,
    "boundscheck": CHECKED,
    "wraparound": CHECKED,
    "initializedcheck": CHECKED,
    "nonecheck": False,
    "cdivision": True,
    "embedsignature": True,
}

if CHECKED:
    compile_args = ["-O0", "-g", "-fsanitize=undefined", "-fno-sanitize-recover=all"]
    link_args = ["-fsanitize=undefined"]
else:
    march = os.environ.get("FLOWGATE_MARCH", "native")
    compile_args, link_args = ["-O3", f"-march={march}", "-fno-strict-aliasing"], []

extensions = [
    Extension(
        "ext.core",
        ["ext/core.pyx"],
        include_dirs=[numpy.get_include()],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")]
        + ([("FLOWGATE_CHECKED", "1")] if CHECKED else []),
        extra_compile_args=compile_args,
        extra_link_args=link_args,
    ),
    Extension(
        "ext.decimal",
        ["ext/decimal.pyx"],
        extra_compile_args=compile_args,
        extra_link_args=link_args,
    ),
    Extension(
        "ext.fix",
        ["ext/fix.pyx"],
        extra_compile_args=compile_args,
        extra_link_args=link_args,
    ),
]

setup(
    ext_modules=cythonize(
        extensions,
        compiler_directives=directives,
        annotate=os.environ.get("FLOWGATE_ANNOTATE", "") not in ("", "0"),
        build_dir="build/checked" if CHECKED else "build/release",
    ),
)
