"""Build the compiled core: one extension, the Cython engine plus the C99 kernels.

First tools/generate.py writes what the registry (src/cnn_bp/_registry.py)
and the kernel header determine: csrc/registry.h and src/cnn_bp/_kernels.pxd.

Flags are portable by default (-O3, no -march); set CNN_BP_NATIVE=1 to add
-march=native for a local build tuned to this CPU (never for a wheel).
"""
import glob
import os
import runpy

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup

KERNELS = [
    "csrc/activations.c",
    "csrc/losses.c",
    "csrc/optimizers.c",
    "csrc/blocks.c",
    "csrc/layers.c",
    "csrc/sparse.c",
    "csrc/pool.c",
    "csrc/team.c",
    "csrc/thread_blas.c",
]

# -fno-trapping-math lets GCC if-convert the flush-to-zero selects (FLUSH in
# csrc/typed.h) next to float<->double conversions, so the float32 Adam loop
# vectorises (it ran scalar: 0.27 s of a 0.45 s Fashion-MNIST-sized epoch).
# Values are unchanged; only floating-point exception flags may differ.
compile_args = ["-O3", "-fno-math-errno", "-fno-trapping-math", "-pthread"]
if os.environ.get("CNN_BP_NATIVE") == "1":
    compile_args.append("-march=native")

runpy.run_path(os.path.join(os.path.dirname(os.path.abspath(__file__)), "tools", "generate.py"),
               run_name="__main__")

extensions = [
    Extension(
        "cnn_bp._engine",
        sources=["src/cnn_bp/_engine.pyx", *KERNELS],
        # a changed header rebuilds the kernels; the engine's parts are included
        depends=sorted(glob.glob("csrc/*.h") + glob.glob("src/cnn_bp/*.pxi")),
        include_dirs=[numpy.get_include(), "csrc"],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
        extra_compile_args=compile_args,
        extra_link_args=["-pthread"],
    )
]

setup(ext_modules=cythonize(extensions, compiler_directives={"language_level": 3}))
