"""Sphinx configuration of cnn_bp's documentation site.

Build (from the repository root, after ``pip install ".[docs]"``)::

    sphinx-build -W -b html docs docs/_build/html

``-W`` turns every warning into an error, as CI runs it.
"""

import pathlib
import sys

from docutils import nodes
from sphinx import addnodes

import cnn_bp
from cnn_bp import _registry

DOCS = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS))
import make_inventories  # noqa: E402  (docs/make_inventories.py, beside this file)

project = "cnn_bp"
author = "the cnn_bp developers"
copyright = "2026, the cnn_bp developers"
version = release = cnn_bp.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.intersphinx",
    "sphinx.ext.mathjax",
    "sphinx-mathjax-offline",  # MathJax 3 served from the site: no CDN needed
    "numpydoc",
    "myst_parser",
    "sphinx_gallery.gen_gallery",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]
templates_path = ["_templates"]

# API reference: one page per public name, numpydoc sections rendered
autosummary_generate = True
autodoc_default_options = {"members": True, "inherited-members": True}
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
# the text of public docstrings is checked too (numpydoc's validation): every
# public object has a docstring (GL08), every parameter is documented and no
# other (PR01, PR02, PR10), every function says what it returns (RT01)
numpydoc_validation_checks = {"GL08", "PR01", "PR02", "PR10", "RT01"}
numpydoc_validation_exclude = {r"\.__init__$"}  # documented by the class


def skip_scikit_learn_members(app, what, name, obj, skip, options):
    """Leave out the methods the estimators inherit from scikit-learn
    (get_params, score, set_fit_request, ...): they behave as scikit-learn
    documents them, and their docstrings link into its site."""
    if getattr(obj, "__module__", None) and obj.__module__.startswith("sklearn"):
        return True
    return skip


# Links to scikit-learn, numpy, scipy and Dask: their inventories are shipped
# in docs/_inventories (the build has no network), written by
# docs/make_inventories.py from the names these pages mention.
_SITES = {
    "sklearn": "https://scikit-learn.org/stable/",
    "numpy": "https://numpy.org/doc/stable/",
    "scipy": "https://docs.scipy.org/doc/scipy/",
    "dask": "https://docs.dask.org/en/stable/",
    "distributed": "https://distributed.dask.org/en/stable/",
}
intersphinx_mapping = {name: (url, str(DOCS / "_inventories" / f"{name}.inv"))
                       for name, url in _SITES.items()}
_EXTERNAL = set().union(*(make_inventories.read_names(DOCS / "_inventories" / f"{name}.inv")
                          for name in _SITES))
_SHORT = dict(line.split() for line in
              (DOCS / "_inventories" / "short_names.txt").read_text().splitlines())


def link_external_names(app, doctree):
    """A name of scikit-learn, numpy, scipy or Dask written as code
    (``sklearn.utils.shuffle``, ``np.float32``, `GridSearchCV`) becomes a
    link to its page, resolved by intersphinx."""
    for literal in list(doctree.findall(nodes.literal)):
        if isinstance(literal.parent, (addnodes.pending_xref, nodes.reference)):
            continue
        text = literal.astext().removesuffix("()")
        if text.startswith("np."):
            text = "numpy." + text[3:]
        target = _SHORT.get(text, text if text in _EXTERNAL else None)
        if target is None:
            continue
        xref = addnodes.pending_xref("", refdomain="py", reftype="obj", reftarget=target,
                                     refexplicit=True, refwarn=False)
        literal.replace_self(xref)
        xref += literal


def setup(app):
    app.connect("autodoc-skip-member", skip_scikit_learn_members)
    app.connect("doctree-read", link_external_names)

# the gallery: examples/plot_*.py, executed at every build (each a few seconds
# on the digits), their figures kept
sphinx_gallery_conf = {
    "examples_dirs": "../examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    "ignore_pattern": r"(^|/)(?!plot_)[^/]*\.py$",  # the scripts with options
    "download_all_examples": False,
    "min_reported_time": 1,
    # "Examples using ..." on the API pages (docs/_templates/autosummary/class.rst)
    "doc_module": ("cnn_bp",),
    "backreferences_dir": "generated/backreferences",
    # names in the examples' code link to their pages (here and intersphinx's)
    "reference_url": {"cnn_bp": None},
}

myst_enable_extensions = ["dollarmath", "substitution"]
# lists of names in the pages come from the registry, as the estimators' do
_sklearn_settings = {h for s in _registry.SOLVERS if s.sklearn for h in s.hyperparameters}
myst_substitutions = {
    "extra_activations": ", ".join(
        a.name for a in _registry.ACTIVATIONS if not (a.output or a.sklearn)),
    "extra_solvers": ", ".join(
        s.name + "".join(f" (`{h}`)" for h in s.hyperparameters if h not in _sklearn_settings)
        for s in _registry.SOLVERS if not s.sklearn),
    # a block: the sources table of every activation, loss and solver that has one
    "registry_sources": "| activation, loss or solver | source |\n|---|---|\n" + "\n".join(
        f"| {entry.name} | {entry.source} |"
        for entry in _registry.ACTIVATIONS + _registry.LOSSES + _registry.SOLVERS
        if entry.source),
}
myst_heading_anchors = 3

html_theme = "pydata_sphinx_theme"
html_static_path = ["_static"]
html_css_files = ["custom.css"]  # wide tables scroll; contents show whole names
html_title = f"cnn_bp {release}"
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
}
