# SPDX-License-Identifier: GPL-3.0-or-later
"""Step 4, leftovers: pieces of an element that no region caught (thin, anti-aliased strokes of line art or
letters, all edge pixels; marks smaller than a region drawn inside a shape) join the element whose colour over
the ground they show, or the element that surrounds them, instead of staying painted into the background layer."""

from __future__ import annotations

import numpy as np

from .cancel import checkpoint
from .elements import Element, ElementKind, covered, set_mask
from .masks import disc, nearest_pixel
from .tuning import BAND_PX, LEFTOVER_REACH, MIN_LEFTOVER_ALPHA, SAME_COLOR


def join_leftovers(rgb: np.ndarray, background: Element, elements: list[Element]) -> None:
    """Leftover pixels, outside every element and its soft-edge band and unlike the ground next to them, are
    explained as one opaque element's colour F over that ground colour B: I = B + α(F − B). Where the nearest
    such element (in reach, its colour at least SAME_COLOR from the ground's) explains a leftover piece to within
    half of SAME_COLOR, the piece's pixels with α ≥ MIN_LEFTOVER_ALPHA join its core (the peel's band then
    gives them their soft edge). A piece that is no such blend joins, whole, the element around it nearest its
    colour, where elements, and (nearly) no ground, lie around it and that colour is a shade of its own (within
    twice SAME_COLOR). Only on a flat ground: on a photo, what no element took is the photo."""
    import cv2

    if not background.regions or not background.mask.any() or not elements:
        return
    height_px, width_px = rgb.shape[:2]
    hosts = [e for e in elements if e.kind in (ElementKind.SHAPE, ElementKind.TEXT) and e.opacity >= 1.0]
    if not hosts:
        return
    taken = covered(elements, rgb.shape)
    kernel = disc(BAND_PX)
    banded = cv2.dilate(taken.astype(np.uint8), kernel).astype(bool)
    checkpoint()
    # Colours are compared only where no element or the ground already is (few pixels on a big image).
    candidates = np.flatnonzero(~banded & ~background.mask)
    if candidates.size == 0:
        return
    flat_rgb = rgb.reshape(-1, 3)
    ground_at, _ = nearest_pixel(background.mask)
    checkpoint()
    unlike = np.linalg.norm(flat_rgb[candidates] - flat_rgb[ground_at(candidates)], axis=1) > SAME_COLOR
    if not unlike.any():
        return
    leftover = np.zeros(height_px * width_px, bool)
    leftover[candidates[unlike]] = True
    leftover = leftover.reshape(height_px, width_px)
    # Which host is nearest to a pixel (index into hosts, from 1), and how far.
    owner = np.zeros((height_px, width_px), np.int32)
    for index, element in enumerate(hosts, start=1):
        owner[element.mask] = index
    if not owner.any():
        return
    checkpoint()
    host_at, distance = nearest_pixel(owner > 0)
    checkpoint()
    reach_px = LEFTOVER_REACH * float(np.hypot(height_px, width_px))
    count, pieces, stats, _ = cv2.connectedComponentsWithStats(leftover.astype(np.uint8), connectivity=8)
    ring_px = 2 * BAND_PX + 2
    ring_kernel = disc(ring_px)
    grown = set()
    for piece in range(1, count):
        if piece % 64 == 0:
            checkpoint()
        x, y, w, h = stats[piece, :4]
        box = (slice(y, y + h), slice(x, x + w))
        mask = pieces[box] == piece
        at = (np.arange(y, y + h)[:, None] * width_px + np.arange(x, x + w)[None, :])[mask]
        joined, host = blend_of_nearest(flat_rgb[at], flat_rgb[ground_at(at)], owner.ravel()[host_at(at)], hosts)
        if host is not None and float(distance[box][mask].min()) <= reach_px:
            piece_joined = np.zeros(mask.shape, bool)
            piece_joined[mask] = joined
        else:
            # Not the ink of a stroke over the ground: a part of a drawing no region caught (a waffle cell's
            # shading) joins the element that encloses it, if elements rather than the ground surround it.
            y0, x0 = max(y - ring_px, 0), max(x - ring_px, 0)
            outer = (slice(y0, min(y + h + ring_px, height_px)), slice(x0, min(x + w + ring_px, width_px)))
            inner = np.zeros(owner[outer].shape, np.uint8)
            inner[y - y0:y - y0 + h, x - x0:x - x0 + w] = mask
            ring = cv2.dilate(inner, ring_kernel).astype(bool) & ~inner.astype(bool)
            owners = owner[outer][ring]
            # (The ring is mostly soft-edge band, which neither side owns: compare what is owned.)
            owned_px, ground_px = int((owners > 0).sum()), int(background.mask[outer][ring].sum())
            if owned_px < 0.2 * owners.size or ground_px > 0.1 * (owned_px + ground_px):
                continue
            # Of the elements around it, the one nearest its colour, if that is near (a cell's shading is a
            # shade of its waffle; a white speck on a dark pill is no part of the pill).
            values, votes = np.unique(owners[owners > 0], return_counts=True)
            color = rgb[box][mask].mean(axis=0)
            around = [hosts[int(value) - 1] for value in values[votes >= 0.1 * owned_px]]
            host = min(around, key=lambda e: float(np.linalg.norm(e.color_rgb - color)))
            if float(np.linalg.norm(host.color_rgb - color)) > 2 * SAME_COLOR:
                continue
            piece_joined = mask
        if not piece_joined.any():
            continue
        host.mask[box] |= piece_joined
        background.mask[box] &= ~piece_joined
        grown.add(id(host))
    for host in hosts:
        if id(host) in grown:
            set_mask(host, host.mask)


def blend_of_nearest(piece_rgb: np.ndarray, ground_rgb: np.ndarray, nearest: np.ndarray,
                     hosts: list[Element]) -> tuple[np.ndarray, Element | None]:
    """(pixels to join, host) when the piece's colours are its nearest host's colour F over the ground's B,
    I = B + α(F − B), to within half of SAME_COLOR: the pixels with α ≥ MIN_LEFTOVER_ALPHA. Host None: they
    are not (or F is too close to B to tell)."""
    values, votes = np.unique(nearest, return_counts=True)
    host = hosts[int(values[np.argmax(votes)]) - 1]
    f = host.color_rgb.astype(np.float32)
    b = ground_rgb.astype(np.float32)
    i = piece_rgb.astype(np.float32)
    fb = f - b
    denom = (fb * fb).sum(axis=1)
    if float(np.sqrt(denom.min())) < SAME_COLOR:
        return np.zeros(len(i), bool), None
    alpha = np.clip(((i - b) * fb).sum(axis=1) / denom, 0.0, 1.0)
    residual = np.linalg.norm(i - (b + alpha[:, None] * fb), axis=1)
    if float(np.median(residual)) > 0.5 * SAME_COLOR:
        return np.zeros(len(i), bool), None
    return alpha >= MIN_LEFTOVER_ALPHA, host
