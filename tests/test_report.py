"""The HTML report (``cronos explain ... --html``): one self-contained page, texts escaped, opened
in a real headless Chromium whose rendered page is checked and whose screenshot is kept as a test
artifact (``test-artifacts/``, ignored by git).  The README's test command installs Chromium
where it is missing; without it this test fails rather than skips."""
from __future__ import annotations

import html
import json
import re
import shutil
import subprocess

import pytest

import torch

from cronos.explain import Explanation
from cronos.explain.report import html_report
from helpers import ROOT
from test_cli import cronos

ARTIFACTS = ROOT / "test-artifacts"
HOSTILE = "<script>document.body.innerHTML='PWNED'</script> 1/2/07"


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    pytest.fail("no Chromium: the test command (bash scripts/test.sh) installs Debian's chromium package")


def browser(*args: str) -> subprocess.CompletedProcess:
    """Headless Chromium as root on a closed network: no sandbox, no background connections."""
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync"]
    return subprocess.run([chromium(), *flags, *args], capture_output=True, text=True, timeout=120)


def test_the_page_is_self_contained_and_escapes_every_text(trained_models):
    model = trained_models["rnn"]
    page = html_report(model.explain([HOSTILE, "Thu 26 Nov 2026"], method="saliency"))
    assert "<script" not in page and html.escape("<script>") in page  # shown, never run
    assert not re.search(r"""(src|href)\s*=|url\(|@import""", page)  # nothing to fetch when viewed
    assert page.count("<table") == 4  # attention and attribution, per example
    assert 'title="' in page  # each cell's value on hover


def test_the_report_renders_in_a_real_browser(trained_models, tmp_path, tmp_path_factory):
    checkpoint = trained_models["rnn"].save(tmp_path / "rnn.pt")
    report = tmp_path / "report.html"
    result = cronos("explain", str(checkpoint), HOSTILE, "Thu 26 Nov 2026", "--method",
                    "integrated_gradients", "--steps", "16", "--out", str(tmp_path / "out"), "--html", str(report))
    assert result.returncode == 0, result.stderr
    explanations = [json.loads((tmp_path / "out" / f"explanation_{n}.json").read_text()) for n in (1, 2)]
    for entry in explanations:  # the JSON holds the attribution beside the attention
        assert entry["method"] == "integrated_gradients" and entry["padding_attribution"] == 0.0
        assert len(entry["attribution"]) == len(entry["attention"]) == len(entry["output_tokens"])
    profile = tmp_path_factory.mktemp("chromium-profile")
    rendered = browser(f"--user-data-dir={profile}", "--dump-dom", report.as_uri())
    assert rendered.returncode == 0, rendered.stderr
    dom = rendered.stdout
    assert "PWNED" not in re.sub(r"&lt;script&gt;.*?&lt;/script&gt;", "", dom)  # the source's script never ran
    assert html.escape("<script>document.body") in dom  # ... and shows as text
    cells = re.findall(r'<td style="background:rgb\(\d+,\d+,\d+\)" title="([^"]*)"', dom)
    expected = sum(2 * len(e["attention"]) * len(e["source_tokens"]) for e in explanations)
    assert len(cells) == expected  # every cell of both heatmaps of both examples, with its hover value
    assert dom.count("<figcaption>integrated gradients</figcaption>") == 2
    ARTIFACTS.mkdir(exist_ok=True)
    screenshot = ARTIFACTS / "explain_report.png"
    shot = browser(f"--user-data-dir={profile}", f"--screenshot={screenshot}", "--window-size=1400,1800",
                   "--hide-scrollbars", report.as_uri())
    assert shot.returncode == 0 and screenshot.stat().st_size > 10_000, shot.stderr
    colours = _colours(screenshot)
    assert any(r > 200 and g < 150 and b < 150 for r, g, b in colours)  # a red (positive) cell was drawn
    assert any(b > 200 and r < 150 and g < 150 for r, g, b in colours)  # and a blue one


def _colours(png) -> set[tuple[int, int, int]]:
    import matplotlib.image

    pixels = (matplotlib.image.imread(str(png))[..., :3] * 255).round().astype(int).reshape(-1, 3)
    return {tuple(p) for p in pixels[:: 7].tolist()}


def explanation_of(source_tokens: list[str], output_tokens: list[str], word_pieces: bool) -> Explanation:
    """A hand-made explanation (no model needed): attention spread evenly over the source."""
    attention = torch.full((len(output_tokens), len(source_tokens)), 1.0 / len(source_tokens))
    return Explanation(source="".join(source_tokens), source_tokens=source_tokens, output="".join(output_tokens),
                       output_tokens=output_tokens, attention=attention, score=None, padding_attention=0.0,
                       forced=True, word_pieces=word_pieces)


def test_word_tokens_are_escaped_in_headers_row_labels_and_hover_titles():
    hostile = ["<script>", '"', "&amp;"]
    page = html_report([explanation_of(hostile, ["<b>", "x\"y"], word_pieces=False)])
    assert "<script>" not in page and "<b>" not in page and "&amp;amp;" in page
    header = re.search(r"<thead><tr><th></th>(.*?)</tr></thead>", page).group(1)
    assert header == "<th>&lt;script&gt;</th><th>&quot;</th><th>&amp;amp;</th>"
    assert re.findall(r"<tr><th>(.*?)</th><td", page) == ["&lt;b&gt;", "x&quot;y"]
    titles = re.findall(r'title="([^"]*)"', page)
    assert titles[0] == "&lt;b&gt; ← &lt;script&gt;: 0.3333" and titles[-1] == "x&quot;y ← &amp;amp;: 0.3333"


def test_a_side_written_as_one_word_is_shown_as_pieces_unless_words_are_asked_for():
    """``1,234`` is one word of three pieces: the word view would make every cell 1.0."""
    pieces = explanation_of(["▁1", ",", "234"], ["▁one", "▁thousand"], word_pieces=True)
    assert pieces.words_hide_pieces and pieces.to_words().attention.tolist() == [[1.0], [1.0]]
    columns = lambda page: re.search(r"<thead><tr><th></th>(.*?)</tr></thead>", page).group(1)  # noqa: E731
    assert columns(html_report([pieces])) == "<th>1</th><th>·,</th><th>·234</th>"
    assert "shown as pieces" in html_report([pieces])
    assert columns(html_report([pieces], view="words")) == "<th>1,234</th>"
    sentence = explanation_of(["▁two", "▁thou", "sand"], ["▁zwei", "▁tausend"], word_pieces=True)
    assert not sentence.words_hide_pieces
    assert columns(html_report([sentence])) == "<th>two</th><th>thousand</th>"
    assert "shown as words" in html_report([sentence])
    assert columns(html_report([sentence], view="pieces")) == "<th>two</th><th>thou</th><th>·sand</th>"
    with pytest.raises(ValueError, match="unknown view 'letters'"):
        html_report([sentence], view="letters")
