"""One self-contained HTML page of explanations: per example, the attention and the attribution side
by side as heatmaps, each cell's value on hover.

    Path("report.html").write_text(html_report(model.explain(sources, method="saliency")))

Nothing is fetched when the page is viewed (no scripts, fonts or images: tables with inline
colours and a little CSS), and every text from the model's inputs and outputs is escaped, so a
source that holds ``<script>`` shows as text and runs nothing.
"""
from __future__ import annotations

import dataclasses
import html
from typing import Sequence

import torch

from .explanation import Explanation, piece_labels as _piece_labels

__all__ = ["html_report", "VIEWS"]

VIEWS = ("auto", "pieces", "words")  # subword models: how the tokens are shown

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.3em; } h2 { font-size: 1.05em; margin-top: 2em; }
.pair { display: flex; flex-wrap: wrap; gap: 2em; align-items: flex-start; }
figure { margin: 0; } figcaption { font-weight: 600; margin-bottom: .4em; }
table.heatmap { border-collapse: collapse; font-size: .8em; }
table.heatmap td { width: 1.7em; height: 1.5em; border: 1px solid #fff; }
table.heatmap td:hover { outline: 2px solid #000; }
table.heatmap th { font-weight: normal; padding: 0 .3em; white-space: pre; }
table.heatmap thead th { writing-mode: vertical-rl; transform: rotate(180deg); text-align: left; }
tbody th { text-align: right; }
.note { color: #555; font-size: .85em; }
"""


def html_report(explanations: Sequence[Explanation], title: str = "cronos explanations", view: str = "auto") -> str:
    """The page, as a string (UTF-8 when written).

    ``view``, for subword models: ``pieces`` as the model read and wrote them, ``words`` joined
    into whole words (``Explanation.to_words``), or ``auto``: words, except for an example where a
    side of several pieces is one word (``Explanation.words_hide_pieces``), which shows pieces."""
    if view not in VIEWS:
        raise ValueError(f"unknown view {view!r}; expected one of {', '.join(VIEWS)}")
    sections = "\n".join(_section(number, e, view) for number, e in enumerate(explanations, start=1))
    return (f"<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{html.escape(title)}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n"
            f"<h1>{html.escape(title)}</h1>\n<p class=\"note\">Output tokens down, source tokens across; hover a cell "
            f"for its value. Attention: white 0 to blue 1. Attribution: blue negative, white 0, red positive, "
            f"scaled to the example's largest magnitude.</p>\n{sections}\n</body>\n</html>\n")


def _in_view(explanation: Explanation, view: str) -> Explanation:
    """The explanation over the tokens ``view`` shows (the JSON keeps both)."""
    if not explanation.word_pieces:
        return explanation
    if view == "pieces" or (view == "auto" and explanation.words_hide_pieces):
        return dataclasses.replace(explanation, source_tokens=_piece_labels(explanation.source_tokens),
                                   output_tokens=_piece_labels(explanation.output_tokens))
    return explanation.to_words()


def _section(number: int, explanation: Explanation, view: str) -> str:
    shown = _in_view(explanation, view)
    maps = [_heatmap("attention", shown.attention, shown, signed=False)]
    if shown.attribution is not None:
        maps.append(_heatmap(shown.method.replace("_", " "), shown.attribution, shown, signed=True))
    notes = [f"padding: attention {explanation.padding_attention:g}"]
    if explanation.word_pieces:
        notes.insert(0, "shown as pieces" if shown.word_pieces else "shown as words")
    if explanation.padding_attribution is not None:
        notes.append(f"attribution {explanation.padding_attribution:g}")
    if explanation.completeness_gaps:
        notes.append(f"largest completeness gap {max(map(abs, explanation.completeness_gaps)):.3g}")
    kind = "forced" if explanation.forced else "decoded"
    return (f"<section id=\"example-{number}\">\n<h2>{number}. {html.escape(explanation.source)} → "
            f"{html.escape(explanation.output)}</h2>\n<p class=\"note\">output {kind}; {'; '.join(notes)}</p>\n"
            f"<div class=\"pair\">\n{''.join(maps)}</div>\n</section>")


def _heatmap(name: str, matrix: torch.Tensor, explanation: Explanation, signed: bool) -> str:
    """A table: output tokens down, source tokens across, each cell coloured by its value."""
    largest = float(matrix.abs().max()) if matrix.numel() else 0.0
    scale = largest if signed and largest > 0 else 1.0  # attention is a probability: 0..1 as it is
    header = "".join(f"<th>{html.escape(token)}</th>" for token in explanation.source_tokens)
    rows = []
    for token, values in zip(explanation.output_tokens, matrix.tolist()):
        cells = "".join(f"<td style=\"background:{_colour(v / scale, signed)}\" title=\"{html.escape(token)} ← "
                        f"{html.escape(source)}: {v:.4g}\"></td>"
                        for source, v in zip(explanation.source_tokens, values))
        rows.append(f"<tr><th>{html.escape(token)}</th>{cells}</tr>")
    return (f"<figure class=\"{'attribution' if signed else 'attention'}\">\n<figcaption>{html.escape(name)}"
            f"</figcaption>\n<table class=\"heatmap\"><thead><tr><th></th>{header}</tr></thead>\n"
            f"<tbody>{''.join(rows)}</tbody></table>\n</figure>\n")


def _colour(value: float, signed: bool) -> str:
    """``value`` in [0, 1] (white to blue), or with ``signed`` in [-1, 1] (blue, white at 0, red)."""
    strength = min(abs(value), 1.0)
    fade = round(255 * (1 - strength))
    if signed and value > 0:
        return f"rgb(255,{fade},{fade})"
    return f"rgb({fade},{fade},255)"
