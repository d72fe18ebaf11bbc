"""The report pages in a real browser (Debian's Chromium, driven by Playwright; no browser download).

A tiny real class is graded end to end (real Keras models, the real hidden set): one student, a
second who handed in the same file (similarity), and one whose folder name is an HTML attack. A
student with a real VGG16 architecture (inspected, built with weights=None) is added to the same
results. Then: the class page sorts and filters, a student's page opens from it, the confusion
matrix, the layer diagram, the learning curves and the public-split thumbnails render, there is no
console error (a Content-Security-Policy violation would be one), the hostile name stays text, the
student's own page holds nothing meant for the teacher, and a phone-sized window needs no sideways
scrolling. Screenshots go to $GRADER_TEST_ARTIFACTS (default tests/artifacts/, git-ignored).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from grader.judging.judge import judge_student
from grader.pipeline import grade
from grader.report import write_reports
from grader.inputs.rubric import load_rubric
from grader.settings import Settings
from tests._class import keras3_cnn
from tests._evidence import metrics as fake_metrics

ROOT = Path(__file__).resolve().parents[1]
HOSTILE = '<img src=x onerror=alert(1)>"\'Zoë'
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]
FIT_LOG = "".join(
    f"Epoch {e}/3\n1875/1875 - 6s - 3ms/step - accuracy: {0.80 + 0.03 * e:.4f} - loss: {0.60 - 0.1 * e:.4f} - "
    f"val_accuracy: {0.79 + 0.02 * e:.4f} - val_loss: {0.62 - 0.05 * e:.4f}\n" for e in range(1, 4))


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def browser():  # type: ignore[no-untyped-def]
    exe = _chromium()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        exe = None
    if exe is None:
        if os.environ.get("GRADER_REQUIRE_BROWSER"):
            pytest.fail("GRADER_REQUIRE_BROWSER is set but Chromium or Playwright is missing (apt-get install chromium; pip install playwright)")
        pytest.skip("no Chromium/Playwright here (apt-get install chromium; pip install playwright)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, args=CHROMIUM_FLAGS, headless=True)
        yield b
        b.close()


@pytest.fixture(scope="module")
def artifacts() -> Path:
    folder = Path(os.environ.get("GRADER_TEST_ARTIFACTS", ROOT / "tests" / "artifacts")) / "report-browser"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _notebook(path: Path) -> None:
    cells = [
        {"cell_type": "markdown", "metadata": {}, "source": "# My CNN"},
        {"cell_type": "code", "metadata": {}, "execution_count": 1, "source": "history = model.fit(x, y, epochs=3, validation_split=0.1)",
         "outputs": [{"output_type": "stream", "name": "stdout", "text": FIT_LOG}]},
        {"cell_type": "code", "metadata": {}, "execution_count": 2, "source": "print('Test accuracy:', model.evaluate(x_test, y_test)[1])",
         "outputs": [{"output_type": "stream", "name": "stdout", "text": "Test accuracy: 0.9512\n"}]},
    ]
    path.write_text(json.dumps({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))


def _vgg_student(tmp: Path):  # type: ignore[no-untyped-def]
    """Evidence of a VGG16-based model, read statically from a real file; metrics made by hand
    (evaluating VGG16 on 10,000 images costs about a minute here)."""
    import keras

    from grader.records.evidence import Evidence, FileInfo, ModelEvidence
    from grader.facts.keras_file import inspect_model_file

    base = keras.applications.VGG16(weights=None, include_top=False, input_shape=(32, 32, 3))
    base.trainable = True
    for layer in base.layers[:-4]:
        layer.trainable = False
    model = keras.Sequential([keras.Input((32, 32, 3)), base, keras.layers.Flatten(), keras.layers.Dense(10, activation="softmax")])
    path = tmp / "vgg16.keras"
    model.save(path)
    m = ModelEvidence(path="vgg16.keras", size_bytes=path.stat().st_size, sha256="1" * 64, status="evaluated",
                      architecture=inspect_model_file(path), metrics=fake_metrics(0.8812))
    return Evidence(student="vera", models=(m,), files=(FileInfo(path="vgg16.keras", size_bytes=m.size_bytes, kind="model"),),
                    dataset="fashion-mnist")


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory, fmnist_dir: Path) -> Path:
    root = tmp_path_factory.mktemp("class")
    for name in ("ann", "copy", HOSTILE):
        (root / name).mkdir()
    keras3_cnn(fmnist_dir, root / "ann" / "cnn.keras")
    _notebook(root / "ann" / "hw10.ipynb")
    shutil.copy(root / "ann" / "cnn.keras", root / "copy" / "model.keras")
    (root / HOSTILE / "model.h5").write_bytes(b"<script>alert(2)</script> not an HDF5 file")
    out = tmp_path_factory.mktemp("reports")
    rubric = load_rubric(ROOT / "rubrics" / "hw9.yaml")
    settings = Settings(out=out, hidden_tests=fmnist_dir, download=False, public_sample=500, project_root=ROOT, jobs=2)
    outcome = grade(root, rubric, settings)
    extra = judge_student(rubric, _vgg_student(tmp_path_factory.mktemp("vgg")))
    results = outcome.results.model_copy(update={"students": (*outcome.results.students, extra)})
    write_reports(results, out, ["html", "csv", "json"])
    return out


def _open(browser, url: str, viewport: dict[str, int] | None = None):  # type: ignore[no-untyped-def]
    page = browser.new_page(viewport=viewport or {"width": 1200, "height": 900})
    problems: list[str] = []
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type in ("error", "warning") else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("dialog", lambda d: (problems.append(f"dialog: {d.message}"), d.dismiss()))
    page.on("request", lambda r: problems.append(f"request: {r.url}") if not r.url.startswith(("file:", "data:")) else None)
    page.goto(url)
    page.wait_for_load_state("load")
    return page, problems


def _names(page) -> list[str]:  # type: ignore[no-untyped-def]
    return page.eval_on_selector_all("#class-table tbody tr:not([hidden]) td:first-child", "els => els.map(e => e.textContent.trim())")


def test_class_page_sorts_filters_and_opens_a_student(browser, report: Path, artifacts: Path) -> None:  # type: ignore[no-untyped-def]
    page, problems = _open(browser, (report / "index.html").as_uri())
    page.screenshot(path=artifacts / "class.png", full_page=True)
    assert sorted(_names(page)) == sorted(["ann", "copy", HOSTILE, "vera"])
    score = page.locator("#class-table th", has_text="Score").locator("button")
    score.click()
    values = page.eval_on_selector_all("#class-table tbody tr td:nth-child(2)", "els => els.map(e => parseFloat(e.dataset.value))")
    assert values == sorted(values) and values[0] < values[-1]
    score.click()
    values = page.eval_on_selector_all("#class-table tbody tr td:nth-child(2)", "els => els.map(e => parseFloat(e.dataset.value))")
    assert values == sorted(values, reverse=True)
    assert page.locator("#class-table th[aria-sort=descending]").count() == 1

    page.fill("#filter-text", "cop")
    assert _names(page) == ["copy"]
    assert page.text_content("#shown-count").strip() == "1 of 4 shown"
    page.fill("#filter-text", "")
    page.select_option("#filter-which", "similar")
    assert sorted(_names(page)) == ["ann", "copy"]
    page.select_option("#filter-which", "all")

    # the similarity table names the pair and says what matched
    sim = page.text_content("#similarity-table")
    assert "identical model file" in sim and "ann" in sim and "copy" in sim
    # the histogram and the pass rates are real SVG charts with an accessible name
    for chart in ("#histogram svg", "#pass-rates svg"):
        box = page.locator(chart).bounding_box()
        assert box and box["width"] > 200 and box["height"] > 80
        assert page.locator(chart).get_attribute("role") == "img"
    # the hostile name is text: no element was injected, no dialog opened
    assert page.locator("img[src=x]").count() == 0
    assert page.locator("#class-table a", has_text="<img src=x").count() == 1

    with page.expect_navigation():
        page.locator("#class-table a", has_text="ann").click()
    assert page.url.endswith("/students/ann.html")
    assert page.locator("#similarity").count() == 1  # the teacher's view shows the flags
    page.screenshot(path=artifacts / "teacher-ann.png", full_page=True)
    assert problems == []


def test_student_page_renders_charts_diagram_and_examples(browser, report: Path, artifacts: Path) -> None:  # type: ignore[no-untyped-def]
    page, problems = _open(browser, (report / "feedback" / "ann.html").as_uri())
    page.screenshot(path=artifacts / "feedback-ann.png", full_page=True)
    confusion = page.locator("figure.confusion svg").first
    box = confusion.bounding_box()
    assert box and box["width"] > 250 and box["height"] > 200
    assert confusion.locator("text").count() >= 100  # a count in every cell of the 10×10 matrix
    assert page.locator("ol.diagram li").count() >= 4  # input, conv, pool, flatten, dense
    # thumbnails of PUBLIC mistakes, decoded by the browser
    widths = page.eval_on_selector_all(".thumbs img", "els => els.map(e => e.naturalWidth)")
    assert widths and all(w == 28 for w in widths)
    curves = page.locator("figure.curves svg")
    assert curves.count() == 1 and curves.first.bounding_box()["width"] > 250
    assert "95.12%" in page.text_content("section.model")  # the claim, beside the measured value
    assert problems == []


def test_vgg16_diagram_marks_the_base_and_its_frozen_blocks(browser, report: Path, artifacts: Path) -> None:  # type: ignore[no-untyped-def]
    page, problems = _open(browser, (report / "feedback" / "vera.html").as_uri())
    page.screenshot(path=artifacts / "feedback-vera.png", full_page=True)
    boxes = page.locator("ol.diagram li.inbase")
    assert boxes.count() == 5  # VGG16's five blocks, one box each
    states = page.eval_on_selector_all("ol.diagram li.inbase", "els => els.map(e => e.className)")
    assert states == ["frozen inbase"] * 4 + ["trainable inbase"]  # blocks 1-4 frozen, block 5 fine-tuned
    assert "VGG16" in page.text_content(".legend")
    assert problems == []


def test_feedback_page_leaves_out_what_students_must_not_see(report: Path) -> None:
    results = json.loads((report / "results.json").read_text())
    sha = results["run"]["hidden_sha256"]
    for page in (report / "feedback").glob("*.html"):
        html = page.read_text()
        others = [s["student"] for s in results["students"] if page.name != f"{s['student']}.html" and s["student"].isalnum()]
        assert sha[:16] not in html and results["run"]["hidden_source"] not in html
        assert "index.html" not in html and "similar" not in html.lower()
        assert not any(f">{o}<" in html or f" {o} " in html for o in others), page.name
        for s in results["students"]:
            if page.name == f"{s['student']}.html":
                for c in s["criteria"]:
                    assert len(c["detail"]) < 25 or c["detail"] not in html, c["detail"]
    teacher = (report / "students" / "ann.html").read_text()
    assert sha[:16] in teacher and "copy" in teacher


def test_feedback_page_fits_a_phone(browser, report: Path, artifacts: Path) -> None:  # type: ignore[no-untyped-def]
    page, problems = _open(browser, (report / "feedback" / "ann.html").as_uri(), viewport={"width": 390, "height": 844})
    page.screenshot(path=artifacts / "feedback-ann-phone.png", full_page=False)
    overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 1
    assert problems == []


@pytest.mark.parametrize("page_path", ["index.html", "students/ann.html", "feedback/ann.html", "feedback/vera.html"])
def test_pages_pass_an_automated_accessibility_check(browser, report: Path, artifacts: Path, page_path: str) -> None:  # type: ignore[no-untyped-def]
    """axe-core (the engine behind Lighthouse's accessibility audit, bundled in axe-playwright-python):
    no violation at all of the WCAG 2 A/AA rules it checks (contrast, labels, headings, tables, names)."""
    from axe_playwright_python.sync_playwright import Axe

    page, problems = _open(browser, (report / page_path).as_uri())
    page.evaluate("document.querySelectorAll('details').forEach(d => d.open = true)")  # check what is folded too
    response = Axe().run(page, options={"runOnly": {"type": "tag", "values": ["wcag2a", "wcag2aa", "wcag21aa"]},
                                        "resultTypes": ["violations"]}).response
    found = [f"{v['id']} ({v['impact']}): {v['help']} — e.g. {v['nodes'][0]['html'][:160]}" for v in response["violations"]]
    (artifacts / f"axe-{page_path.replace('/', '-')}.json").write_text(json.dumps(response["violations"], indent=1))
    assert found == []
    assert problems == []
