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
- **A folder named as a file stops the cache sweep; refusals name server paths.** With the check
  on, a client may still name a *folder* inside the upload folder; Gradio then tracks it, and its
  cache sweep (``os.remove``) dies on it for the rest of the process, so uploads pile up. And the
  refusal's message names the server's path (its working directory). The patched check refuses
  folders too and answers with one message that names no path.
- **A body without its closing boundary leaves its file.** Gradio's parser then returns the form
  without the part it was writing (200, ``[]``) and never tracks or deletes that file. The patch
  deletes every file the parser made that the form does not hold.
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
    from gradio import processing_utils
    from gradio.exceptions import InvalidPathError
    from gradio.route_utils import GradioMultiPartParser, GradioUploadFile

    original = GradioMultiPartParser.parse

    def delete(files, keep: set[str] = frozenset()) -> None:  # noqa: ANN001 (Gradio's temp files)
        for file in files:
            if file.name not in keep:
                with contextlib.suppress(OSError):
                    file.close()
                Path(file.name).unlink(missing_ok=True)

    async def parse(self):  # noqa: ANN001, ANN202 (Gradio's own signature)
        try:
            form = await original(self)
            _check_names(form, self.upload_dir)
        except BaseException:
            delete(getattr(self, "_files_to_close_on_error", []))
            raise
        held = {part.file.name for part in form.getlist("files") if isinstance(part, GradioUploadFile)}
        delete(getattr(self, "_files_to_close_on_error", []), keep=held)  # parts cut off before their end
        return form

    check_allowed = processing_utils._check_allowed

    def checked(path, check_in_upload_folder: bool) -> None:  # noqa: ANN001 (str or Path)
        try:
            check_allowed(path, check_in_upload_folder)
            if check_in_upload_folder and Path(path).is_dir():
                raise InvalidPathError("a folder")
        except InvalidPathError as exc:
            raise InvalidPathError("files must be uploaded by this client (gradio_client.handle_file), "
                                   "not named by a server path") from exc

    GradioMultiPartParser.parse = parse
    processing_utils._check_allowed = checked
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
