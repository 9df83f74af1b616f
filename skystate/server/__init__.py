"""The API server: every SDK and CLI call that acts is a persisted request with an ID.

``records`` keeps the request rows (sqlite), ``scheduler`` runs them in warm worker
processes (one process per request, so a cancel can end the whole process tree),
``app`` is the FastAPI front, ``client`` is what the SDK and CLI use (it starts a
local server on demand), ``codec`` carries return values and exceptions across.
"""
