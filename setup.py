"""Builds the Cython core.

Release build by default. ``FLOWGATE_CHECKED=1`` builds with bounds, wraparound,
None and initialisation checks on, so the test suite can run against both.
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
    "nonecheck": CHECKED,
    "cdivision": True,
    "embedsignature": True,
}

compile_args = ["-O2", "-fno-strict-aliasing"] if not CHECKED else ["-O0", "-g"]

extensions = [
    Extension(
        "ext.core",
        ["ext/core.pyx"],
        include_dirs=[numpy.get_include()],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")]
        + ([("FLOWGATE_CHECKED", "1")] if CHECKED else []),
        extra_compile_args=compile_args,
    ),
    Extension("ext.decimal", ["ext/decimal.pyx"], extra_compile_args=compile_args),
]

setup(
    ext_modules=cythonize(
        extensions,
        compiler_directives=directives,
        annotate=os.environ.get("FLOWGATE_ANNOTATE", "") not in ("", "0"),
        build_dir="build/checked" if CHECKED else "build/release",
    ),
)
