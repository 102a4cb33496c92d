#!/usr/bin/env python3
"""Draws LiveLoop's app icon and writes every size Tauri bundles need into assets/icons/.

Run once after changing the design (needs Pillow: `pip install pillow`); the outputs are
committed, so building the app never runs this.
"""
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter

OUT = Path(__file__).resolve().parent.parent / "assets" / "icons"
S = 1024


def draw() -> Image.Image:
    img = Image.new("RGBA", (S, S), (0, 0, 0, 0))
    # Background: rounded square with a vertical teal-to-indigo gradient.
    grad = Image.new("RGBA", (S, S))
    top, bottom = (20, 184, 166), (79, 70, 229)
    for y in range(S):
        t = y / (S - 1)
        grad.paste(tuple(int(a + (b - a) * t) for a, b in zip(top, bottom)) + (255,), (0, y, S, y + 1))
    mask = Image.new("L", (S, S), 0)
    ImageDraw.Draw(mask).rounded_rectangle((64, 64, S - 64, S - 64), radius=220, fill=255)
    img.paste(grad, (0, 0), mask)
    d = ImageDraw.Draw(img)
    # The loop: a thick white ring, open at the top right where a "live" dot sits.
    box = (250, 250, S - 250, S - 250)
    d.arc(box, start=-20, end=290, fill=(255, 255, 255, 255), width=96)
    d.ellipse((640, 210, 800, 370), fill=(248, 113, 113, 255))
    # A small camera body in the centre.
    d.rounded_rectangle((400, 450, 590, 580), radius=28, fill=(255, 255, 255, 255))
    d.polygon([(590, 490), (650, 455), (650, 575), (590, 540)], fill=(255, 255, 255, 255))
    return img


def write_icns(images: dict[int, Image.Image], path: Path) -> None:
    import io
    import struct

    chunks = b""
    for size, ostype in ((128, b"ic07"), (256, b"ic08"), (512, b"ic09"), (1024, b"ic10")):
        buf = io.BytesIO()
        images[size].save(buf, "PNG")
        data = buf.getvalue()
        chunks += ostype + struct.pack(">I", len(data) + 8) + data
    path.write_bytes(b"icns" + struct.pack(">I", len(chunks) + 8) + chunks)


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    big = draw()
    sizes = {n: big.resize((n, n), Image.LANCZOS) for n in (16, 24, 32, 48, 64, 128, 256, 512, 1024)}
    sizes[32].save(OUT / "32x32.png")
    sizes[128].save(OUT / "128x128.png")
    sizes[256].save(OUT / "128x128@2x.png")
    sizes[512].save(OUT / "icon.png")
    big.save(OUT / "icon-1024.png")
    sizes[256].save(OUT / "icon.ico", sizes=[(n, n) for n in (16, 24, 32, 48, 64, 128, 256)])
    write_icns(sizes, OUT / "icon.icns")


if __name__ == "__main__":
    main()
