# SPDX-License-Identifier: GPL-3.0-or-later
"""The CPU decomposer's thresholds and working sizes, in one place (colours on the 0–255 scale)."""

EDGE_STEP = 10.0  # colour step (0–255, max over channels) between neighbours that separates two regions
EDGE_STEP_STRICT = 4.0  # the same, for regions that turned out not to be flat (soft transitions)
FLAT_RESIDUAL = 6.0  # RMS error (0–255) of the quadratic colour model below which a region counts as flat
SAME_COLOR = 28.0  # Euclidean RGB distance under which two flat regions are one element's colour
STROKE_THICKNESS = 0.1  # rings and outlines: thinner than this share of their hull's size (sqrt of its area)
BACKGROUND_GAP = 0.35  # same-colour pieces with more background than this between them are separate shapes
BAND_PX = 3  # width of the soft-edge band around an element's regions
LEFTOVER_REACH = 0.25  # a stroke no region caught joins an element at most this share of the diagonal away
MIN_LEFTOVER_ALPHA = 0.5  # ... with its pixels that show at least this much of the element's colour
MIN_REGION_FRACTION = 0.0002  # regions smaller than this part of the image are edge/noise pixels
MIN_ELEMENT_FRACTION = 0.001  # elements smaller than this stay in the background
MIN_ELEMENT_FRACTION_ON_PHOTO = 0.004
LONG_ELEMENT = 0.25  # ... unless (on a flat background) they span this share of the image: rules, lines
ELEMENT_RESIDUAL = 4.0  # flat elements (not the background) must be flatter than this (0–255 RMS)
PHOTO_ELEMENT_RESIDUAL = 1.0  # the same on a photo background, whose smooth patches measure 0.5–3
PHOTO_TEXTURE_SHARE = 0.45  # a blob whose inside is this much texture (or more) is a photograph, kept whole
PHOTO_GRAIN = 2.0  # a flat patch inside a photo whose core varies this much (std, 0–255) is part of the photo
PHOTO_BLEED_SHARE = 0.2  # photographs touching this share of the canvas's edge is the picture, not placed on it
GROUND_HULL_SHARE = 0.8  # the ground's convex hull covers at least this share of the canvas (if one does)
MIN_IMAGE_FRACTION = 0.005  # textured blobs on a flat background at least this big become "Image" elements
MAX_ELEMENTS = 48
TILE_RIM_PAGE = 0.3  # along each side of a photo tile (a photo in a grid), at most this share is the page's colour
TILE_TEXTURE = 0.2  # a photo tile is at least this much texture (edge pixels, regions no colour model explains)
TILE_DOMINANT = 0.3  # and no region flat to the noise level covers this share of it: a panel's ground does
TILE_COLORS = 16  # and it has at least this many colours (5 bits a channel, each 0.2 % of the tile or more)
SOLID_PIECES = 0.8  # buttons and dots fill this much of their convex hulls (on average); letters less
PIECE_GAP = 0.01  # pieces closer than this share of the image's long side are one shape (cut by a thin line)
LETTER_CONTRAST = 40.0  # small text: its letter pixels differ from the word box's ground by more than this
OCR_MAX_SIDE_PX = 640  # the text detector runs on a copy at most this big (time grows with pixels)
SUBJECT_MAX_SIDE_PX = 256  # grabCut for a photo's subject runs at this size
INPAINT_MAX_SIDE_PX = 384  # photo holes are filled at this size, then upsampled
TELEA_BAND_PX = 5  # (at that size) Telea fills this far into a subject's hole, a smooth fill beyond twice that
FILL_RELAX_STEPS = 20  # smoothing passes per pyramid level of that fill (towards a membrane fill)
