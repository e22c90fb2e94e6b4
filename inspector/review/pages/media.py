"""Photos and voice notes by hash, for logged-in users only; no path comes from the URL."""

from __future__ import annotations

import re

from fastapi import APIRouter, Depends, HTTPException
from fastapi.responses import FileResponse

from inspector.review.auth import Principal, api_user
from inspector.review.context import AppContext, app_context
from inspector.store.detail import media_ref

router = APIRouter(tags=["media"])
_SHA = re.compile(r"[0-9a-f]{64}")
# The types the protocol accepts; anything else is served as opaque bytes.
_TYPES = {
    "image/jpeg",
    "image/png",
    "image/webp",
    "image/bmp",
    "audio/wav",
    "audio/flac",
    "audio/ogg",
}


@router.get("/media/{sha256}", name="media")
def media(
    sha256: str, _who: Principal = Depends(api_user), ctx: AppContext = Depends(app_context)
) -> FileResponse:
    """A stored blob; content-addressed, so browsers may keep it."""
    if not _SHA.fullmatch(sha256):
        raise HTTPException(404, "no such media")
    with ctx.store.db.read() as session:
        ref = media_ref(session, sha256)
    if ref is None:
        raise HTTPException(404, "no such media")
    path = ctx.store.blobs.path_for(ref.sha256)
    if not path.is_file():
        raise HTTPException(404, "the media file is missing from the blob store")
    media_type = ref.content_type if ref.content_type in _TYPES else "application/octet-stream"
    return FileResponse(
        path,
        media_type=media_type,
        headers={
            "Cache-Control": "private, max-age=31536000, immutable",
            "Content-Disposition": "inline",
        },
    )
