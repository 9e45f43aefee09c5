"""Workarounds for Gradio behaviours the app cannot accept, applied once by :func:`apply`.

- **Partial uploads stay on disk.** Gradio's multipart parser (``GradioMultiPartParser.parse``)
  deletes the files it was writing only on a parse error; when the client disconnects mid-body
  (or the request guard cuts a stalled or oversize body, which the app sees as a disconnect) the
  partial file stays in the upload folder forever. The patch deletes them on *any* failure.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

_applied = False


def apply() -> None:
    """Patch Gradio (idempotent)."""
    global _applied
    if _applied:
        return
    from gradio.route_utils import GradioMultiPartParser

    original = GradioMultiPartParser.parse

    async def parse(self):  # noqa: ANN001, ANN202 (Gradio's own signature)
        try:
            return await original(self)
        except BaseException:
            for file in getattr(self, "_files_to_close_on_error", []):
                with contextlib.suppress(OSError):
                    file.close()
                Path(file.name).unlink(missing_ok=True)
            raise

    GradioMultiPartParser.parse = parse
    _applied = True
