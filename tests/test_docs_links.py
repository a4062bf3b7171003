"""The inventories the site links scikit-learn, numpy, scipy and Dask names
with (docs/_inventories, written by docs/make_inventories.py) hold every such
name the docs mention: a new mention fails here until the script is run."""

import importlib.util
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"
pytest.importorskip("distributed")


def _script():
    spec = importlib.util.spec_from_file_location("make_inventories",
                                                  DOCS / "make_inventories.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_name_the_docs_mention_is_in_the_shipped_inventories():
    script = _script()
    names, short = script.mentioned()
    expected = script.inventories(names)
    assert sum(len(entries) for entries in expected.values()) >= 30  # the scan is real
    for project, entries in expected.items():
        shipped = script.read_names(DOCS / "_inventories" / f"{project}.inv")
        missing = {name for name, _ in entries} - shipped
        assert not missing, f"run python docs/make_inventories.py: {project} lacks {missing}"
    lines = (DOCS / "_inventories" / "short_names.txt").read_text().splitlines()
    assert dict(line.split() for line in lines) == short


def test_private_names_and_modules_are_not_linked():
    script = _script()
    assert script.resolve("sklearn.utils.validation._check_sample_weight") is None
    assert script.resolve("sklearn.neural_network")[1] == "module"
    assert script.resolve("sklearn.neural_network.MLPClassifier") == (
        "sklearn.neural_network.MLPClassifier", "class")
    assert script.resolve("numpy.no_such_name") is None
