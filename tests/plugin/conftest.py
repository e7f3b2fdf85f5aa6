"""The inner pytest runs here are in-process: pytester drops every module first imported
during one when it ends. httpx imports httpcore lazily and keeps a map of httpcore's
exception classes, so an httpcore first imported inside an inner run would come back as a
second copy whose errors that map no longer recognises. Import it before any inner run."""

import httpcore  # noqa: F401
