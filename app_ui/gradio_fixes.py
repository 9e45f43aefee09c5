"""Workarounds for Gradio behaviours the app cannot accept, applied once by :func:`apply`.

- **Partial uploads stay on disk.** Gradio's multipart parser (``GradioMultiPartParser.parse``)
  deletes the files it was writing only on a parse error; when the client disconnects mid-body
  (or the request guard cuts a stalled or oversize body, which the app sees as a disconnect) the
  partial file stays in the upload folder forever. The patch deletes them on *any* failure.
- **Refused names stay on disk, empty names answer 500.** ``/gradio_api/upload`` writes the file,
  then refuses a name such as ``..`` (400) without deleting it (up to 100 MB per request, kept
  forever); a part without a file name is a ``TypeError`` (500). The patch checks every ``files``
  part's name the way Gradio will, and deletes everything and answers 400 when one is bad.
- **Any server file could be read.** Gradio checks that a file path sent by a client is one of its
  uploads only once ``Blocks.has_launched`` is set, which ``launch()`` does and
  ``gr.mount_gradio_app`` does not: a client could name ``/etc/passwd`` (or the database, or
  ``/proc/self/environ``) as a file input, have it copied to the cache and fetch it.
  :func:`mark_launched` sets the flag on the mounted app.
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
            form = await original(self)
            _check_names(form, self.upload_dir)
            return form
        except BaseException:
            for file in getattr(self, "_files_to_close_on_error", []):
                with contextlib.suppress(OSError):
                    file.close()
                Path(file.name).unlink(missing_ok=True)
            raise

    GradioMultiPartParser.parse = parse
    _applied = True


def _check_names(form, upload_dir: str) -> None:  # noqa: ANN001 (a Starlette FormData)
    """Raise Gradio's ``MultiPartException`` (400) unless every ``files`` part is a file whose name
    Gradio will accept (its own rule: the stripped base name must join the upload folder safely)."""
    from gradio.exceptions import InvalidPathError
    from gradio.route_utils import GradioUploadFile, MultiPartException
    from gradio.utils import DeveloperPath, UserProvidedPath, safe_join
    from gradio_client.utils import strip_invalid_filename_characters

    for part in form.getlist("files"):
        if not isinstance(part, GradioUploadFile):
            raise MultiPartException("every 'files' part must be a file with a file name")
        if part.filename:
            name = strip_invalid_filename_characters(Path(part.filename).name)
            try:
                safe_join(DeveloperPath(str(upload_dir)), UserProvidedPath(name))
            except InvalidPathError as exc:
                raise MultiPartException(f"invalid file name: {name[:100]!r}") from exc


def mark_launched(blocks) -> None:  # noqa: ANN001 (a gr.Blocks)
    """Tell Gradio that ``blocks`` is served (mounted, not launched), so it refuses file paths that a
    client names unless they are that client's uploads."""
    blocks.has_launched = True
