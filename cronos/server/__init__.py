"""``cronos serve``: a translation server that batches concurrent requests (FastAPI on uvicorn, the
``serve`` extra).

    cronos serve runs/x/best.pt --port 8000
    curl -s localhost:8000/translate -H 'content-type: application/json' \
         -d '{"text": ["Ein Hund läuft.", "Zwei Katzen."], "beam_size": 4}'

``POST /translate`` (texts; beam size, n-best lists, scores, or sampling), ``POST /score`` (pairs),
``GET /health``, ``GET /metrics`` (Prometheus), ``GET /openapi.json`` and ``/docs`` (what each
endpoint takes and gives).  The sentences of concurrent requests are decoded together
(``batching.Batcher``), and an answer is what the text alone gives (P0); with ``"stream": true``
each text's translation is sent the moment it is found (``streaming.py``).  ``limits.py``: what a
server takes on at most; ``bodies.py``: the request and answer bodies; ``jobs.py``: the jobs they
become (each item encoded once, then decoded); ``errors.py``: one JSON
error for each thing that goes wrong; ``metrics.py``: the metrics; ``app.py``: the routes and the API
key; ``connections.py``: connections guarded against idle, slow and too many clients;
``process.py``: the process and its shutdown.
"""
from .app import build_app
from .connections import is_loopback, listen
from .limits import LimitError, Limits
from .process import serve

__all__ = ["Limits", "LimitError", "build_app", "is_loopback", "listen", "serve"]
