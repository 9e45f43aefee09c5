"""Security headers on every answer (ASGI middleware).

- ``X-Content-Type-Options: nosniff``: a browser never guesses an HTML or script type from bytes.
- ``Content-Security-Policy: frame-ancestors ...``: the app may be framed by itself and by
  Hugging Face (the Space page embeds it in an iframe), by nobody else (clickjacking). The legacy
  ``X-Frame-Options`` cannot allow-list another site, so it is not sent (CSP wins where both are).
  Inside that embed the monitoring login's ``SameSite=Strict`` cookie is a third-party cookie that
  browsers do not send: monitoring is used at the Space's own URL.
- ``Referrer-Policy: no-referrer``: URLs (which may carry ids) do not leak to other sites.
- ``Cache-Control: no-store`` on the routes that carry tokens or monitoring data (RFC 6749 §5.1
  for the token answer): ``/api/auth``, ``/api/users``, ``/api/subjects``, ``/api/sessions``,
  ``/api/audit``, and the files Gradio serves (``/gradio_api/file=``).
- No ``Server`` banner (uvicorn's is switched off where the server starts; any left is removed).
"""

from __future__ import annotations

from .guard import ASGIApp, Message, Receive, Scope, Send

#: Sites allowed to frame the app (CSP ``frame-ancestors``): itself (its own ``*.hf.space`` URL)
#: and the Space page on huggingface.co; not other Spaces.
FRAME_ANCESTORS = "'self' https://huggingface.co"
#: Path prefixes whose answers are never stored by a browser or proxy.
NO_STORE_PREFIXES = ("/api/auth", "/api/users", "/api/subjects", "/api/sessions", "/api/audit",
                     "/gradio_api/file=", "/file=")


class SecurityHeaders:
    """Add the headers above to every HTTP answer of ``app``.

    Args:
        app: the ASGI app to wrap.
        frame_ancestors: the CSP ``frame-ancestors`` source list.
    """

    def __init__(self, app: ASGIApp, frame_ancestors: str = FRAME_ANCESTORS) -> None:
        self.app = app
        self.common = [(b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer"),
                       (b"content-security-policy", f"frame-ancestors {frame_ancestors}".encode())]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        no_store = scope["path"].startswith(NO_STORE_PREFIXES)

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                drop = {b"server", b"x-content-type-options", b"referrer-policy", b"x-frame-options"}
                if no_store:
                    drop |= {b"cache-control", b"pragma", b"expires"}
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() not in drop]
                headers += self.common
                if no_store:
                    headers.append((b"cache-control", b"no-store"))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, with_headers)
