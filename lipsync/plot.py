"""A picture of mouth curves over a cue track (PNG, drawn with Pillow), to see that they look like speech."""

from pathlib import Path

from .cues import SHAPES

COLOURS = [(214, 39, 40), (31, 119, 180), (44, 160, 44), (255, 127, 14), (148, 103, 189), (140, 86, 75),
           (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207)]
SHAPE_SHADES = {shape: 255 - 18 * index for index, shape in enumerate(SHAPES)}


def draw_curves(curves, track, path, title="", width=1600, height=600):
    """Draw each parameter's per-frame values over time, with the cues as a labelled band below."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    left, right, top, band = 60, width - 20, 40, 60
    bottom = height - band - 40
    frames, values = curves.per_frame()
    first, last = curves.first_frame, max(curves.last_frame, curves.first_frame + 1)

    def x_of(frame):
        return left + (frame - first) / (last - first) * (right - left)

    def y_of(value):
        return bottom - value * (bottom - top)

    draw.text((left, 10), title, fill="black")
    for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
        y = y_of(tick)
        draw.line([(left, y), (right, y)], fill=(225, 225, 225))
        draw.text((10, y - 6), f"{tick:.2f}", fill="black")
    rate, start = curves.settings.frame_rate, curves.settings.start_frame
    seconds = int((last - first) / rate)
    step = max(1, seconds // 20)
    for second in range(0, seconds + 1, step):
        x = x_of(start + second * rate)
        draw.line([(x, bottom), (x, bottom + 5)], fill="black")
        draw.text((x - 4, bottom + 8), f"{second}s", fill="black")
    for column, name in enumerate(curves.parameters):
        colour = COLOURS[column % len(COLOURS)]
        line = [(x_of(f), y_of(v)) for f, v in zip(frames, values[:, column])]
        if len(line) > 1:
            draw.line(line, fill=colour, width=2)
        draw.text((right - 160, top + 14 * column), name, fill=colour)
    band_top = height - band
    for cue in track.contiguous().cues:
        x0, x1 = x_of(start + cue.start * rate), x_of(start + cue.end * rate)
        shade = SHAPE_SHADES[cue.shape]
        draw.rectangle([x0, band_top, x1, height - 10], fill=(shade, shade, 255), outline=(90, 90, 160))
        if x1 - x0 > 8:
            draw.text(((x0 + x1) / 2 - 3, band_top + 18), cue.shape, fill="black")
    path = Path(path)
    temporary = path.with_name(f".{path.name}.tmp.png")
    image.save(temporary)
    temporary.replace(path)
    return path
