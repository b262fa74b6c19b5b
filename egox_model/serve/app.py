"""The Ray Serve application of `egox serve`: one FastAPI ingress deployment whose replicas
each own a generator backend.

Routes:
- `GET /healthz` (no token): `{"status": "ok", "backend": ..., "busy": ..., "served": ...}`.
- `POST /v1/generate` (bearer token): body = a wire clip (`egox_model/serve/wire.py`),
  answer = a wire output. 401 wrong or missing token; 413 body over `max_request_mb`;
  400 malformed message; 422 a well-formed message that is no valid clip; 504 not done
  within `request_timeout_s`; 500 the backend failed. A replica runs one clip at a time;
  the others wait (their wait counts against the timeout).

Ray Serve's HTTP proxy has no key of its own: the token check is a FastAPI dependency on
every route but /healthz.
"""
from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any

from fastapi import Depends, FastAPI, Header, HTTPException, Request, Response

from egox_model.config import from_flat
from egox_model.errors import InputError
from egox_model.generator import make_generator
from egox_model.generator.config import GeneratorConfig
from egox_model.serve.auth import token_matches
from egox_model.serve.errors import WireError
from egox_model.serve.wire import CONTENT_TYPE, decode_clip, encode_output

__all__ = ["EgoxServer"]

#: Serve's replica logger: records land in logs/serve/replica_*.log of the Ray session.
logger = logging.getLogger("ray.serve")


class EgoxServer:
    """One replica: the backend built from the flat generator settings, and its routes.

    `token_digest` is the SHA-256 of the bearer token ("" = no token: loopback only, the
    caller checks that); the token itself never reaches Ray."""

    def __init__(self, settings: dict[str, Any], token_digest: str, max_request_bytes: int,
                 request_timeout_s: float) -> None:
        self.config = from_flat(GeneratorConfig, settings)
        self.generator = make_generator(self.config)
        self.token_digest = token_digest
        self.max_request_bytes = max_request_bytes
        self.request_timeout_s = request_timeout_s
        self._busy = threading.Lock()
        self.served = 0

    # ---- the work of one request (a worker thread) -----------------------------------------
    def _run(self, body: bytes, deadline: float) -> tuple[bytes, str]:
        """(response body, "") or (b"", the reason it timed out waiting for the backend)."""
        start = time.perf_counter()
        clip, options = decode_clip(body)
        decode_ms = (time.perf_counter() - start) * 1e3
        if not self._busy.acquire(timeout=max(0.0, deadline - time.monotonic())):
            return b"", "waited for the backend past request_timeout_s"
        try:
            start = time.perf_counter()
            output = self.generator.generate(clip)
            server_ms = (time.perf_counter() - start) * 1e3
            self.served += 1
        finally:
            self._busy.release()
        return encode_output(output, with_prior=bool(options.get("return_prior", True)),
                             extra={"server_ms": server_ms,
                                    "server_decode_ms": decode_ms}), ""

    # ---- the FastAPI app, built on the replica after __init__ ------------------------------
    def __serve_build_asgi_app__(self) -> Any:
        api = FastAPI(title="egox serve", docs_url=None, redoc_url=None, openapi_url=None)

        def require_token(authorization: str | None = Header(None)) -> None:
            if self.token_digest and not token_matches(authorization, self.token_digest):
                raise HTTPException(401, "missing or wrong bearer token",
                                    headers={"WWW-Authenticate": "Bearer"})

        @api.get("/healthz")
        def healthz() -> dict:
            return {"status": "ok", "backend": self.generator.name,
                    "busy": self._busy.locked(), "served": self.served}

        @api.post("/v1/generate", dependencies=[Depends(require_token)])
        async def generate(request: Request) -> Response:
            deadline = time.monotonic() + self.request_timeout_s
            limit = self.max_request_bytes
            declared = request.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > limit:
                raise HTTPException(413, f"body of {int(declared)} bytes exceeds the "
                                         f"{limit}-byte limit (serve.max_request_mb)")
            body = bytearray()
            async for chunk in request.stream():
                body += chunk
                if len(body) > limit:
                    raise HTTPException(413, f"body exceeds the {limit}-byte limit "
                                             "(serve.max_request_mb)")
            try:
                data, late = await asyncio.wait_for(
                    asyncio.to_thread(self._run, bytes(body), deadline),
                    timeout=self.request_timeout_s)
            except WireError as err:
                raise HTTPException(400, f"malformed egox message: {err}") from None
            except InputError as err:
                raise HTTPException(422, f"invalid clip: {err}") from None
            except asyncio.TimeoutError:
                raise HTTPException(504, f"not done within {self.request_timeout_s:g} s "
                                         "(serve.request_timeout_s)") from None
            except Exception as err:  # noqa: BLE001 - the backend failed: tell the client
                logger.exception("backend %s failed on a clip", self.generator.name)
                raise HTTPException(500, f"backend {self.generator.name} failed: "
                                         f"{type(err).__name__}: {err}") from None
            if late:
                raise HTTPException(504, late)
            return Response(content=data, media_type=CONTENT_TYPE)

        return api
