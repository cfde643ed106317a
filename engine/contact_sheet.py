"""A sweep's contact sheet: every variant's frames side by side in one grid video, each tile
labelled with the parameters it varies, the soundtrack muxed in sync.

Tiles keep the first variant's aspect, scaled so the sheet is at most 1920 pixels across; a
variant that ends early holds its last frame, one with no frames stays black.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from engine.outputs import written_frames
from engine.video import encode_video, read_frame

MAX_SIDE = 1920


def grid_shape(count: int) -> tuple[int, int]:
    """(rows, columns) of a near-square grid for ``count`` tiles."""
    columns = math.ceil(math.sqrt(count))
    return math.ceil(count / columns), columns


def tile_size(width: int, height: int, rows: int, columns: int) -> tuple[int, int]:
    """A tile's (width, height): the frame's, shrunk so the sheet fits MAX_SIDE, even sides."""
    scale = min(1.0, MAX_SIDE / (columns * width), MAX_SIDE / (rows * height))
    return max(2, round(width * scale / 2) * 2), max(2, round(height * scale / 2) * 2)


def write_contact_sheet(batch) -> Path:
    """``contact_sheet.mp4`` in the batch folder, from the variants' frames on disk."""
    from engine.render import soundtrack

    first = batch.variants[0].settings
    records = [batch.records[variant.name] for variant in batch.variants]
    folders = [written_frames(Path(record.folder)) for record in records]
    labels = [_label(record) for record in records]
    rows, columns = grid_shape(len(records))
    size = tile_size(first.image.W, first.image.H, rows, columns)
    audio, offset = soundtrack(first, lambda event: None)
    pictures = _sheets(folders, labels, rows, columns, size)
    path = batch.root / "contact_sheet.mp4"
    return encode_video(pictures, path, first.animation.fps, audio=audio, audio_offset=offset)


def _sheets(
    folders: list[list[Path]], labels: list[str], rows: int, columns: int, size: tuple[int, int]
) -> Iterator[np.ndarray]:
    width, height = size
    captions = [_caption(label, width) for label in labels]
    tiles = [np.zeros((height, width, 3), np.uint8) for _ in folders]
    for index in range(max(len(frames) for frames in folders)):
        sheet = np.zeros((rows * height, columns * width, 3), np.uint8)
        for number, frames in enumerate(folders):
            if index < len(frames):
                picture = cv2.resize(read_frame(frames[index]), size, interpolation=cv2.INTER_AREA)
                tiles[number] = _captioned(picture, captions[number])
            row, column = divmod(number, columns)
            sheet[row * height : (row + 1) * height, column * width : (column + 1) * width] = tiles[number]
        yield sheet


def _caption(text: str, width: int) -> np.ndarray:
    """White text on black, as an RGBA strip as wide as a tile (alpha: where it covers)."""
    font = ImageFont.load_default(size=max(10, min(18, width // 24)))
    _, top, _, bottom = font.getbbox(text)
    strip = Image.new("RGBA", (width, bottom - top + 8), (0, 0, 0, 170))
    ImageDraw.Draw(strip).text((4, 4 - top), text, font=font, fill=(255, 255, 255, 255))
    return np.asarray(strip)


def _captioned(picture: np.ndarray, caption: np.ndarray) -> np.ndarray:
    """``picture`` with ``caption`` over its bottom edge."""
    strip = caption[: picture.shape[0]]
    alpha = strip[..., 3:4].astype(np.float32) / 255
    bottom = picture[-strip.shape[0] :].astype(np.float32)
    picture = picture.copy()
    picture[-strip.shape[0] :] = (strip[..., :3] * alpha + bottom * (1 - alpha)).round().astype(np.uint8)
    return picture


def _label(record) -> str:
    text = "  ".join(f"{key.rsplit('.', 1)[-1]}={value}" for key, value in record.params.items())
    return text if record.status == "done" else f"{text}  ({record.status})"
