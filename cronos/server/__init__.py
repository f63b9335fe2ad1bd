"""``cronos serve``: a translation server that batches concurrent requests (FastAPI on uvicorn, the
``serve`` extra).

    cronos serve runs/x/best.pt --port 8000
    curl -s localhost:8000/translate -H 'content-type: application/json' \
         -d '{"text": ["Ein Hund läuft.", "Zwei Katzen."], "beam_size": 4}'

``POST /translate`` (texts; beam size, n-best lists, scores, or sampling), ``POST /score`` (pairs),
``GET /health``, ``GET /metrics`` (Prometheus), ``GET /openapi.json`` and ``/docs`` (what each
endpoint takes and gives).  The sentences of concurrent requests are decoded together
(``batching.Batcher``), and an answer is what the text alone gives (P0).  ``schema.py``: the
bodies and the jobs they become; ``metrics.py``: the metrics; ``app.py``: routes, errors, process.
"""
from .app import Limits, build_app, check_address, serve

__all__ = ["Limits", "build_app", "check_address", "serve"]
