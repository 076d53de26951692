"""The thumbnail handler, run by workers (JOBS_IMPORTS=handlers jobctl worker)."""

import pgjobs

from jobs import Thumbnail, thumbnail


def resize(image_id: int, size: int, api_key: str) -> str:
    """Stands in for your image service's client: checks the key, says where the thumbnail is."""
    if not api_key.startswith("img-"):
        raise pgjobs.PermanentError("the image service refused the key")  # no retry
    return f"https://images.example/{image_id}/{size}.png"


@pgjobs.handles(thumbnail)
def make_thumbnails(ctx: pgjobs.JobContext[Thumbnail]) -> dict[str, list[str]]:
    urls = []
    with ctx.credential(ctx.payload.credential_id) as key:  # decrypted for this block only
        for i, size in enumerate(ctx.payload.sizes):
            ctx.progress(100 * i / len(ctx.payload.sizes), f"{size}px")  # a cancel checkpoint
            urls.append(resize(ctx.payload.image_id, size, api_key=key.reveal()))
    return {"thumbnails": urls}  # stored as the job's result
