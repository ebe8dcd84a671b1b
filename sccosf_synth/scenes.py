"""Procedural *synthetic* road scenes: visible image, thermal image and MSRS-style label map.

Why this exists: the MSRS segmentation labels and training split are not available here, so the
segmentation head can only be trained and measured on labelled data we make ourselves. These scenes
are cartoons, not photographs: flat-shaded polygons with noise textures, drawn with a pinhole
ground-plane perspective. They exercise the *structure* of the task (small hot pedestrians that
vanish in a dark visible image, cars with headlight glare, thin kerbs and guardrails, rare classes)
but a model that scores well on them has not been shown to work on real cameras.

Everything is drawn with OpenCV polygon fills and vectorised numpy noise; one 480x640 scene takes a
few milliseconds. The output is a pure function of ``seed`` (a ``numpy.random.Generator``).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

# MSRS class ids (kept local: this module needs only numpy and OpenCV).
UNLABELLED, CAR, PERSON, BIKE, CURVE, CAR_STOP, GUARDRAIL, COLOR_CONE, BUMP = range(9)
NUM_CLASSES = 9

_ROAD_WIDTH_M = 7.0  # road width at the image bottom, metres: fixes the pixels-per-metre scale


@dataclass
class Scene:
    """One synthetic, perfectly labelled (but unrealistic) thermal/visible pair.

    ``labels`` are registered to ``rgb``; ``thermal`` is shifted from that geometry by
    ``thermal_shift`` (dx, dy pixels) when misregistration was asked for.
    """

    rgb: np.ndarray  # uint8 HxWx3, RGB order
    thermal: np.ndarray  # uint8 HxW
    labels: np.ndarray  # uint8 HxW, MSRS classes 0..8
    night: bool
    seed: int
    thermal_shift: tuple[float, float] = (0.0, 0.0)


class _Canvas:
    """Three aligned canvases drawn together so label, colour and temperature never disagree."""

    def __init__(self, h: int, w: int) -> None:
        self.labels = np.zeros((h, w), np.uint8)
        self.rgb = np.zeros((h, w, 3), np.float32)
        self.temp = np.zeros((h, w), np.float32)
        self.lights: list[tuple[int, int, float, float]] = []  # night light sources (x, y, radius, power)

    def fill(self, pts: np.ndarray, label: int | None, rgb: tuple[float, float, float], temp: float) -> None:
        poly = [np.round(pts).astype(np.int32).reshape(-1, 1, 2)]
        if label is not None:
            cv2.fillPoly(self.labels, poly, int(label))
        cv2.fillPoly(self.rgb, poly, tuple(float(c) for c in rgb))
        cv2.fillPoly(self.temp, poly, float(temp))

    def circle(
        self,
        c: tuple[float, float],
        r: float,
        label: int | None,
        rgb: tuple,
        temp: float,
        thickness: int = -1,
    ) -> None:
        cc, rr = (round(c[0]), round(c[1])), max(1, round(r))
        if label is not None:
            cv2.circle(self.labels, cc, rr, int(label), thickness)
        cv2.circle(self.rgb, cc, rr, tuple(float(v) for v in rgb), thickness)
        cv2.circle(self.temp, cc, rr, float(temp), thickness)

    def line(
        self,
        p: tuple[float, float],
        q: tuple[float, float],
        t: float,
        label: int | None,
        rgb: tuple,
        temp: float,
    ) -> None:
        a, b, tt = (round(p[0]), round(p[1])), (round(q[0]), round(q[1])), max(1, round(t))
        if label is not None:
            cv2.line(self.labels, a, b, int(label), tt)
        cv2.line(self.rgb, a, b, tuple(float(v) for v in rgb), tt)
        cv2.line(self.temp, a, b, float(temp), tt)


class _Geometry:
    """Flat-ground perspective: scale s(y) grows linearly from 0 at the horizon to 1 at the bottom."""

    def __init__(self, h: int, w: int, rng: np.random.Generator) -> None:
        self.h, self.w = h, w
        self.y_h = h * rng.uniform(0.36, 0.5)
        self.x_v = w * rng.uniform(0.35, 0.65)
        self.hw_b = w * rng.uniform(0.45, 0.8)  # road half-width at the bottom row, px
        self.ppm_b = 2 * self.hw_b / _ROAD_WIDTH_M  # pixels per metre at the bottom row

    def s(self, y: float) -> float:
        return (y - self.y_h) / (self.h - self.y_h)

    def y_of(self, s: float) -> float:
        return self.y_h + s * (self.h - self.y_h)

    def x_at(self, u: float, y: float) -> float:
        """Column of lateral position ``u`` (in road half-widths, 0 = centre) on row ``y``."""
        return self.x_v + u * self.hw_b * self.s(y)


def _rand_colour(rng: np.random.Generator, lo: float = 20, hi: float = 230) -> tuple[float, float, float]:
    return tuple(float(v) for v in rng.uniform(lo, hi, 3))


def _background(cv: _Canvas, g: _Geometry, rng: np.random.Generator, night: bool) -> None:
    h, w, yh = g.h, g.w, g.y_h
    # Sky: vertical gradient (drawn row-wise by broadcasting, no loop).
    top = np.array([120, 160, 215] if not night else [8, 10, 22], np.float32)
    bot = np.array([200, 210, 225] if not night else [20, 22, 35], np.float32)
    t = np.linspace(0, 1, round(yh) + 1, dtype=np.float32)[:, None]
    cv.rgb[: round(yh) + 1] = (top * (1 - t) + bot * t)[:, None, :]
    cv.temp[: round(yh) + 1] = rng.uniform(2, 8)
    # Buildings along the horizon, with windows (lit at night).
    x = -rng.uniform(0, 60)
    while x < w:
        bw, bh = rng.uniform(60, 200), rng.uniform(0.15, 0.9) * yh
        col = _rand_colour(rng, 60, 180)
        b_temp = rng.uniform(25, 55) if not night else rng.uniform(30, 60)
        pts = np.array([[x, yh + 2], [x + bw, yh + 2], [x + bw, yh - bh], [x, yh - bh]])
        cv.fill(pts, None, col, b_temp)
        win = tuple(c * 0.5 for c in col)
        for wy in np.arange(yh - bh + 8, yh - 10, rng.uniform(14, 26)):
            for wx in np.arange(x + 6, x + bw - 10, rng.uniform(12, 22)):
                lit = night and rng.random() < 0.25
                wcol = (255.0, 225.0, 160.0) if lit else win
                cv.fill(
                    np.array([[wx, wy], [wx + 6, wy], [wx + 6, wy + 8], [wx, wy + 8]]),
                    None,
                    wcol,
                    b_temp + (12 if lit else -4),
                )
        x += bw + rng.uniform(0, 40)
    # Trees: clusters of dark-green discs, cool in thermal (leaves transpire).
    for _ in range(rng.integers(2, 7)):
        tx, ty, r = rng.uniform(0, w), yh - rng.uniform(0, 0.4) * yh, rng.uniform(25, 80) * w / 640
        cv.line((tx, ty), (tx, yh + 4), r / 6, None, (60, 45, 30), rng.uniform(20, 35))
        for _ in range(rng.integers(3, 7)):
            cc = (tx + rng.normal(0, r * 0.6), ty - r * 0.5 + rng.normal(0, r * 0.4))
            leaf = (30 + rng.uniform(0, 40), 70 + rng.uniform(0, 60), 25)
            cv.circle(cc, r * rng.uniform(0.5, 0.9), None, leaf, rng.uniform(10, 25))
    # Ground beyond the road: grass/sidewalk.
    ground = np.array([[0, yh], [w, yh], [w, h], [0, h]])
    cv.fill(
        ground,
        None,
        (90, 110, 70) if rng.random() < 0.5 else (130, 125, 115),
        rng.uniform(30, 55) if not night else rng.uniform(15, 30),
    )


def _road(cv: _Canvas, g: _Geometry, rng: np.random.Generator, night: bool) -> dict[str, float]:
    """Road surface, lane marks and the two kerbs (class ``curve``)."""
    h, yh = g.h, g.y_h
    road_temp = rng.uniform(45, 75) if not night else rng.uniform(20, 38)
    grey = rng.uniform(70, 110)
    pts = np.array([[g.x_v, yh], [g.x_at(1, h), h], [g.x_at(-1, h), h]])
    cv.fill(pts, None, (grey, grey, grey * 1.02), road_temp)
    # Dashed centre line.
    lane_temp = road_temp - 3
    for s0 in np.arange(0.05, 1.0, 0.12):
        y0, y1 = g.y_of(s0), g.y_of(min(1.0, s0 + 0.05))
        cv.fill(
            np.array(
                [
                    [g.x_at(-0.02, y0), y0],
                    [g.x_at(0.02, y0), y0],
                    [g.x_at(0.02, y1), y1],
                    [g.x_at(-0.02, y1), y1],
                ]
            ),
            None,
            (230, 230, 220),
            lane_temp,
        )
    # Kerbs: a raised strip on each side, drawn outward from the road edge.
    kerb_w = rng.uniform(0.05, 0.1)
    kerb_rgb = (rng.uniform(150, 200),) * 3
    for side in (-1, 1):
        if rng.random() < 0.85:
            a, b = side * 1.0, side * (1.0 + kerb_w)
            pts = np.array([[g.x_v, yh + 1], [g.x_at(b, h), h], [g.x_at(a, h), h]])
            cv.fill(pts, CURVE, kerb_rgb, road_temp + rng.uniform(-8, 8))
    return {"road_temp": road_temp, "kerb_w": kerb_w}


def _guardrail(cv: _Canvas, g: _Geometry, rng: np.random.Generator, night: bool, side: int) -> None:
    s0, s1 = rng.uniform(0.02, 0.3), rng.uniform(0.5, 1.0)
    u = side * rng.uniform(1.15, 1.5)
    y0, y1 = g.y_of(s0), g.y_of(s1)
    lo, hi = 0.35, 0.8  # rail band height above the ground, metres
    pts = np.array(
        [
            [g.x_at(u, y0), y0 - hi * g.ppm_b * s0],
            [g.x_at(u, y1), y1 - hi * g.ppm_b * s1],
            [g.x_at(u, y1), y1 - lo * g.ppm_b * s1],
            [g.x_at(u, y0), y0 - lo * g.ppm_b * s0],
        ]
    )
    metal = (rng.uniform(150, 210),) * 3
    temp = rng.uniform(55, 90) if not night else rng.uniform(10, 25)  # sun-heated by day, cold metal at night
    cv.fill(pts, GUARDRAIL, metal, temp)
    for s in np.linspace(s0, s1, rng.integers(3, 8)):
        y = g.y_of(s)
        cv.line(
            (g.x_at(u, y), y),
            (g.x_at(u, y), y - hi * g.ppm_b * s),
            max(1.0, 0.08 * g.ppm_b * s),
            GUARDRAIL,
            metal,
            temp,
        )


def _car(cv: _Canvas, g: _Geometry, rng: np.random.Generator, night: bool, y: float, x: float) -> None:
    p = g.ppm_b * g.s(y)
    wdt, hgt = rng.uniform(1.6, 2.0) * p, rng.uniform(1.3, 1.7) * p
    col = _rand_colour(rng, 15, 235)
    body_t = rng.uniform(90, 140) if not night else rng.uniform(80, 130)
    x0, x1 = x - wdt / 2, x + wdt / 2
    yb = y - 0.25 * p  # body bottom (wheels below)
    body = np.array([[x0, yb], [x1, yb], [x1, y - 0.55 * hgt], [x0, y - 0.55 * hgt]])
    cabin = np.array(
        [
            [x0 + 0.1 * wdt, y - 0.55 * hgt],
            [x1 - 0.1 * wdt, y - 0.55 * hgt],
            [x1 - 0.2 * wdt, y - hgt],
            [x0 + 0.2 * wdt, y - hgt],
        ]
    )
    glass = np.array(
        [
            [x0 + 0.16 * wdt, y - 0.58 * hgt],
            [x1 - 0.16 * wdt, y - 0.58 * hgt],
            [x1 - 0.23 * wdt, y - 0.95 * hgt],
            [x0 + 0.23 * wdt, y - 0.95 * hgt],
        ]
    )
    cv.fill(body, CAR, col, body_t)
    cv.fill(cabin, CAR, col, body_t - 10)
    cv.fill(glass, CAR, (40, 50, 60), body_t - 45)  # glass reflects the cold sky in LWIR
    for wx in (x0 + 0.18 * wdt, x1 - 0.18 * wdt):  # wheels/tyres: warm from friction
        cv.fill(
            np.array(
                [[wx - 0.14 * wdt, y], [wx + 0.14 * wdt, y], [wx + 0.14 * wdt, yb], [wx - 0.14 * wdt, yb]]
            ),
            CAR,
            (20, 20, 22),
            body_t + 40,
        )
    cv.fill(
        np.array(
            [
                [x0 + 0.3 * wdt, yb - 0.05 * hgt],
                [x1 - 0.3 * wdt, yb - 0.05 * hgt],
                [x1 - 0.3 * wdt, yb - 0.15 * hgt],
                [x0 + 0.3 * wdt, yb - 0.15 * hgt],
            ]
        ),
        CAR,
        (200, 200, 200),
        body_t + 60,
    )  # exhaust / engine heat
    facing = rng.random() < 0.5  # headlights (white) or tail lights (red)
    lamp = (255.0, 250.0, 235.0) if facing else (255.0, 30.0, 20.0)
    for lx in (x0 + 0.12 * wdt, x1 - 0.12 * wdt):
        cv.circle((lx, y - 0.4 * hgt), 0.06 * wdt, CAR, lamp, body_t + 20)
        if night:
            cv.lights.append(
                (round(lx), round(y - 0.4 * hgt), 0.3 * wdt if facing else 0.12 * wdt, 0.8 if facing else 0.3)
            )


def _person(
    cv: _Canvas,
    g: _Geometry,
    rng: np.random.Generator,
    night: bool,
    y: float,
    x: float,
    height_m: float | None = None,
) -> None:
    p = g.ppm_b * g.s(y)
    ht = (height_m or rng.uniform(1.5, 1.9)) * p
    wd = rng.uniform(0.35, 0.5) * p
    skin_t = rng.uniform(200, 245) if night else rng.uniform(170, 220)
    cloth_t = skin_t - rng.uniform(20, 50)
    shirt, trousers = _rand_colour(rng, 15, 200), _rand_colour(rng, 10, 120)
    step = rng.uniform(-0.15, 0.15) * ht
    for dx in (-wd * 0.22, wd * 0.22):  # legs
        cv.line(
            (x + dx, y - 0.47 * ht),
            (x + dx + (step if dx > 0 else -step) * 0.3, y),
            0.2 * wd + 1,
            PERSON,
            trousers,
            cloth_t,
        )
    torso = np.array(
        [
            [x - wd / 2, y - 0.47 * ht],
            [x + wd / 2, y - 0.47 * ht],
            [x + wd / 2.2, y - 0.82 * ht],
            [x - wd / 2.2, y - 0.82 * ht],
        ]
    )
    cv.fill(torso, PERSON, shirt, cloth_t)
    for dx in (-wd * 0.55, wd * 0.55):  # arms
        cv.line((x + dx, y - 0.8 * ht), (x + dx * 1.1, y - 0.5 * ht), 0.15 * wd + 1, PERSON, shirt, cloth_t)
    cv.circle((x, y - 0.9 * ht), 0.09 * ht, PERSON, (190, 150, 120), skin_t)


def _bike(cv: _Canvas, g: _Geometry, rng: np.random.Generator, night: bool, y: float, x: float) -> None:
    p = g.ppm_b * g.s(y)
    r = 0.33 * p
    L = rng.uniform(1.0, 1.3) * p
    frame = _rand_colour(rng, 10, 200)
    t_frame = rng.uniform(30, 60) if not night else rng.uniform(15, 35)
    c1, c2 = (x - L / 2, y - r), (x + L / 2, y - r)
    th = max(1.0, 0.05 * p)
    for c in (c1, c2):
        cv.circle(c, r, BIKE, (25, 25, 25), t_frame + 15, thickness=max(1, round(th)))
    seat = (x - 0.1 * L, y - 2.5 * r)
    cv.line(c1, seat, th, BIKE, frame, t_frame)
    cv.line(seat, (x + 0.3 * L, y - 2.6 * r), th, BIKE, frame, t_frame)
    cv.line(c2, (x + 0.3 * L, y - 2.6 * r), th, BIKE, frame, t_frame)
    cv.line(c1, (x + 0.05 * L, y - r), th, BIKE, frame, t_frame)
    cv.line((x + 0.05 * L, y - r), seat, th, BIKE, frame, t_frame)
    if rng.random() < 0.6:  # a rider: labelled person, standing on the bike's foot line
        _person(cv, g, rng, night, y - 0.9 * r, x - 0.05 * L, height_m=rng.uniform(1.2, 1.4))


def _cone(
    cv: _Canvas, g: _Geometry, rng: np.random.Generator, night: bool, y: float, x: float, road_temp: float
) -> None:
    p = g.ppm_b * g.s(y)
    ht, wd = rng.uniform(0.5, 0.75) * p, rng.uniform(0.3, 0.4) * p
    t = road_temp + rng.uniform(-6, 6)
    cv.fill(np.array([[x - wd / 2, y], [x + wd / 2, y], [x, y - ht]]), COLOR_CONE, (240, 100, 20), t)
    band = [
        [x - wd * 0.3, y - ht * 0.4],
        [x + wd * 0.3, y - ht * 0.4],
        [x + wd * 0.2, y - ht * 0.6],
        [x - wd * 0.2, y - ht * 0.6],
    ]
    cv.fill(np.array(band), COLOR_CONE, (240, 240, 240), t)


def _car_stop(
    cv: _Canvas, g: _Geometry, rng: np.random.Generator, y: float, x: float, road_temp: float
) -> None:
    p = g.ppm_b * g.s(y)
    wd, ht = rng.uniform(1.2, 1.8) * p, rng.uniform(0.12, 0.2) * p + 1
    col = (200.0, 190.0, 60.0) if rng.random() < 0.5 else (170.0, 170.0, 165.0)
    cv.fill(
        np.array([[x - wd / 2, y], [x + wd / 2, y], [x + wd * 0.45, y - ht], [x - wd * 0.45, y - ht]]),
        CAR_STOP,
        col,
        road_temp + rng.uniform(-10, 10),
    )


def _bump(cv: _Canvas, g: _Geometry, rng: np.random.Generator, y: float, road_temp: float) -> None:
    p = g.ppm_b * g.s(y)
    depth = max(2.0, rng.uniform(0.25, 0.45) * p)
    y0, y1 = y - depth, y
    pts = np.array(
        [[g.x_at(-0.98, y0), y0], [g.x_at(0.98, y0), y0], [g.x_at(0.98, y1), y1], [g.x_at(-0.98, y1), y1]]
    )
    cv.fill(pts, BUMP, (60, 60, 55), road_temp + rng.uniform(4, 12))
    n = rng.integers(4, 9)  # painted yellow stripes (visible only; paint is thermally invisible)
    for k in range(n):
        ua, ub = -0.98 + 1.96 * k / n, -0.98 + 1.96 * (k + 0.5) / n
        cv.fill(
            np.array(
                [[g.x_at(ua, y0), y0], [g.x_at(ub, y0), y0], [g.x_at(ub, y1), y1], [g.x_at(ua, y1), y1]]
            ),
            BUMP,
            (230, 200, 30),
            road_temp + 8,
        )


def _lowres_noise(rng: np.random.Generator, h: int, w: int, cell: int, channels: int = 1) -> np.ndarray:
    """Smooth noise: a coarse normal grid upsampled bicubically (cheap texture / illumination field)."""
    small = rng.standard_normal((max(2, h // cell), max(2, w // cell), channels), dtype=np.float32)
    out = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    return out.reshape(h, w, channels) if channels > 1 else out.reshape(h, w)


def _render_visible(cv: _Canvas, rng: np.random.Generator, night: bool) -> np.ndarray:
    h, w = cv.labels.shape
    img = cv.rgb
    # Texture: a fine grain plus a large-scale illumination variation (shadows, vignetting).
    img *= (1.0 + 0.06 * _lowres_noise(rng, h, w, 3) + 0.12 * _lowres_noise(rng, h, w, 64))[..., None]
    if night:
        img *= rng.uniform(0.06, 0.2)  # low light: persons in dark clothes vanish
        if rng.random() < 0.7:  # streetlights: pools of warm light
            for _ in range(rng.integers(1, 4)):
                cv.lights.append(
                    (
                        int(rng.integers(0, w)),
                        int(rng.integers(0, h // 2)),
                        float(rng.uniform(15, 50) * w / 640),
                        float(rng.uniform(0.2, 0.5)),
                    )
                )
        if cv.lights:  # glare: bloom drawn at 1/4 resolution, blurred, upsampled
            q = 4
            glow = np.zeros((h // q, w // q), np.float32)
            for lx, ly, r, pw in cv.lights:
                cv2.circle(glow, (lx // q, ly // q), max(1, round(r / q)), pw, -1)
            glow = cv2.GaussianBlur(glow, (0, 0), sigmaX=max(1.0, 6 * w / 640))
            glow = cv2.resize(glow, (w, h), interpolation=cv2.INTER_LINEAR)
            img += (np.clip(glow, 0, 2) * 255)[..., None] * np.array([1.0, 0.92, 0.75], np.float32)
        sigma = rng.uniform(2.0, 5.0)
    else:
        img *= rng.uniform(0.8, 1.15)  # exposure
        sigma = rng.uniform(0.5, 2.0)
    img += rng.standard_normal(img.shape, dtype=np.float32) * sigma
    return np.clip(img, 0, 255).astype(np.uint8)


def _render_thermal(
    cv: _Canvas, rng: np.random.Generator, misregistration_px: float
) -> tuple[np.ndarray, tuple[float, float]]:
    h, w = cv.temp.shape
    t = cv.temp
    t += 3.0 * _lowres_noise(rng, h, w, 48)  # large-scale temperature variation
    t = cv2.GaussianBlur(t, (0, 0), sigmaX=rng.uniform(0.8, 1.6))  # LWIR optics are soft
    shift = (0.0, 0.0)
    if misregistration_px > 0:
        ang = rng.uniform(0, 2 * np.pi)
        shift = (float(misregistration_px * np.cos(ang)), float(misregistration_px * np.sin(ang)))
        M = np.array([[1, 0, shift[0]], [0, 1, shift[1]]], np.float32)
        t = cv2.warpAffine(t, M, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    gain = rng.uniform(0.85, 1.15)
    # Sensor noise: temporal white noise plus fixed-pattern column stripes typical of microbolometers.
    t = t * gain + rng.standard_normal((h, w), dtype=np.float32) * rng.uniform(1.0, 3.0)
    t += rng.standard_normal((1, w), dtype=np.float32) * rng.uniform(0.0, 1.5)
    return np.clip(t, 0, 255).astype(np.uint8), shift


def _place_objects(g: _Geometry, rng: np.random.Generator) -> list[tuple[float, str, float]]:
    """(foot row, kind, lateral u) of each object, far to near so nearer ones are drawn over farther ones.

    Far objects are more frequent (perspective).
    """
    objs: list[tuple[float, str, float]] = []

    def add(kind: str, n: int, u_lo: float, u_hi: float, s_lo: float = 0.06) -> None:
        for _ in range(n):
            s = s_lo + (1 - s_lo) * rng.random() ** 1.6
            objs.append((g.y_of(s), kind, rng.uniform(u_lo, u_hi)))

    add("car", int(rng.integers(0, 4)) + int(rng.random() < 0.5), -0.8, 0.8, 0.1)
    add("person", int(rng.integers(1, 5)), -1.7, 1.7, 0.1)
    add("bike", int(rng.random() < 0.6) * int(rng.integers(1, 3)), -1.3, 1.3, 0.12)
    add("cone", int(rng.random() < 0.6) * int(rng.integers(1, 5)), -0.9, 0.9, 0.12)
    add("car_stop", int(rng.random() < 0.55) * int(rng.integers(1, 4)), 1.15, 1.6, 0.12)
    add("bump", int(rng.random() < 0.5), 0, 0, 0.25)
    objs.sort(key=lambda o: o[0])
    return objs


def _draw_object(
    cv: _Canvas, g: _Geometry, rng: np.random.Generator, night: bool, kind: str, y: float, u: float, rt: float
) -> None:
    x = g.x_at(u, y)
    if kind == "car":
        _car(cv, g, rng, night, y, x)
    elif kind == "person":
        _person(cv, g, rng, night, y, x)
    elif kind == "bike":
        _bike(cv, g, rng, night, y, x)
    elif kind == "cone":
        _cone(cv, g, rng, night, y, x, rt)
    elif kind == "car_stop":
        _car_stop(cv, g, rng, y, g.x_at(u * (1 if rng.random() < 0.5 else -1), y), rt)
    else:
        _bump(cv, g, rng, y, rt)


def generate_scene(
    seed: int, height: int = 480, width: int = 640, night: bool | None = None, misregistration_px: float = 0.0
) -> Scene:
    """Draw one synthetic scene; identical ``seed`` and arguments give identical arrays.

    Label map first (road in perspective, kerbs, guardrails, far-to-near objects so nearer ones
    occlude), the visible rendering (textures, day or low-light night with noise and glare), then the
    thermal rendering (per-class temperatures, optical blur, sensor noise, optional misregistration
    of ``misregistration_px`` pixels in a random direction; labels stay registered to the visible).
    """
    if height < 16 or width < 16:
        raise ValueError(f"scene too small: {height}x{width} (need at least 16x16)")
    rng = np.random.default_rng(seed)
    if night is None:
        night = bool(rng.random() < 0.5)
    cv = _Canvas(height, width)
    g = _Geometry(height, width, rng)
    _background(cv, g, rng, night)
    road = _road(cv, g, rng, night)
    rt = road["road_temp"]
    for side in (-1, 1):
        if rng.random() < 0.45:
            _guardrail(cv, g, rng, night, side)
    for y, kind, u in _place_objects(g, rng):
        _draw_object(cv, g, rng, night, kind, y, u, rt)
    rgb = _render_visible(cv, rng, night)
    thermal, shift = _render_thermal(cv, rng, misregistration_px)
    return Scene(rgb=rgb, thermal=thermal, labels=cv.labels, night=night, seed=seed, thermal_shift=shift)
