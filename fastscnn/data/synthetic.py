"""SynthCity: procedurally drawn street scenes in the Cityscapes layout.

Cityscapes needs a login and 11 GB; SynthCity is drawn in seconds, always the same for a
seed, and read by the same ``CityscapesDataset``. Each image is a street seen from a car:
a pinhole camera at height ``h`` (about 1.5 m) looks along the road. World points are in
metres (X right, Y up, Z forward) and project to pixels as::

    x = cx + f * X / Z            y = horizon + f * (h - Y) / Z

so the road edges, lane marks, facades and kerbs all run to one vanishing point, and an
object's size in pixels falls as 1 / Z.

Drawing: objects are painted far to near (painter's algorithm) on two canvases at once,
the label map (official labelIds) and a flat-colour image; a third canvas collects cast
shadows. Numpy then turns the flat colours into a photo-like image, all at once::

    image = flat_colour * texture(class) * lighting * (1 - shadow) + sensor noise

with texture = noise at three scales, weighted per class (leafy vegetation, grainy
asphalt, smooth cars), a sky gradient with clouds, and per-image light level and colour
cast. Per-instance colours, sizes and positions vary, so a network has to learn shapes
and context, not look up colours.

Classes drawn: road (lane marks, zebra crossings), sidewalk (tiles), building (windows,
shops), wall, fence, pole, traffic light, traffic sign, vegetation (trees, hedges, tree
lines), terrain, sky, person, rider, car, truck, bus, bicycle, and two void labels that
training ignores: the "ego vehicle" bonnet and "static" bins. Never drawn: train, motorcycle.
Thin and small things (poles, signs, lights, people, bicycles) are a little larger and
more frequent than in Cityscapes, so that Fast-SCNN trained for minutes at 128x256 sees
enough of them to learn them.

Speed: about 30 ms of CPU per 256x512 image (the numpy compositing and the Python loop
over a few hundred polygons), plus PNG writing; images are drawn in threads.
"""
import argparse
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from cityscapesscripts.helpers.labels import name2label
from PIL import Image, ImageDraw, ImageFilter
from tqdm import tqdm

from fastscnn.data.cityscapes import IMAGE_SUFFIX, LABEL_SUFFIX
from fastscnn.errors import InputError

CITIES = {"train": ("pixelburg", "rasterdam", "vectoria"), "val": ("numpyville", "tensorstadt")}
FRAME = 19  # Cityscapes annotates frame 19 of each 30-frame snippet
MARKER = "synthcity.json"
VERSION = 1
NEAR = 0.5  # metres: points closer than this are pushed back to keep the projection finite
# Draw-order keys (larger = earlier) for things along the street edge: they stand farther
# out than anything on the road or sidewalk, so they go first, far to near among themselves.
BEHIND, ALONG = 1e6, 1e5  # facades and tree lines; walls, hedges and fences in front of them

ID = {name: name2label[name].id for name in (
    "ego vehicle", "static", "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light",
    "traffic sign", "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "bicycle")}

# Texture amplitude per class of noise at three scales: per pixel, ~4 px blobs, ~24 px blobs.
TEXTURES = {
    "road": (0.07, 0.05, 0.08), "sidewalk": (0.05, 0.04, 0.06), "building": (0.03, 0.05, 0.10),
    "wall": (0.05, 0.09, 0.08), "fence": (0.06, 0.06, 0.05), "pole": (0.03, 0.02, 0.03),
    "traffic light": (0.02, 0.02, 0.02), "traffic sign": (0.02, 0.02, 0.02), "vegetation": (0.12, 0.20, 0.12),
    "terrain": (0.10, 0.11, 0.12), "person": (0.03, 0.04, 0.03), "rider": (0.03, 0.04, 0.03),
    "car": (0.02, 0.02, 0.05), "truck": (0.02, 0.03, 0.05), "bus": (0.02, 0.02, 0.05),
    "bicycle": (0.03, 0.02, 0.02), "static": (0.04, 0.04, 0.04), "ego vehicle": (0.02, 0.02, 0.03),
}
TEXTURE = np.zeros((256, 3), dtype=np.float32)  # the same, indexed by labelId (sky: 0, it gets clouds)
TEXTURE[[ID[name] for name in TEXTURES]] = list(TEXTURES.values())

FACADES = [(200, 190, 170), (165, 160, 152), (140, 140, 148), (160, 92, 72), (214, 204, 188),
           (186, 168, 138), (115, 115, 122), (198, 170, 150), (176, 186, 190)]
CAR_PAINTS = [(28, 28, 32), (205, 205, 210), (125, 22, 22), (22, 42, 110), (140, 140, 146), (232, 232, 230),
              (58, 80, 62), (172, 132, 40), (90, 60, 40)]
SKIN = [(236, 200, 170), (208, 160, 122), (160, 110, 80), (100, 70, 50)]


# ---------------------------------------------------------------------------------------------
# Camera, canvases, colours
# ---------------------------------------------------------------------------------------------
class _Camera:
    """Pinhole camera at height ``h`` looking along +Z, with a random pose per scene."""

    def __init__(self, rng, height, width):
        self.f = width * rng.uniform(0.75, 0.95)
        self.cx = width * rng.uniform(0.4, 0.6)
        self.horizon = height * rng.uniform(0.36, 0.48)
        self.h = rng.uniform(1.3, 1.7)

    def __call__(self, X, Z, Y=0.0):
        """Pixel (x, y) of the world point (X, Y, Z); Y defaults to the ground."""
        Z = max(Z, NEAR)
        return (self.cx + self.f * X / Z, self.horizon + self.f * (self.h - Y) / Z)

    def px(self, metres, Z):
        """How many pixels ``metres`` span at depth Z."""
        return self.f * metres / max(Z, NEAR)


class _Canvas:
    """The label map, the flat-colour image and the shadow mask, painted together.

    Painting an object clears the shadow under it: an object's own shadow, drawn just
    before it, then darkens only what lies behind it.
    """

    def __init__(self, height, width):
        self.label = Image.new("L", (width, height), ID["sky"])
        self.color = Image.new("RGB", (width, height), (128, 128, 128))
        self.shadow = Image.new("L", (width, height), 0)
        self._label = ImageDraw.Draw(self.label)
        self._color = ImageDraw.Draw(self.color)
        self._shadow = ImageDraw.Draw(self.shadow)

    def _paint(self, cls, rgb, shape):
        # cls None paints colour only: a detail (window, lane mark) keeping the class below it
        if cls is not None:
            shape(self._label, ID[cls])
            shape(self._shadow, 0)
        shape(self._color, rgb)

    def polygon(self, pts, cls, rgb):
        """Fill polygon ``pts`` (pixel coordinates) with class ``cls`` and colour ``rgb``."""
        self._paint(cls, rgb, lambda draw, value: draw.polygon(pts, fill=value))

    def ellipse(self, box, cls, rgb, width=0):
        """Filled ellipse in bounding box ``box``, or only its outline when ``width`` > 0."""
        x0, y0, x1, y1 = box
        box = (min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))
        if width:
            self._paint(cls, rgb, lambda draw, value: draw.ellipse(box, outline=value, width=width))
        else:
            self._paint(cls, rgb, lambda draw, value: draw.ellipse(box, fill=value))

    def line(self, pts, cls, rgb, width):
        """Polyline through ``pts``, ``width`` pixels wide."""
        width = max(1, round(width))
        self._paint(cls, rgb, lambda draw, value: draw.line(pts, fill=value, width=width, joint="curve"))

    def shade(self, pts, amount=255):
        """Put ``pts`` in shadow (255: full cast shadow; less: a surface turned from the sun)."""
        self._shadow.polygon(pts, fill=amount)


def _random_rgb(rng):
    return tuple(int(v) for v in rng.integers(20, 230, 3))


def _vary(rng, rgb, spread=12.0):
    return tuple(min(255, max(0, int(v + d))) for v, d in zip(rgb, rng.normal(0, spread, 3)))


def _tone(rgb, k):
    return tuple(int(min(255, v * k)) for v in rgb)


def _pick(rng, options):
    return options[rng.integers(len(options))]


# ---------------------------------------------------------------------------------------------
# Shapes in world coordinates
# ---------------------------------------------------------------------------------------------
def _ground_quad(cv, cam, x0, x1, z0, z1, cls, rgb):
    cv.polygon([cam(x0, z0), cam(x1, z0), cam(x1, z1), cam(x0, z1)], cls, rgb)


def _box(cv, cam, x0, x1, y0, y1, z0, z1, cls, rgb):
    """Paint the faces of an axis-aligned box that face the camera (the visible faces of a
    convex box never overlap, so their order does not matter). Returns the world corners
    of the painted faces by name ("front", "side", ...) for details painted on them."""
    faces = {}
    if x0 > 0:
        faces["side"] = ([(x0, y0, z0), (x0, y0, z1), (x0, y1, z1), (x0, y1, z0)], 0.78)
    elif x1 < 0:
        faces["side"] = ([(x1, y0, z0), (x1, y0, z1), (x1, y1, z1), (x1, y1, z0)], 0.78)
    if y1 < cam.h:
        faces["top"] = ([(x0, y1, z0), (x1, y1, z0), (x1, y1, z1), (x0, y1, z1)], 1.12)
    elif y0 > cam.h:
        faces["bottom"] = ([(x0, y0, z0), (x1, y0, z0), (x1, y0, z1), (x0, y0, z1)], 0.6)
    faces["front"] = ([(x0, y0, z0), (x1, y0, z0), (x1, y1, z0), (x0, y1, z0)], 1.0)
    for corners, k in faces.values():
        cv.polygon([cam(x, z, y) for x, y, z in corners], cls, _tone(rgb, k))
    return {name: corners for name, (corners, _) in faces.items()}


def _paint_quad(cv, cam, corners, u0, u1, v0, v1, rgb):
    """Colour the sub-rectangle [u0, u1] x [v0, v1] (fractions) of a face given by 4 world corners."""
    a, b, c, d = corners

    def at(u, v):  # bilinear in world space, then project: the window keeps its perspective
        x, y, z = ((1 - v) * ((1 - u) * pa + u * pb) + v * ((1 - u) * pd + u * pc)
                   for pa, pb, pc, pd in zip(a, b, c, d))
        return cam(x, z, y)

    cv.polygon([at(u0, v0), at(u1, v0), at(u1, v1), at(u0, v1)], None, rgb)


def _flat(cam, Z, pts):
    """Project points (X, Y) of the plane at depth Z (facing the camera)."""
    return [cam(x, Z, y) for x, y in pts]


def _shadow_box(cv, cam, sun, x0, x1, z0, z1, height):
    """Approximate the shadow an (x0..x1, z0..z1, 0..height) block casts on the ground by
    sweeping its footprint along the sun direction."""
    for t in np.linspace(0.0, 1.0, 4):
        dx, dz = sun[0] * height * t, sun[1] * height * t
        cv.shade([cam(x0 + dx, z0 + dz), cam(x1 + dx, z0 + dz), cam(x1 + dx, z1 + dz), cam(x0 + dx, z1 + dz)])


# ---------------------------------------------------------------------------------------------
# Objects
# ---------------------------------------------------------------------------------------------
def _building(cv, cam, rng, sun, side, X, z0, z1, height, rgb):
    """A block whose facade lies in the plane x = X, with floors of windows and a shop floor."""
    x0, x1 = (X, X + side * 15.0) if side > 0 else (X - 15.0, X)
    faces = _box(cv, cam, x0, x1, 0.0, height, z0, z1, "building", rgb)
    facade = faces["side"]
    if sun[0] * side < 0:  # the sun is behind this row: its facades are in shade
        cv.shade([cam(x, z, y) for x, y, z in facade], 130)
    length = z1 - z0
    cv.polygon([cam(X, z, y) for z, y in ((z0, height - 0.6), (z1, height - 0.6), (z1, height), (z0, height))],
               None, _tone(rgb, 0.7))  # cornice
    col = rng.uniform(2.6, 4.0)
    n_cols = int(length // col)
    if n_cols == 0 or cam.px(col, z0) < 2.5:
        return
    floor = rng.uniform(3.0, 3.6)
    win_w, win_h = rng.uniform(0.4, 0.6), rng.uniform(1.3, 1.8)
    glass = _pick(rng, [(45, 55, 70), (70, 90, 115), (120, 140, 160), (30, 30, 35)])
    floors = np.arange(rng.uniform(3.6, 4.6), height - 1.5, floor) / height
    for j in range(n_cols):
        z = z0 + (j + 0.5) * length / n_cols
        if cam.px(col, z) < 2.5:
            break
        u = (j + 0.5) / n_cols
        du = win_w / n_cols / 2
        for v in floors:
            _paint_quad(cv, cam, facade, u - du, u + du, v, v + win_h / height, _vary(rng, glass, 10))
        if j % 2 == 0:
            _paint_quad(cv, cam, facade, u - 0.4 / n_cols, u + 0.4 / n_cols, 0.4 / height, 2.8 / height,
                        _vary(rng, (40, 45, 50), 12))


def _tree(cv, cam, rng, sun, X, Z):
    trunk_h = rng.uniform(1.8, 3.0)
    crown = rng.uniform(1.4, 2.6)
    _shadow_box(cv, cam, sun, X - crown * 0.7, X + crown * 0.7, Z - 0.5, Z + 0.5, trunk_h + crown)
    _box(cv, cam, X - 0.15, X + 0.15, 0.0, trunk_h + 0.5, Z, Z + 0.3, "vegetation", _vary(rng, (80, 62, 45)))
    green = _vary(rng, _pick(rng, [(60, 90, 40), (45, 75, 35), (85, 105, 45), (70, 85, 55)]), 10)
    for _ in range(rng.integers(4, 8)):
        cxm = X + rng.uniform(-0.6, 0.6) * crown
        cym = trunk_h + crown + rng.uniform(-0.5, 0.6) * crown
        r = crown * rng.uniform(0.55, 0.9)
        cv.ellipse([*cam(cxm - r, Z, cym + r), *cam(cxm + r, Z, cym - r)], "vegetation", _vary(rng, green, 14))


def _pole(cv, cam, rng, sun, X, Z, side):
    """A pole with, by chance, a street lamp arm, a traffic sign or a traffic light."""
    kind = rng.choice(["lamp", "sign", "light", "plain"], p=[0.25, 0.35, 0.3, 0.1])
    height = {"lamp": rng.uniform(6, 8.5), "sign": rng.uniform(2.6, 3.4),
              "light": rng.uniform(3.2, 4.2), "plain": rng.uniform(2.5, 5)}[kind]
    w = rng.uniform(0.12, 0.18)
    metal = _vary(rng, (120, 122, 125), 20)
    _shadow_box(cv, cam, sun, X - w, X + w, Z - w, Z + w, height)
    _box(cv, cam, X - w, X + w, 0.0, height, Z, Z + 2 * w, "pole", metal)
    if kind == "lamp":
        reach = -side * rng.uniform(1.5, 3.0)
        cv.line([cam(X, Z, height - 0.2), cam(X + reach, Z, height + 0.3)], "pole", metal, cam.px(0.12, Z))
        lx = X + reach
        cv.polygon(_flat(cam, Z, [(lx - 0.35, height + 0.35), (lx + 0.35, height + 0.35), (lx + 0.25, height + 0.1),
                                  (lx - 0.25, height + 0.1)]), "pole", _tone(metal, 0.8))
    elif kind == "sign":
        _sign(cv, cam, rng, X, Z - 0.05, height - 0.45)
    elif kind == "light":
        _traffic_light(cv, cam, rng, X, Z - 0.15, height - 0.65)
        if rng.random() < 0.4:
            _sign(cv, cam, rng, X, Z - 0.05, height - 1.6)


def _gantry(cv, cam, rng, sun, X, Z, X_end):
    """A mast at x = X with an arm over the road to x = X_end carrying traffic lights."""
    height = rng.uniform(5.5, 6.5)
    metal = _vary(rng, (110, 112, 115), 20)
    _shadow_box(cv, cam, sun, X - 0.15, X + 0.15, Z, Z + 0.3, height)
    _box(cv, cam, X - 0.15, X + 0.15, 0.0, height, Z, Z + 0.3, "pole", metal)
    cv.line([cam(X, Z, height - 0.3), cam(X_end, Z, height - 0.3)], "pole", metal, cam.px(0.18, Z))
    for x in np.linspace(X, X_end, rng.integers(2, 4))[1:]:
        _traffic_light(cv, cam, rng, x, Z - 0.05, height - 0.9)


def _sign(cv, cam, rng, X, Z, Y):
    r = rng.uniform(0.38, 0.55)
    shape = rng.integers(4)
    outer, inner = _pick(rng, [((200, 30, 30), (235, 235, 235)), ((30, 70, 170), (30, 70, 170)),
                               ((235, 235, 235), (30, 70, 170)), ((230, 190, 20), (240, 240, 240))])
    if shape == 0:  # round
        cv.ellipse([*cam(X - r, Z, Y + r), *cam(X + r, Z, Y - r)], "traffic sign", outer)
        cv.ellipse([*cam(X - 0.7 * r, Z, Y + 0.7 * r), *cam(X + 0.7 * r, Z, Y - 0.7 * r)], None, inner)
    elif shape == 1:  # warning triangle
        pts = [(X - r, Y - 0.8 * r), (X + r, Y - 0.8 * r), (X, Y + r)]
        cv.polygon(_flat(cam, Z, pts), "traffic sign", outer)
        cv.polygon(_flat(cam, Z, [(X + 0.6 * (x - X), Y + 0.6 * (y - Y) - 0.1 * r) for x, y in pts]), None, inner)
    elif shape == 2:  # rectangle
        corners = [(X - r, Y - 0.7 * r), (X + r, Y - 0.7 * r), (X + r, Y + 0.7 * r), (X - r, Y + 0.7 * r)]
        cv.polygon(_flat(cam, Z, corners), "traffic sign", outer)
        arrow = [(X - 0.5 * r, Y - 0.1 * r), (X + 0.5 * r, Y - 0.1 * r), (X, Y + 0.4 * r)]
        cv.polygon(_flat(cam, Z, arrow), None, inner)
    else:  # priority diamond
        cv.polygon(_flat(cam, Z, [(X - r, Y), (X, Y - r), (X + r, Y), (X, Y + r)]), "traffic sign", (235, 235, 235))
        cv.polygon(_flat(cam, Z, [(X - 0.6 * r, Y), (X, Y - 0.6 * r), (X + 0.6 * r, Y), (X, Y + 0.6 * r)]), None,
                   (230, 190, 20))


def _traffic_light(cv, cam, rng, X, Z, Y):
    body = _pick(rng, [(35, 35, 38), (55, 58, 52), (200, 170, 40)])
    _box(cv, cam, X - 0.22, X + 0.22, Y - 0.6, Y + 0.6, Z - 0.3, Z, "traffic light", body)
    lit = rng.integers(3)
    for k, rgb in enumerate([(230, 40, 30), (240, 180, 30), (40, 220, 90)]):
        y = Y + 0.36 - 0.36 * k
        cv.ellipse([*cam(X - 0.13, Z - 0.3, y + 0.13), *cam(X + 0.13, Z - 0.3, y - 0.13)], None,
                   rgb if k == lit else _tone(rgb, 0.3))


def _person(cv, cam, rng, sun, X, Z, cls="person"):
    """A pedestrian seen from the front or back, in the plane at depth Z."""
    h = rng.uniform(1.55, 1.95)
    skin, shirt, pants = _pick(rng, SKIN), _random_rgb(rng), _vary(rng, _pick(
        rng, [(30, 35, 60), (25, 25, 28), (90, 90, 95), (160, 140, 110), (60, 70, 100)]), 10)
    stride = rng.uniform(-0.1, 0.1) * h
    _shadow_box(cv, cam, sun, X - 0.2, X + 0.2, Z - 0.1, Z + 0.1, h)
    for s in (-1, 1):
        foot = X + s * 0.06 * h + s * stride / 2
        cv.polygon(_flat(cam, Z, [(X + s * 0.015 * h, 0.5 * h), (X + s * 0.105 * h, 0.5 * h),
                                  (foot + s * 0.03 * h, 0.0), (foot - s * 0.03 * h, 0.0)]), cls, pants)
        cv.polygon(_flat(cam, Z, [(X + s * 0.13 * h, 0.8 * h), (X + s * 0.17 * h, 0.79 * h),
                                  (X + s * 0.19 * h, 0.46 * h), (X + s * 0.15 * h, 0.46 * h)]), cls, _tone(shirt, 0.9))
    cv.polygon(_flat(cam, Z, [(X - 0.12 * h, 0.47 * h), (X + 0.12 * h, 0.47 * h), (X + 0.14 * h, 0.81 * h),
                              (X - 0.14 * h, 0.81 * h)]), cls, shirt)
    cv.ellipse([*cam(X - 0.06 * h, Z, h), *cam(X + 0.06 * h, Z, 0.8 * h)], cls, skin)
    cv.ellipse([*cam(X - 0.062 * h, Z, h + 0.01), *cam(X + 0.062 * h, Z, 0.92 * h)], None,
               _pick(rng, [(30, 25, 20), (90, 60, 30), (200, 180, 120), (120, 120, 120)]))


def _bicycle(cv, cam, rng, X, Z, facing, rider):
    """A bicycle side-on (wheels in the plane at depth Z), ridden when ``rider``."""
    frame = _vary(rng, _pick(rng, [(30, 30, 30), (160, 20, 20), (20, 60, 140), (200, 200, 200)]), 15)
    r, t = 0.34, cam.px(0.09, Z)
    rear, front = (X - facing * 0.52, r), (X + facing * 0.52, r)
    seat, pedal = (X - facing * 0.18, 0.92), (X, 0.3)
    head, bar = (X + facing * 0.40, 0.88), (X + facing * 0.36, 1.02)
    if rider:
        skin, top, legs = _pick(rng, SKIN), _random_rgb(rng), _vary(rng, (40, 40, 55), 15)
        hip, shoulder = (X - facing * 0.15, 1.0), (X + facing * 0.12, 1.52)
        knee = (X + facing * 0.12, 0.62)
        cv.line(_flat(cam, Z, [hip, knee, pedal]), "rider", legs, cam.px(0.14, Z))
        cv.line(_flat(cam, Z, [hip, shoulder]), "rider", top, cam.px(0.32, Z))
        cv.line(_flat(cam, Z, [shoulder, bar]), "rider", top, cam.px(0.09, Z))
        face = shoulder[0] + facing * 0.05
        cv.ellipse([*cam(face - 0.12, Z, 1.82), *cam(face + 0.12, Z, 1.58)], "rider", skin)
    for cx, cy in (rear, front):
        cv.ellipse([*cam(cx - r, Z, cy + r), *cam(cx + r, Z, cy - r)], "bicycle", (25, 25, 25),
                   width=max(1, round(t * 1.5)))
    cv.line(_flat(cam, Z, [rear, seat, pedal, rear]), "bicycle", frame, t)
    cv.line(_flat(cam, Z, [pedal, head, front]), "bicycle", frame, t)
    cv.line(_flat(cam, Z, [seat, head, bar]), "bicycle", frame, t)
    cv.line(_flat(cam, Z, [(seat[0] - 0.1, seat[1] + 0.04), (seat[0] + 0.1, seat[1] + 0.04)]), "bicycle",
            (20, 20, 20), t * 1.5)


def _vehicle(cv, cam, rng, sun, X, Z, kind):
    """A car, truck or bus seen from behind or ahead, its near end at depth Z."""
    paint = _vary(rng, _pick(rng, CAR_PAINTS), 10)
    dark, glass = (22, 22, 24), _vary(rng, (55, 65, 80), 10)
    lamp = (200, 30, 30) if rng.random() < 0.7 else (235, 230, 200)
    if kind == "car":
        w, length, top = rng.uniform(1.7, 1.9), rng.uniform(4.0, 4.7), rng.uniform(1.4, 1.55)
    elif kind == "truck":
        w, length, top = 2.45, rng.uniform(6.5, 9.0), rng.uniform(3.0, 3.6)
        paint = _vary(rng, _pick(rng, [(225, 225, 222), (180, 180, 185), (40, 80, 150), (200, 60, 40)]), 10)
    else:
        w, length, top = 2.55, rng.uniform(10.5, 12.5), rng.uniform(3.0, 3.3)
        paint = _vary(rng, _pick(rng, [(200, 40, 35), (230, 190, 40), (30, 90, 160), (230, 230, 225)]), 10)
    x0, x1, z1 = X - w / 2, X + w / 2, Z + length
    _shadow_box(cv, cam, sun, x0, x1, Z, z1, top * 0.8)
    cv.shade([cam(x0 - 0.15, Z - 0.2), cam(x1 + 0.15, Z - 0.2), cam(x1 + 0.15, z1), cam(x0 - 0.15, z1)])
    for zw in (z1 - 0.9, Z + 0.9):
        _box(cv, cam, x0 + 0.05, x1 - 0.05, 0.0, 0.66, zw - 0.33, zw + 0.33, kind, dark)
    if kind == "car":
        body = _box(cv, cam, x0, x1, 0.3, 0.95, Z, z1, kind, paint)
        cabin = _box(cv, cam, x0 + 0.12, x1 - 0.12, 0.95, top, Z + 0.9, z1 - 1.1, kind, paint)
        _paint_quad(cv, cam, cabin["front"], 0.1, 0.9, 0.12, 0.85, glass)
        if "side" in cabin:
            _paint_quad(cv, cam, cabin["side"], 0.08, 0.92, 0.12, 0.85, glass)
    elif kind == "truck":
        cab = _box(cv, cam, x0 + 0.05, x1 - 0.05, 0.5, top - 0.6, z1 - 2.2, z1, kind, _tone(paint, 0.9))
        if "side" in cab:
            _paint_quad(cv, cam, cab["side"], 0.45, 0.95, 0.55, 0.9, glass)
        body = _box(cv, cam, x0, x1, 0.8, top, Z, z1 - 2.4, kind, paint)
        _paint_quad(cv, cam, body["front"], 0.49, 0.51, 0.05, 0.95, _tone(paint, 0.6))
    else:
        body = _box(cv, cam, x0, x1, 0.3, top, Z, z1, kind, paint)
        _paint_quad(cv, cam, body["front"], 0.08, 0.92, 0.55, 0.9, glass)
        if "side" in body:
            _paint_quad(cv, cam, body["side"], 0.02, 0.98, 0.4, 0.82, glass)
    v_lamp = 0.55 if kind == "car" else 0.08
    for u in (0.05, 0.8):
        _paint_quad(cv, cam, body["front"], u, u + 0.15, v_lamp, v_lamp + 0.15, lamp)


def _ego_bonnet(cv, rng, height, width):
    """The bonnet of the recording car along the bottom edge (void: ignored in training)."""
    top = height * rng.uniform(0.86, 0.93)
    xs = np.linspace(-0.05, 1.05, 12) * width
    ys = top + (height - top) * 0.6 * ((xs / width - 0.5) * 2) ** 2
    pts = list(zip(xs, ys)) + [(width * 1.05, height + 2), (-0.05 * width, height + 2)]
    cv.polygon(pts, "ego vehicle", _vary(rng, _pick(rng, CAR_PAINTS), 8))


# ---------------------------------------------------------------------------------------------
# The scene
# ---------------------------------------------------------------------------------------------
def _street_side(cv, cam, rng, sun, side, inner, strip, walk, z_end, objects):
    """Ground, facades and furniture of one side of the street (side -1 left, +1 right).

    ``inner``: distance from the camera to the kerb; ``strip``: width of a grass verge
    (0 for none); ``walk``: sidewalk width. Things that stand on the ground are appended to
    ``objects`` as (depth, draw) for the far-to-near pass.
    """
    far = 400.0
    kerb, facade = inner + strip, inner + strip + walk
    if strip:
        _ground_quad(cv, cam, side * inner, side * kerb, NEAR, far, "terrain", _vary(rng, (95, 120, 55), 15))
    paving = _vary(rng, _pick(rng, [(160, 156, 150), (178, 150, 140), (145, 145, 150), (190, 184, 170)]), 10)
    _ground_quad(cv, cam, side * kerb, side * facade, NEAR, far, "sidewalk", paving)
    _ground_quad(cv, cam, side * kerb, side * (kerb + 0.25), NEAR, far, None, _tone(paving, 1.15))
    grout = _tone(paving, 0.75)
    for z in np.arange(rng.uniform(1, 2), 40.0, rng.uniform(1.0, 2.0)):
        cv.line([cam(side * kerb, z), cam(side * facade, z)], None, grout, cam.px(0.05, z))
    for x in np.arange(kerb + 1.0, facade, 1.0):
        cv.line([cam(side * x, NEAR), cam(side * x, 40.0)], None, grout, 1)

    if rng.random() < 0.75:
        z = NEAR
        while z < z_end:
            length = rng.uniform(8, 28)
            z1 = min(z + length, z_end)
            height = rng.uniform(7, 24)
            rgb = _vary(rng, _pick(rng, FACADES), 12)
            if sun[0] * side < 0:
                dx, dz = sun[0] * height, sun[1] * height
                X = side * facade
                cv.shade([cam(X, z), cam(X, z1), cam(X + dx, z1 + dz), cam(X + dx, z + dz)])
            objects.append((BEHIND + z, lambda z=z, z1=z1, h=height, c=rgb: _building(
                cv, cam, rng, sun, side, side * facade, z, z1, h, c)))
            front = rng.random()
            if front < 0.15:
                wall_h = rng.uniform(0.8, 2.2)
                objects.append((ALONG + z, lambda z=z, z1=z1, h=wall_h: _wall(
                    cv, cam, rng, side, side * facade, z, z1, h)))
            elif front < 0.3:
                fence_h = rng.uniform(1.0, 2.0)
                objects.append((ALONG + z, lambda z=z, z1=z1, h=fence_h: _fence(
                    cv, cam, rng, side * (facade - 0.3), z, z1, h)))
            z = z1 + (rng.uniform(2, 8) if rng.random() < 0.2 else 0.0)
    else:
        _park(cv, cam, rng, sun, side, facade, z_end, objects)

    for z in np.arange(rng.uniform(3, 10), 45.0, rng.uniform(8, 16)):
        objects.append((z, lambda z=z: _pole(cv, cam, rng, sun, side * (kerb + 0.5), z, side)))
    if rng.random() < 0.5:
        for z in np.arange(rng.uniform(3, 10), 70.0, rng.uniform(7, 14)):
            objects.append((z, lambda z=z: _tree(cv, cam, rng, sun, side * (kerb + walk * rng.uniform(0.5, 0.8)), z)))
    for _ in range(rng.integers(1, 8)):
        z = rng.uniform(4, 20)
        objects.append((z, lambda z=z: _person(cv, cam, rng, sun, side * (kerb + rng.uniform(0.5, walk - 0.4)), z)))
    for _ in range(rng.integers(0, 4)):
        z = rng.uniform(3.5, 20)
        objects.append((z, lambda z=z: _bicycle(cv, cam, rng, side * (kerb + rng.uniform(0.8, walk - 0.6)), z,
                                                _pick(rng, (-1, 1)), False)))
    for _ in range(rng.integers(0, 3)):
        z = rng.uniform(4, 30)
        x = side * (facade - rng.uniform(0.4, 1.0))
        objects.append((z, lambda z=z, x=x: _box(cv, cam, x - 0.3, x + 0.3, 0.0, 1.0, z, z + 0.6, "static",
                                                 _vary(rng, (60, 75, 65), 20))))


def _park(cv, cam, rng, sun, side, edge, z_end, objects):
    """Instead of buildings: grass, trees, a tree line at the back, and a hedge, fence or wall."""
    _ground_quad(cv, cam, side * edge, side * (edge + 60), NEAR, 400.0, "terrain", _vary(rng, (105, 125, 60), 18))
    back = edge + rng.uniform(12, 25)
    zs = np.linspace(NEAR, z_end, 40)
    tops = np.clip(rng.uniform(6, 12) + np.cumsum(rng.normal(0, 0.8, zs.size)), 4, 16)
    pts = [cam(side * back, z, y) for z, y in zip(zs, tops)] + [cam(side * back, z_end), cam(side * back, NEAR)]
    objects.append((BEHIND + z_end, lambda: cv.polygon(pts, "vegetation", _vary(rng, (55, 80, 40), 12))))
    for z in rng.uniform(4, z_end, rng.integers(2, 7)):
        objects.append((z, lambda z=z: _tree(cv, cam, rng, sun, side * (edge + rng.uniform(2, back - edge - 2)), z)))
    kind = rng.choice(["hedge", "fence", "wall", "none"])
    z0, z1 = rng.uniform(NEAR, 15), rng.uniform(30, z_end)
    x0, x1 = sorted((side * (edge - 0.6), side * edge))
    if kind == "hedge":
        h = rng.uniform(0.8, 1.6)
        objects.append((ALONG, lambda: _box(cv, cam, x0, x1, 0.0, h, z0, z1, "vegetation",
                                            _vary(rng, (50, 85, 40), 12))))
    elif kind == "wall":
        h = rng.uniform(0.8, 2.2)
        objects.append((ALONG, lambda: _wall(cv, cam, rng, side, side * edge, z0, z1, h)))
    elif kind == "fence":
        h = rng.uniform(1.0, 2.0)
        objects.append((ALONG, lambda: _fence(cv, cam, rng, side * edge, z0, z1, h)))


def _wall(cv, cam, rng, side, X, z0, z1, h):
    """A free-standing concrete wall, 0.3 m thick, on the street side of the line x = X,
    with a coping on top and joints every 2.5 m."""
    concrete = _vary(rng, _pick(rng, [(178, 176, 170), (158, 160, 164), (196, 188, 172)]), 10)
    x0, x1 = sorted((X - side * 0.3, X))
    faces = _box(cv, cam, x0, x1, 0.0, h, z0, z1, "wall", concrete)
    face = faces["side"]
    _paint_quad(cv, cam, face, 0.0, 1.0, 0.88, 1.0, _tone(concrete, 1.15))
    length = z1 - z0
    for u in np.arange(2.5, length, 2.5) / length:
        _paint_quad(cv, cam, face, u - 0.04 / length, u + 0.04 / length, 0.0, 0.88, _tone(concrete, 0.7))


def _fence(cv, cam, rng, X, z0, z1, h):
    """A railing in the plane x = X: dark infill with bars and rails (all of it labelled fence)."""
    metal = _vary(rng, _pick(rng, [(110, 115, 110), (60, 90, 60), (150, 140, 120)]), 12)
    cv.polygon([cam(X, z0), cam(X, z1), cam(X, z1, h), cam(X, z0, h)], "fence", _tone(metal, 0.65))
    for z in np.arange(z0, z1, 0.5):
        if cam.px(0.5, z) < 2:
            break
        cv.line([cam(X, z), cam(X, z, h)], None, metal, cam.px(0.06, z))
    for y in (0.15, h - 0.1):
        cv.line([cam(X, z0, y), cam(X, z1, y)], None, metal, 1)


def _road(cv, cam, rng, left, right, objects, sun):
    """Asphalt between x = left and x = right with lane marks, a zebra crossing by chance,
    and the vehicles, cyclists and crossing pedestrians on it."""
    far = 400.0
    asphalt = _vary(rng, _pick(rng, [(80, 80, 84), (98, 96, 94), (66, 68, 72), (108, 105, 104)]), 8)
    _ground_quad(cv, cam, left, right, NEAR, far, "road", asphalt)
    paint = _pick(rng, [(225, 225, 220), (220, 215, 200), (215, 190, 60)])
    for x in (left + 0.3, right - 0.45):
        _ground_quad(cv, cam, x, x + 0.15, NEAR, far, None, _tone(paint, 0.9))
    lanes = np.arange(left + 3.4, right - 2.0, 3.4)
    dash, gap = rng.uniform(2, 4), rng.uniform(4, 8)
    for x in lanes:
        for z in np.arange(rng.uniform(NEAR, gap), 120, dash + gap):
            _ground_quad(cv, cam, x - 0.07, x + 0.07, z, z + dash, None, paint)
    if rng.random() < 0.3:
        z0 = rng.uniform(6, 16)
        for x in np.arange(left + 0.4, right - 0.5, 1.0):
            _ground_quad(cv, cam, x, x + 0.5, z0, z0 + 3.0, None, paint)
        for _ in range(rng.integers(0, 4)):
            z = z0 + rng.uniform(0.5, 2.5)
            objects.append((z, lambda z=z: _person(cv, cam, rng, sun, rng.uniform(left + 0.5, right - 0.5), z)))

    if rng.random() < 0.5:
        z, side = rng.uniform(8, 25), _pick(rng, (-1, 1))
        mast = (right + 0.6) if side > 0 else (left - 0.6)
        arm_end = mast + rng.uniform(0.5, 1.0) * ((left + right) / 2 - mast)
        objects.append((z, lambda: _gantry(cv, cam, rng, sun, mast, z, arm_end)))

    centres = np.arange(left + 1.7, right - 1.5, 3.4)
    taken = []
    for kind, count in (("car", rng.integers(0, 5)), ("truck", rng.random() < 0.3), ("bus", rng.random() < 0.3)):
        for _ in range(int(count)):
            x, z = rng.choice(centres) + rng.uniform(-0.3, 0.3), rng.uniform(8, 45)
            if all(abs(x - xt) > 2.5 or abs(z - zt) > 14 for xt, zt in taken):
                taken.append((x, z))
                objects.append((z, lambda x=x, z=z, k=kind: _vehicle(cv, cam, rng, sun, x, z, k)))
    for edge, s in ((left, -1), (right, 1)):
        if rng.random() < 0.5:
            for z in np.arange(rng.uniform(3, 10), 55, rng.uniform(5.0, 9.0)):
                if rng.random() < 0.75:
                    objects.append((z, lambda x=edge - s * 1.15, z=z: _vehicle(cv, cam, rng, sun, x, z, "car")))
    for _ in range(rng.integers(0, 4)):
        z = rng.uniform(5, 18)
        x = rng.uniform(left + 0.8, right - 0.8)
        objects.append((z, lambda x=x, z=z: _bicycle(cv, cam, rng, x, z, _pick(rng, (-1, 1)), True)))


def _backdrop(cv, cam, rng, z_end, width):
    """What closes the street at depth z_end: a row of buildings or a tree line."""
    if rng.random() < 0.7:
        x = -width
        while x < width:
            w = rng.uniform(8, 20)
            _box(cv, cam, x, x + w, 0.0, rng.uniform(8, 30), z_end, z_end + 20, "building",
                 _vary(rng, _pick(rng, FACADES), 12))
            x += w
    else:
        xs = np.linspace(-width, width, 30)
        tops = rng.uniform(6, 14, xs.size)
        cv.polygon(_flat(cam, z_end, list(zip(xs, tops)) + [(width, 0.0), (-width, 0.0)]), "vegetation",
                   _vary(rng, (60, 85, 45), 12))


def _smooth_noise(rng, height, width, cell):
    """Gaussian noise on a grid of ``cell`` pixels, bilinearly upsampled: blobs ~``cell`` wide."""
    small = rng.standard_normal((height // cell + 2, width // cell + 2)).astype(np.float32)
    return np.asarray(Image.fromarray(small, mode="F").resize((width, height), Image.BILINEAR))


def _blur_kernel(sigma):
    """3x3 Gaussian blur (the lens): softens the hard polygon edges of the colour image."""
    g = np.exp(-0.5 / sigma**2)
    weights = np.outer([g, 1, g], [g, 1, g])
    return ImageFilter.Kernel((3, 3), weights.ravel().tolist(), scale=weights.sum())


def render_scene(rng, size=(256, 512)):
    """Draw one street scene of ``size`` (H, W) from generator ``rng``.

    Returns ``(image, label_ids)``: uint8 RGB (H, W, 3) and uint8 (H, W) official labelIds.
    """
    height, width = size
    cam = _Camera(rng, height, width)
    cv = _Canvas(height, width)
    sunny = rng.random() < 0.6
    sun = (rng.uniform(-0.9, 0.9), rng.uniform(-0.6, 0.9))
    objects = []

    cv.polygon([(0, cam.horizon), (width, cam.horizon), (width, height), (0, height)], "terrain",
               _vary(rng, (110, 118, 80), 15))
    left, right = -rng.uniform(3.5, 9.0), rng.uniform(3.5, 9.0)
    z_end = rng.uniform(70, 220)
    _road(cv, cam, rng, left, right, objects, sun)
    for side, inner in ((-1, -left), (1, right)):
        strip = rng.uniform(1.2, 3.0) if rng.random() < 0.4 else 0.0
        _street_side(cv, cam, rng, sun, side, inner, strip, rng.uniform(2.5, 6.0), z_end, objects)
    _backdrop(cv, cam, rng, z_end, 60.0)
    for _, draw in sorted(objects, key=lambda o: -o[0]):
        draw()
    if rng.random() < 0.35:
        _ego_bonnet(cv, rng, height, width)

    label = np.array(cv.label)
    cell = max(2, width // 128)
    texture = (1 + TEXTURE[label, 0] * rng.standard_normal((height, width), dtype=np.float32)
               + TEXTURE[label, 1] * _smooth_noise(rng, height, width, cell)
               + TEXTURE[label, 2] * _smooth_noise(rng, height, width, 6 * cell))
    shadow = np.asarray(cv.shadow.filter(ImageFilter.BoxBlur(max(1, width // 256))), dtype=np.float32) / 255
    light = texture * (1 - (rng.uniform(0.35, 0.55) * sunny + 0.1) * shadow)
    img = np.asarray(cv.color, dtype=np.float32) * light[..., None]

    rows = np.arange(height, dtype=np.float32)[:, None, None] / max(cam.horizon, 1)
    zenith = np.float32(_vary(rng, (70, 120, 190) if sunny else (150, 155, 165), 15))
    near_horizon = np.float32(_vary(rng, (185, 205, 225) if sunny else (200, 200, 205), 10))
    sky = zenith + (near_horizon - zenith) * np.clip(rows, 0, 1)
    clouds = np.clip(_smooth_noise(rng, height, width, 12 * cell) - rng.uniform(0.0, 1.0), 0, 1)[..., None]
    sky = sky + (235 - sky) * clouds * rng.uniform(0.3, 0.9)
    img = np.where((label == ID["sky"])[..., None], sky, img)

    gain = np.float32(rng.uniform(0.7, 1.2) * rng.uniform(0.92, 1.08, 3))
    across = 1 + np.float32(rng.uniform(-0.15, 0.15)) * np.linspace(-1, 1, width, dtype=np.float32)[None, :, None]
    img = np.clip(img * (gain * across), 0, 255).astype(np.uint8)
    img = np.asarray(Image.fromarray(img).filter(_blur_kernel(rng.uniform(0.4, 0.8) * width / 512)), dtype=np.float32)
    img += np.float32(rng.uniform(2, 6)) * rng.standard_normal(img.shape, dtype=np.float32)
    return np.clip(img, 0, 255).astype(np.uint8), label


# ---------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------
def synthcity_paths(root, split, i):
    """The (image, label) paths of image ``i`` of ``split`` in a SynthCity folder."""
    cities = CITIES[split]
    city, seq = cities[i % len(cities)], i // len(cities)
    stem = f"{city}_{seq:06d}_{FRAME:06d}"
    root = Path(root)
    return (root / "leftImg8bit" / split / city / (stem + IMAGE_SUFFIX),
            root / "gtFine" / split / city / (stem + LABEL_SUFFIX))


def _write_one(root, split, i, size, seed):
    rng = np.random.default_rng([seed, list(CITIES).index(split), i])
    image, label = render_scene(rng, size)
    image_path, label_path = synthcity_paths(root, split, i)
    for path, array in ((image_path, image), (label_path, label)):
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".part")  # renamed when complete: no half-written PNGs
        Image.fromarray(array).save(partial, format="PNG", compress_level=1)
        os.replace(partial, path)


def generate_synthcity(root, num_train, num_val, size=(256, 512), seed=0, progress=False):
    """Write SynthCity into ``root`` in the Cityscapes layout and return ``root`` as a Path.

    ``size`` is (H, W). Each image depends only on (seed, split, index), so the files are
    byte-for-byte the same for a seed. The marker file ``synthcity.json``, written first,
    records the parameters: a folder holding the complete set is left alone, an
    interrupted one is completed, and InputError (a ValueError) is raised for a folder
    holding another SynthCity or Cityscapes-like data without the marker (so real data is
    never mixed in). ``progress`` shows a progress bar on stderr in a terminal, and a line per
    10% of the images elsewhere (a log).
    """
    root = Path(root)
    spec = {"version": VERSION, "num_train": int(num_train), "num_val": int(num_val),
            "size": [int(s) for s in size], "seed": int(seed)}
    jobs = [(split, i) for split, n in (("train", spec["num_train"]), ("val", spec["num_val"])) for i in range(n)]
    marker = root / MARKER
    if marker.is_file():
        found = json.loads(marker.read_text())
        if found != spec:
            raise InputError(f"{root} already holds a different SynthCity ({found}); asked for {spec}. "
                             f"Delete it or choose another folder.")
        if all(p.is_file() for job in jobs for p in synthcity_paths(root, *job)):
            return root
    elif (root / "leftImg8bit").exists() or (root / "gtFine").exists():
        raise InputError(f"{root} holds leftImg8bit/ or gtFine/ but no {MARKER}: it is not a SynthCity folder. "
                         f"Choose another folder.")
    root.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps(spec, indent=1) + "\n")
    terminal = progress and sys.stderr.isatty()
    with ThreadPoolExecutor(os.cpu_count()) as pool, \
            tqdm(total=len(jobs), desc="SynthCity", disable=not terminal) as bar:
        for done, _ in enumerate(pool.map(lambda job: _write_one(root, *job, tuple(spec["size"]), seed), jobs), 1):
            bar.update(1)
            if progress and not terminal and done * 10 // len(jobs) > (done - 1) * 10 // len(jobs):
                print(f"SynthCity: {done} of {len(jobs)} images ({100 * done // len(jobs)}%) in {root}",
                      file=sys.stderr, flush=True)  # a log gets a line per 10%, not a bar
    return root


def main(argv=None):
    """Command line: ``python -m fastscnn.data.synthetic --out DIR [--train N --val N ...]``."""
    parser = argparse.ArgumentParser(description="Draw the SynthCity data set in the Cityscapes layout.")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--train", type=int, default=300, help="number of training images")
    parser.add_argument("--val", type=int, default=60, help="number of validation images")
    parser.add_argument("--height", type=int, default=256)
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    root = generate_synthcity(args.out, args.train, args.val, (args.height, args.width), args.seed, progress=True)
    print(f"SynthCity ({args.train} train + {args.val} val, {args.height}x{args.width}) in {root} "
          f"[{time.perf_counter() - start:.1f} s]")


if __name__ == "__main__":
    main()
