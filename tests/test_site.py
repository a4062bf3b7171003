"""The built documentation site, as headless Chromium (Debian's chromium
package) renders it. CI builds the site, then runs this file with
CNN_BP_SITE=docs/_build/html; without a built site or a browser it skips."""

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

import cnn_bp

SITE = os.environ.get("CNN_BP_SITE")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(not (SITE and CHROMIUM),
                                reason="needs CNN_BP_SITE (a built site) and chromium")


def _dom(page):
    """The page's DOM after Chromium loaded and rendered it (scripts run)."""
    path = Path(SITE, page).resolve()
    assert path.is_file(), path
    result = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom",
         path.as_uri()],
        capture_output=True, text=True, timeout=120, check=True,
    )
    return result.stdout


def _signature_names(dom):
    """Names Sphinx rendered as object signatures (class, function, method)."""
    return re.findall(r'class="sig-name descname"><span class="pre">(\w+)', dom)


def test_the_index_renders_the_site_sections():
    dom = _dom("index.html")
    for section in ("Getting started", "User guide", "Examples", "API reference", "Changes"):
        assert section in dom, section


def test_the_api_page_lists_every_public_name():
    dom = _dom("api.html")
    names = [n for n in cnn_bp.__all__ if n not in ("__version__", "schedules")]
    names += ["DaskMLPClassifier", "DaskMLPRegressor", "CosineAnnealing", "StepDecay",
              "Warmup", "load_fashion_mnist"]
    for name in names:
        assert f">{name}<" in dom, name


def test_an_estimator_page_shows_its_parameters_shapes_and_methods():
    dom = _dom("generated/cnn_bp.MLPClassifier.html")
    rendered = _signature_names(dom)
    assert rendered[0] == "MLPClassifier"
    for method in ("fit", "partial_fit", "predict", "predict_proba"):
        assert method in rendered, method
    for text in ("hidden_layer_sizes", "learning_rate_init", "batch_norm",
                 "of shape (n_samples, n_features)", "coefs_"):
        assert text in dom, text


def test_the_gallery_shows_its_executed_examples_with_figures():
    dom = _dom("auto_examples/index.html")
    thumbnails = re.findall(r'sphx-glr-thumbcontainer', dom)
    assert len(thumbnails) >= 8
    page = _dom("auto_examples/plot_vanishing_gradients.html")
    assert re.search(r'<img[^>]+sphx_glr_plot_vanishing_gradients_001\.png', page)
