"""Sphinx configuration of cnn_bp's documentation site.

Build (from the repository root, after ``pip install ".[docs]"``)::

    sphinx-build -W -b html docs docs/_build/html

``-W`` turns every warning into an error, as CI runs it.
"""

import cnn_bp
from cnn_bp import _registry

project = "cnn_bp"
author = "the cnn_bp developers"
copyright = "2026, the cnn_bp developers"
version = release = cnn_bp.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
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


def setup(app):
    app.connect("autodoc-skip-member", skip_scikit_learn_members)

# the gallery: examples/plot_*.py, executed at every build (each a few seconds
# on the digits), their figures kept
sphinx_gallery_conf = {
    "examples_dirs": "../examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    "ignore_pattern": r"(^|/)(?!plot_)[^/]*\.py$",  # the scripts with options
    "download_all_examples": False,
    "min_reported_time": 1,
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
html_title = f"cnn_bp {release}"
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
}
