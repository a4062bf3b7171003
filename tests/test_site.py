"""The built documentation site, as headless Chromium (Debian's chromium
package) renders it, with no network (its host resolver finds no host: the
math must render from the site's own MathJax). CI builds the site, then runs
this file with CNN_BP_SITE=docs/_build/html; without a built site (or, for
the rendered pages, a browser) it skips."""

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

import cnn_bp

SITE = os.environ.get("CNN_BP_SITE")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_site = pytest.mark.skipif(not SITE, reason="needs CNN_BP_SITE (a built site)")
pytestmark = needs_site
needs_browser = pytest.mark.skipif(not CHROMIUM, reason="needs chromium")


def _dom(page):
    """The page's DOM after Chromium loaded and rendered it (scripts run,
    MathJax typesets: virtual time lets them finish), offline."""
    path = Path(SITE, page).resolve()
    assert path.is_file(), path
    result = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
         "--host-resolver-rules=MAP * ~NOTFOUND", "--virtual-time-budget=20000",
         "--dump-dom", path.as_uri()],
        capture_output=True, text=True, timeout=120, check=True,
    )
    return result.stdout


def _html(page):
    """The page's HTML as Sphinx wrote it."""
    return Path(SITE, page).read_text(encoding="utf-8")


def _signature_names(dom):
    """Names Sphinx rendered as object signatures (class, function, method)."""
    return re.findall(r'class="sig-name descname"><span class="pre">(\w+)', dom)


@needs_browser
def test_the_index_renders_the_site_sections():
    dom = _dom("index.html")
    for section in ("Getting started", "User guide", "Examples", "API reference", "Changes"):
        assert section in dom, section


@needs_browser
def test_the_api_page_lists_every_public_name():
    dom = _dom("api.html")
    names = [n for n in cnn_bp.__all__ if n not in ("__version__", "schedules")]
    names += ["DaskMLPClassifier", "DaskMLPRegressor", "CosineAnnealing", "StepDecay",
              "Warmup", "load_fashion_mnist"]
    for name in names:
        assert f">{name}<" in dom, name


@needs_browser
def test_an_estimator_page_shows_its_parameters_shapes_and_methods():
    dom = _dom("generated/cnn_bp.MLPClassifier.html")
    rendered = _signature_names(dom)
    assert rendered[0] == "MLPClassifier"
    for method in ("fit", "partial_fit", "predict", "predict_proba"):
        assert method in rendered, method
    for text in ("hidden_layer_sizes", "learning_rate_init", "batch_norm",
                 "of shape (n_samples, n_features)", "coefs_"):
        assert text in dom, text


@needs_browser
def test_the_gallery_shows_its_executed_examples_with_figures():
    dom = _dom("auto_examples/index.html")
    thumbnails = re.findall(r'sphx-glr-thumbcontainer', dom)
    assert len(thumbnails) >= 8
    page = _dom("auto_examples/plot_vanishing_gradients.html")
    assert re.search(r'<img[^>]+sphx_glr_plot_vanishing_gradients_001\.png', page)


@needs_browser
def test_the_backpropagation_page_renders_its_math_offline():
    """At least 40 formulas, typeset by the site's own MathJax (its output
    elements in the DOM) with no network."""
    dom = _dom("backpropagation.html")
    assert len(re.findall(r"<mjx-container", dom)) >= 40


MATH_PAGES = ["backpropagation.html", "features.html", "inspection.html", "performance.html",
              "auto_examples/plot_gradient_check.html",
              "auto_examples/plot_vanishing_gradients.html"]


@needs_browser
@pytest.mark.parametrize("page", MATH_PAGES)
def test_every_formula_typesets(page):
    """Each page's formulas typeset, none in MathJax's error box (which
    shows "Math input error" where TeX does not parse)."""
    dom = _dom(page)
    assert "<mjx-container" in dom
    assert "<mjx-merror" not in dom and "Math input error" not in dom


def _prose(html):
    """The page's article text outside math, code and scripts."""
    article = html[html.index("<article"):html.index("</article>")]
    for pattern in (r'<span class="math[^"]*">.*?</span>', r'<div class="math[^"]*">.*?</div>',
                    r"<code.*?</code>", r"<pre.*?</pre>", r"<script.*?</script>",
                    r"<[^>]+>"):
        article = re.sub(pattern, " ", article, flags=re.S)
    return article


@pytest.mark.parametrize("page", ["backpropagation.html", "inspection.html", "features.html"])
def test_notation_is_math_not_text(page):
    """No W^l, n_{l-1}, \\frac or δ^l typed as plain text: formulas are math."""
    prose = _prose(_html(page))
    for notation in (r"\w\^[\w{]", r"\w_\{", r"\\frac", r"δ\^", r"\\delta"):
        assert not re.search(notation, prose), (notation, re.search(notation, prose))
    if page == "backpropagation.html":
        assert _html(page).count('class="math') >= 40


def test_the_gallery_output_shows_no_warning_and_no_path():
    pages = sorted(Path(SITE, "auto_examples").glob("plot_*.html"))
    assert len(pages) >= 8
    for page in pages:
        html = page.read_text(encoding="utf-8")
        for block in re.findall(r'class="sphx-glr-script-out".*?</pre>', html, re.S):
            assert "Warning" not in block and "site-packages" not in block, page.name


@pytest.mark.parametrize("name", ["MLPClassifier", "MLPRegressor"])
def test_estimator_pages_link_to_scikit_learn_and_their_examples(name):
    html = _html(f"generated/cnn_bp.{name}.html")
    assert re.search(r'href="https://scikit-learn\.org/stable/modules/generated/'
                     rf'sklearn\.neural_network\.{name}\.html', html)
    assert "Examples using <code" in html and "sphx-glr-thumbcontainer" in html
