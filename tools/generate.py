"""Generate the code that the registry and the kernel header determine.

Run by setup.py before Cython compiles anything (and runnable alone:
``python tools/generate.py``). Two Tempita templates (the Tempita that ships
inside Cython, as scikit-learn's ``*.pyx.tp``) are rendered:

- ``csrc/registry.h.tp`` -> ``csrc/registry.h``: the C enums of the
  activations, losses and solvers of ``src/cnn_bp/_registry.py`` (a name's
  position is its code) and the switches that read the registry's columns
  (``cnnbp_derivative_needs_z``, ``cnnbp_loss_activation``);
- ``src/cnn_bp/_kernels.pxd.tp`` -> ``src/cnn_bp/_kernels.pxd``: the Cython
  declarations of those enums, of every kernel that ``csrc/kernels.h``
  and ``csrc/parallel.h`` declare for both dtypes (in its ``CNNBP_DECLARE*(T, S)`` macros: each
  becomes two externs, ``_f32`` and ``_f64``, and one fused-type wrapper
  without the ``cnnbp_`` prefix), of the solvers' hyperparameters, and of the
  parallel layer's and the private BLAS's functions and constants
  (``csrc/parallel.h``, ``csrc/thread_blas.h``: every ``cnnbp_`` prototype
  whose types Cython is told of, every ``CNNBP_`` constant and enum).

So a kernel or function is declared once, in C, and a name once, in the
registry; the template keeps only the structs' fields the engine reads and
the callback types.
Outputs are written only when their text changes (no needless rebuilds).
"""

import importlib.util
import os
import re
import sys

from Cython import Tempita

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# the headers whose CNNBP_DECLARE*(T, S) macros declare the typed kernels
HEADERS = [os.path.join(ROOT, "csrc", name) for name in ("kernels.h", "parallel.h")]
TEMPLATES = [
    os.path.join(ROOT, "csrc", "registry.h.tp"),
    os.path.join(ROOT, "src", "cnn_bp", "_kernels.pxd.tp"),
]
DTYPES = (("float", "f32"), ("double", "f64"))
# the headers whose plain prototypes and constants are declared to Cython
API_HEADERS = [os.path.join(ROOT, "csrc", name) for name in ("parallel.h", "thread_blas.h")]
# the types a declared prototype may use: C's and the template's typedefs
CYTHON_TYPES = {"int", "unsigned", "double", "void", "ptrdiff_t", "char", "const",
                "cnnbp_team", "cnnbp_share", "cnnbp_share_fn", "cnnbp_range_fn",
                "cnnbp_lockstep"}


def load_registry():
    """cnn_bp/_registry.py, loaded by path: nothing of cnn_bp is built yet."""
    path = os.path.join(ROOT, "src", "cnn_bp", "_registry.py")
    spec = importlib.util.spec_from_file_location("_cnn_bp_registry", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Kernel:
    """One kernel of a CNNBP_DECLARE*(T, S) macro: `ret`, `name` (without
    cnnbp_ and the dtype suffix) and `args`, a list of (type, name) with
    T standing for the element type."""

    def __init__(self, ret, name, args):
        self.ret, self.name, self.args = ret, name, args

    def params(self, t):
        """The parameter list with T as `t` (float, double or floating)."""
        return ", ".join(re.sub(r"\bT\b", t, typ).replace(" *", "*").replace("*", " *")
                         + ("" if typ.endswith("*") else " ") + arg for typ, arg in self.args)

    def call(self, suffix):
        """The call of its `suffix` (f32, f64) version with the same argument names."""
        return f"cnnbp_{self.name}_{suffix}({', '.join(arg for _, arg in self.args)})"


def parse_kernels(header_text):
    """The kernels of every ``#define CNNBP_DECLARE...(T, S)`` macro of the header."""
    kernels = []
    pattern = r"#define CNNBP_DECLARE\w*\(T, S\)((?:[^\n]*\\\n)*[^\n]*)"
    for body in re.findall(pattern, header_text):
        body = re.sub(r"/\*.*?\*/", " ", body.replace("\\\n", " "), flags=re.S)
        for decl in filter(str.strip, body.split(";")):
            m = re.fullmatch(r"\s*(\w[\w\s*]*?)\s*\bcnnbp_(\w+)_##S\s*\((.*)\)\s*", decl, re.S)
            if m is None:
                raise ValueError(f"cannot read the kernel declaration {decl.strip()!r}")
            ret, name, arglist = m.groups()
            args = []
            for arg in arglist.split(","):
                words = " ".join(arg.replace("restrict", " ").split())
                am = re.fullmatch(r"(.*?[\s*])(\w+)", words)
                args.append((am.group(1).strip(), am.group(2)))
            kernels.append(Kernel(" ".join(ret.split()), name, args))
    if not kernels:
        raise ValueError("no CNNBP_DECLARE(T, S) macro found in csrc/kernels.h")
    return kernels


def read_kernels():
    """The kernels that HEADERS declare (parse_kernels)."""
    text = ""
    for header in HEADERS:
        with open(header) as f:
            text += f.read()
    return parse_kernels(text)


def parse_api(header_text):
    """(prototypes, constants) of a header outside its macros: each
    ``cnnbp_`` function declaration whose types are all in CYTHON_TYPES, as
    one line, and the names of its ``#define CNNBP_*`` integers and of its
    ``enum { CNNBP_* }`` members."""
    text = re.sub(r"/\*.*?\*/", " ", header_text, flags=re.S)
    text = re.sub(r"#define \w+\([^)]*\)(?:[^\n]*\\\n)*[^\n]*", " ", text)  # macros
    constants = [name for name, value in  # integers (enum: in Cython), not header guards
                 re.findall(r"^#define (CNNBP_[A-Z0-9_]+)[ \t]+([^\n]+)", text, re.M)
                 if "." not in value]
    for body in re.findall(r"\benum\s*\{([^}]*)\}", text):
        constants += [name.strip() for name in body.split(",") if name.strip()]
    prototypes = []
    for ret, name, args in re.findall(
            r"^(\w[\w ]*?[\s*]+)(cnnbp_\w+)\s*\(([^;{]*?)\)\s*;", text, re.M):
        if ret.strip().startswith(("typedef", "extern", "return")):
            continue
        line = f"{' '.join(ret.split())} {name}({' '.join(args.split())})".replace("* ", "*")
        words = set(re.findall(r"[A-Za-z_]\w*", re.sub(r"\b\w+\s*(?=[,)])", "", line[
            line.index("(") :] + ")"))) | {ret.replace("*", " ").split()[-1]}
        if words <= CYTHON_TYPES:
            prototypes.append(line.replace("(void)", "()"))
    return prototypes, constants


def read_api():
    """The prototypes and constants that API_HEADERS declare (parse_api)."""
    prototypes, constants = [], []
    for header in API_HEADERS:
        with open(header) as f:
            p, c = parse_api(f.read())
        prototypes += p
        constants += c
    return prototypes, constants


def namespace():
    """What the templates see: the registry's tables, the kernels and the
    parallel layer's API."""
    registry = load_registry()
    kernels = read_kernels()
    prototypes, constants = read_api()
    return dict(registry=registry, c_name=registry.c_name, kernels=kernels, dtypes=DTYPES,
                prototypes=prototypes, constants=constants)


def render(template, ns):
    with open(template) as f:
        text = Tempita.sub(f.read(), **ns)
    return text.rstrip("\n") + "\n"


def main():
    ns = namespace()
    for template in TEMPLATES:
        out = template[: -len(".tp")]
        text = render(template, ns)
        if os.path.exists(out):
            with open(out) as f:
                if f.read() == text:
                    continue
        with open(out, "w") as f:
            f.write(text)
        print(f"generated {os.path.relpath(out, ROOT)}", file=sys.stderr)


if __name__ == "__main__":
    main()
