"""Write the intersphinx inventories the site links with, offline.

The site links every name of scikit-learn, numpy, scipy and Dask that its
pages, examples and API docstrings mention to that project's documentation
(``sphinx.ext.intersphinx``, and in ``conf.py`` a transform that turns such a
name written as code into a link). Intersphinx reads each project's
``objects.inv``; the documentation build has no network, so this script
writes those inventories into ``docs/_inventories/``: the names the docs
mention, each resolved in the installed package (a name that does not exist
stops the script) and placed where that project's site keeps its API pages.
Run it, and commit its output, when the docs mention a new name
(``tests/test_docs_links.py`` fails until then)::

    python docs/make_inventories.py
"""

import importlib
import inspect
import pathlib
import re
import zlib

DOCS = pathlib.Path(__file__).resolve().parent
ROOT = DOCS.parent
OUT = DOCS / "_inventories"

# project -> (its top-level packages, documentation root, where an object's
# page is: a function of the object's full name and its role)


def _sklearn_page(name, role):
    page = name.rsplit(".", 1)[0] if role == "method" else name
    return f"modules/generated/{page}.html#{name}"


def _numpy_page(name, role):
    import numpy

    obj = resolve_object(name)
    if inspect.isclass(obj) and issubclass(obj, numpy.generic):  # scalar types
        return f"reference/arrays.scalars.html#{name}"
    if name == "numpy.random.SeedSequence":
        return f"reference/random/bit_generators/generated/{name}.html#{name}"
    where = "reference/random/generated" if name.startswith("numpy.random.") else (
        "reference/generated")
    page = name
    if name.count(".") == 1 and getattr(numpy, getattr(obj, "__name__", ""), None) is obj:
        page = f"numpy.{obj.__name__}"  # an alias (numpy.abs) has its function's page
    return f"{where}/{page}.html#{page}"


def _scipy_page(name, role):
    if role == "module":
        return f"reference/{name.removeprefix('scipy.')}.html#module-{name}"
    return f"reference/generated/{name}.html#{name}"


def _dask_page(name, role):
    page = name.rsplit(".", 1)[0] if role == "method" else name
    return f"generated/{page}.html#{name}"


def _distributed_page(name, role):
    return f"api.html#{name}"


PROJECTS = {
    "sklearn": ("scikit-learn", ("sklearn",), _sklearn_page),
    "numpy": ("NumPy", ("numpy",), _numpy_page),
    "scipy": ("SciPy", ("scipy",), _scipy_page),
    "dask": ("Dask", ("dask",), _dask_page),
    "distributed": ("Dask.distributed", ("distributed",), _distributed_page),
}
_NAME = re.compile(r"\b((?:sklearn|numpy|scipy|dask|distributed)(?:\.[A-Za-z]\w*)+)")
_CODE = re.compile(r"`([A-Za-z]\w*)(?:\(\))?`")  # a short name written as code
SOURCES = ("docs/*.md", "docs/*.rst", "README.md", "examples/*.py", "src/cnn_bp/*.py")
_IMPORT = re.compile(r"from ((?:sklearn|numpy|scipy|dask|distributed)[\w.]*) import ([\w, ]+)")
_NP = re.compile(r"\bnp\.([A-Za-z]\w*(?:\.[A-Za-z]\w*)*)")
# Where a short name (`GridSearchCV`) may come from: these modules' public
# classes, and the functions of those in SHORT_FUNCTIONS_FROM (elsewhere a
# short function name, `shuffle`, is more often a parameter of ours).
SHORT_FUNCTIONS_FROM = ("sklearn.model_selection", "sklearn.utils.estimator_checks")
SHORT_FROM = ("sklearn.model_selection", "sklearn.pipeline", "sklearn.preprocessing",
              "sklearn.linear_model", "sklearn.ensemble", "sklearn.neural_network",
              "sklearn.datasets", "sklearn.metrics", "sklearn.utils.estimator_checks",
              "distributed")


def short_names():
    """{short name: full name} of SHORT_FROM's public names; cnn_bp's own
    names (its MLPClassifier) are left out."""
    import cnn_bp
    import cnn_bp.dask

    own = set(dir(cnn_bp)) | set(dir(cnn_bp.dask))
    index = {}
    for module_name in SHORT_FROM:
        module = importlib.import_module(module_name)
        for short in getattr(module, "__all__", ()):
            try:
                obj = getattr(module, short)
            except (AttributeError, ImportError):  # experimental: imported on request
                continue
            wanted = inspect.isclass(obj) or (callable(obj)
                                              and module_name in SHORT_FUNCTIONS_FROM)
            if wanted and short not in own:
                index.setdefault(short, f"{module_name}.{short}")
    return index


def mentioned():
    """(full names, {short: full name}) of those projects' objects the docs'
    sources mention: dotted names; in the pages and examples also ``np.``
    names, names imported from those projects, and short names written as
    code (the package's own code is read for its dotted names only)."""
    names, short, index = set(), {}, short_names()
    for pattern in SOURCES:
        for path in sorted(ROOT.glob(pattern)):
            text = path.read_text(encoding="utf-8")
            names.update(_NAME.findall(text))
            if pattern.startswith("src/"):  # the package's code: only names its text spells out
                continue
            names.update(f"{module}.{name.strip()}" for module, imported in _IMPORT.findall(text)
                         for name in imported.split(","))
            names.update(f"numpy.{name}" for name in _NP.findall(text))
            short.update((s, index[s]) for s in _CODE.findall(text) if s in index)
    return names | set(short.values()), short


def resolve_object(name):
    """The object a dotted name stands for (its longest importable module
    prefix, then attributes), or None."""
    parts = name.split(".")
    for split in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        for attr in parts[split:]:
            obj = getattr(obj, attr, None)
        return obj
    return None


def resolve(name):
    """(name, role) of a public class, function, method or module the name
    stands for, or None (private names, and names that are no object)."""
    if any(part.startswith("_") for part in name.split(".")):
        return None
    obj = resolve_object(name)
    owner = resolve_object(name.rsplit(".", 1)[0]) if "." in name else None
    if obj is None:
        return None
    if inspect.ismodule(obj):
        return name, "module"
    if inspect.isclass(obj):
        return name, "class"
    if inspect.isclass(owner):
        return name, "method"
    if callable(obj):
        return name, "function"
    return None


def inventories(names):
    """{project: [(name, role), ...]} of the names that resolve to a class,
    function or method (module pages are not where a project's names are
    documented alike)."""
    found = {project: [] for project in PROJECTS}
    for name in sorted(names):
        resolved = resolve(name)
        if resolved is not None and resolved[1] != "module":
            found[name.split(".")[0]].append(resolved)
    return found


def write(project, entries):
    title, _, page = PROJECTS[project]
    version = importlib.import_module(project).__version__
    lines = "".join(f"{name} py:{role} 1 {page(name, role)} -\n" for name, role in entries)
    header = (f"# Sphinx inventory version 2\n# Project: {title}\n# Version: {version}\n"
              "# The remainder of this file is compressed using zlib.\n")
    (OUT / f"{project}.inv").write_bytes(header.encode() + zlib.compress(lines.encode()))


def read_names(path):
    """The object names an inventory written by `write` holds."""
    data = pathlib.Path(path).read_bytes()
    body = zlib.decompress(data.split(b"\n", 4)[4]).decode()
    return {line.split(" ", 1)[0] for line in body.splitlines() if line}


def main():
    OUT.mkdir(exist_ok=True)
    names, short = mentioned()
    for project, entries in inventories(names).items():
        write(project, entries)
        print(f"{project}: {len(entries)} names")
    # the short names conf.py links, one "short full" pair a line
    (OUT / "short_names.txt").write_text("".join(f"{s} {f}\n" for s, f in sorted(short.items())))
    print(f"short names: {len(short)}")


if __name__ == "__main__":
    main()
