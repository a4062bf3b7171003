"""Build the compiled core: the passes, the plan, the engine and its checks, the tests' hooks,
and the C99 kernels.

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

# the stateless C: kernels and thread starting, which any extension may link
KERNELS = [
    "csrc/activations.c",
    "csrc/losses.c",
    "csrc/optimizers.c",
    "csrc/blocks.c",
    "csrc/layers.c",
    "csrc/sparse.c",
    "csrc/threads.c",
]
# process-wide state, each file linked into one extension alone (others reach
# it through that extension's .pxd): the parallel layer (the helper threads)
# into the plan, the private BLAS (its buffers and fork gate) into the passes
PARALLEL = ["csrc/pool.c", "csrc/team.c"]
PRIVATE_BLAS = ["csrc/thread_blas.c"]

# -fno-trapping-math lets GCC if-convert the flush-to-zero selects (FLUSH in
# csrc/typed.h) next to float<->double conversions, so the float32 Adam loop
# vectorises (figures: docs/performance.md, "Figures behind the code").
# Values are unchanged; only floating-point exception flags may differ.
compile_args = ["-O3", "-fno-math-errno", "-fno-trapping-math", "-pthread"]
if os.environ.get("CNN_BP_NATIVE") == "1":
    compile_args.append("-march=native")

runpy.run_path(os.path.join(os.path.dirname(os.path.abspath(__file__)), "tools", "generate.py"),
               run_name="__main__")

common = dict(
    include_dirs=[numpy.get_include(), "csrc"],
    define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
    extra_compile_args=compile_args,
    extra_link_args=["-pthread"],
)
headers = sorted(glob.glob("csrc/*.h"))
extensions = [
    # the nogil mathematics of one part, and the BLAS its products run on
    Extension(
        "cnn_bp._passes",
        sources=["src/cnn_bp/_passes.pyx", *KERNELS, *PRIVATE_BLAS],
        depends=headers,
        **common,
    ),
    # the plan: the passes over many rows on a team of threads, the one
    # caller of the parallel layer
    Extension(
        "cnn_bp._plan",
        sources=["src/cnn_bp/_plan.pyx", *KERNELS, *PARALLEL],
        depends=headers + ["src/cnn_bp/_passes.pxd"],
        **common,
    ),
    # the engine's checks, and the Engine (its buffers and entry points)
    Extension(
        "cnn_bp._checks",
        sources=["src/cnn_bp/_checks.pyx", *KERNELS],
        depends=headers + ["src/cnn_bp/_passes.pxd"],
        **common,
    ),
    Extension(
        "cnn_bp._engine",
        sources=["src/cnn_bp/_engine.pyx", *KERNELS],
        depends=headers + ["src/cnn_bp/_checks.pxd", "src/cnn_bp/_passes.pxd",
                           "src/cnn_bp/_plan.pxd"],
        **common,
    ),
    # the tests' wrappers of the kernels, the helper threads and the fork gate
    Extension(
        "cnn_bp._hooks",
        sources=["src/cnn_bp/_hooks.pyx", *KERNELS],
        depends=headers + ["src/cnn_bp/_plan.pxd", "src/cnn_bp/_passes.pxd"],
        **common,
    ),
]

setup(ext_modules=cythonize(extensions, compiler_directives={"language_level": 3}))
