"""``cronos prepare|train|evaluate|translate|explain|score|average|export|serve``: the command line over the
Python API.

    cronos train configs/dates.yaml --set training.epochs=2
    cronos evaluate runs/dates/best.pt --data test
    cronos average --last 5 runs/dates -o runs/dates/averaged.pt
    cronos export runs/dates_transformer/best.pt --format ctranslate2 runs/dates_transformer/ct2
    echo "Thu 26 Nov 2026" | cronos translate runs/dates/best.pt --beam 5
    cronos explain runs/dates/best.pt "Thu 26 Nov 2026" --out runs/dates/explanations
    cronos serve runs/dates/best.pt --port 8000

Exit codes: 0 success, 2 usage or config error (one line), 1 runtime error (one line);
``--debug`` shows the traceback instead.  Warnings go to stderr as ``cronos: warning: ...``.
"""
from .main import main

__all__ = ["main"]
