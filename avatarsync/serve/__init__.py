"""``avatarsync serve``: an HTTP + WebSocket server around one loaded :class:`~avatarsync.pipeline.Pipeline`
per worker.

- :mod:`.config`: the server's settings and request limits;
- :mod:`.requests`: request options (the same as ``speak``), decoded and checked against the limits;
- :mod:`.stream`: phrase-by-phrase generation (text split at punctuation, audio at pauses) that yields
  frames and audio chunks as they are made, with joins at rest;
- :mod:`.engine`: a bounded queue and a pool of worker threads, jobs, cancellation;
- :mod:`.app`: the ASGI app (FastAPI): ``POST /v1/videos``, ``GET /v1/videos/{id}``,
  ``GET /v1/videos/{id}.mp4``, ``WS /v1/stream``, ``GET /`` (a small page).

Nothing is imported here: FastAPI, torch and the models load only when a server is made.
"""
