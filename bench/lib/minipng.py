"""A horizontal bar chart as a PNG, in pure Python (zlib only): the fallback of report.py when
matplotlib is not installed. Text uses a built-in 5x7 bitmap font (upper case only)."""

import struct
import zlib

# 5x7 glyphs: 7 rows of 5 pixels per character, '#' = ink.
_ROWS = {
    "A": ".###. #...# #...# ##### #...# #...# #...#",
    "B": "####. #...# #...# ####. #...# #...# ####.",
    "C": ".###. #...# #.... #.... #.... #...# .###.",
    "D": "####. #...# #...# #...# #...# #...# ####.",
    "E": "##### #.... #.... ####. #.... #.... #####",
    "F": "##### #.... #.... ####. #.... #.... #....",
    "G": ".###. #...# #.... #.### #...# #...# .####",
    "H": "#...# #...# #...# ##### #...# #...# #...#",
    "I": ".###. ..#.. ..#.. ..#.. ..#.. ..#.. .###.",
    "J": "..### ...#. ...#. ...#. ...#. #..#. .##..",
    "K": "#...# #..#. #.#.. ##... #.#.. #..#. #...#",
    "L": "#.... #.... #.... #.... #.... #.... #####",
    "M": "#...# ##.## #.#.# #.#.# #...# #...# #...#",
    "N": "#...# ##..# #.#.# #..## #...# #...# #...#",
    "O": ".###. #...# #...# #...# #...# #...# .###.",
    "P": "####. #...# #...# ####. #.... #.... #....",
    "Q": ".###. #...# #...# #...# #.#.# #..#. .##.#",
    "R": "####. #...# #...# ####. #.#.. #..#. #...#",
    "S": ".#### #.... #.... .###. ....# ....# ####.",
    "T": "##### ..#.. ..#.. ..#.. ..#.. ..#.. ..#..",
    "U": "#...# #...# #...# #...# #...# #...# .###.",
    "V": "#...# #...# #...# #...# #...# .#.#. ..#..",
    "W": "#...# #...# #...# #.#.# #.#.# #.#.# .#.#.",
    "X": "#...# #...# .#.#. ..#.. .#.#. #...# #...#",
    "Y": "#...# #...# .#.#. ..#.. ..#.. ..#.. ..#..",
    "Z": "##### ....# ...#. ..#.. .#... #.... #####",
    "0": ".###. #...# #..## #.#.# ##..# #...# .###.",
    "1": "..#.. .##.. ..#.. ..#.. ..#.. ..#.. .###.",
    "2": ".###. #...# ....# ...#. ..#.. .#... #####",
    "3": "##### ...#. ..#.. ...#. ....# #...# .###.",
    "4": "...#. ..##. .#.#. #..#. ##### ...#. ...#.",
    "5": "##### #.... ####. ....# ....# #...# .###.",
    "6": "..##. .#... #.... ####. #...# #...# .###.",
    "7": "##### ....# ...#. ..#.. .#... .#... .#...",
    "8": ".###. #...# #...# .###. #...# #...# .###.",
    "9": ".###. #...# #...# .#### ....# ...#. .##..",
    " ": "..... ..... ..... ..... ..... ..... .....",
    ".": "..... ..... ..... ..... ..... .##.. .##..",
    ",": "..... ..... ..... ..... .##.. ..#.. .#...",
    ":": "..... .##.. .##.. ..... .##.. .##.. .....",
    ";": "..... .##.. .##.. ..... .##.. ..#.. .#...",
    "/": "....# ....# ...#. ..#.. .#... #.... #....",
    "(": "...#. ..#.. .#... .#... .#... ..#.. ...#.",
    ")": ".#... ..#.. ...#. ...#. ...#. ..#.. .#...",
    "-": "..... ..... ..... ##### ..... ..... .....",
    "+": "..... ..#.. ..#.. ##### ..#.. ..#.. .....",
    "=": "..... ..... ##### ..... ##### ..... .....",
    "|": "..#.. ..#.. ..#.. ..#.. ..#.. ..#.. ..#..",
    "_": "..... ..... ..... ..... ..... ..... #####",
    "<": "...#. ..#.. .#... #.... .#... ..#.. ...#.",
    ">": ".#... ..#.. ...#. ....# ...#. ..#.. .#...",
    "%": "##... ##..# ...#. ..#.. .#... #..## ...##",
    "*": "..... ..#.. #.#.# .###. #.#.# ..#.. .....",
    "?": ".###. #...# ....# ...#. ..#.. ..... ..#..",
    "'": "..#.. ..#.. ..... ..... ..... ..... .....",
    "#": ".#.#. .#.#. ##### .#.#. ##### .#.#. .#.#.",
}
_G = {k: v.replace(" ", "") for k, v in _ROWS.items()}
_SUB = {"×": "X", "→": ">", "—": "-", "≤": "<", "é": "E"}


def _glyph(ch):
    ch = _SUB.get(ch, ch).upper()
    return _G.get(ch, _G["?"])


class Canvas:
    def __init__(self, w, h):
        self.w, self.h = w, h
        self.px = bytearray(b"\xff" * (w * h * 3))

    def rect(self, x0, y0, x1, y1, rgb):
        x0, x1 = max(0, int(x0)), min(self.w, int(x1))
        y0, y1 = max(0, int(y0)), min(self.h, int(y1))
        row = bytes(rgb) * (x1 - x0)
        for y in range(y0, y1):
            o = (y * self.w + x0) * 3
            self.px[o:o + len(row)] = row

    def text(self, x, y, s, scale=2, rgb=(0, 0, 0)):
        for ch in s:
            g = _glyph(ch)
            for r in range(7):
                for c in range(5):
                    if g[r * 5 + c] == "#":
                        self.rect(x + c * scale, y + r * scale, x + (c + 1) * scale,
                                  y + (r + 1) * scale, rgb)
            x += 6 * scale
        return x

    def text_vertical(self, x, y, s, scale=2, rgb=(0, 0, 0)):
        """Text rotated 90° counter-clockwise, reading upwards from (x, y)."""
        for ch in s:
            g = _glyph(ch)
            for r in range(7):
                for c in range(5):
                    if g[r * 5 + c] == "#":
                        px, py = x + r * scale, y - (c + 1) * scale
                        self.rect(px, py, px + scale, py + scale, rgb)
            y -= 6 * scale

    def save(self, path):
        raw = b"".join(b"\x00" + bytes(self.px[y * self.w * 3:(y + 1) * self.w * 3])
                       for y in range(self.h))

        def chunk(tag, data):
            return (struct.pack(">I", len(data)) + tag + data
                    + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF))
        png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", self.w, self.h, 8, 2, 0, 0, 0))
               + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))
        with open(path, "wb") as f:
            f.write(png)


def bar_chart(bars, title, xlabel, path):
    """bars: (label, ratio, limit or None). Green when ratio <= limit (or 1.0), else red."""
    s = 2
    cw = 6 * s
    label_w = max(len(b[0]) for b in bars) * cw + 20
    plot_w = 520
    bar_h, gap = 18, 8
    title_lines = title.split("\n")
    top = 20 + len(title_lines) * 22 + 34
    legend = "GREEN: MEETS TARGET (OR <= 1.0)  RED: MISSES  BLUE MARK: TARGET"
    h = top + len(bars) * (bar_h + gap) + 80
    w = max(40 + label_w + plot_w + 80, 40 + label_w + len(legend) * cw + 20,
            40 + max(len(t) for t in title_lines) * cw,
            40 + label_w + plot_w // 2 + len(xlabel) * cw // 2 + 20)
    cv = Canvas(w, h)
    for i, line in enumerate(title_lines):
        cv.text(20, 16 + i * 22, line, s)
    xmax = min(4.0, max(1.6, max(b[1] for b in bars) * 1.15))  # longer bars are cut at 4x
    x0 = 40 + label_w
    sx = plot_w / xmax
    for i, (label, r, lim) in enumerate(bars):
        y = top + i * (bar_h + gap)
        cv.text(x0 - 10 - len(label) * cw, y + 2, label, s)
        ok = r <= (lim if lim is not None else 1.0)
        rc = min(r, xmax)
        cv.rect(x0, y, x0 + rc * sx, y + bar_h, (46, 139, 87) if ok else (192, 57, 43))
        cv.text(x0 + rc * sx + 6, y + 2, f"{r:.2f}X" + (" (CUT)" if r > xmax else ""), s)
        if lim is not None:
            cv.rect(x0 + lim * sx - 2, y - 3, x0 + lim * sx + 2, y + bar_h + 3, (31, 78, 156))
    yb = top + len(bars) * (bar_h + gap)
    cv.rect(x0, top - 4, x0 + 2, yb, (0, 0, 0))
    cv.rect(x0, yb, x0 + plot_w, yb + 2, (0, 0, 0))
    cv.rect(x0 + sx - 1, top - 4, x0 + sx + 1, yb, (90, 90, 90))
    t = 0.0
    while t <= xmax + 1e-9:
        px = x0 + t * sx
        cv.rect(px, yb, px + 2, yb + 6, (0, 0, 0))
        cv.text(px - 10, yb + 10, f"{t:.1f}", s)
        t += 0.5 if xmax <= 4 else 1.0
    cv.text(x0 + plot_w // 2 - len(xlabel) * cw // 2, yb + 34, xlabel, s)
    head = "CASE: ANYSEND ROW / PEER ROW"
    cv.text(x0 - 10 - len(head) * cw, top - 24, head, s, (60, 60, 60))
    cv.text(x0, yb + 56, legend, s, (60, 60, 60))
    cv.save(path)
