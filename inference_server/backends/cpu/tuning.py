# SPDX-License-Identifier: GPL-3.0-or-later
"""The CPU decomposer's thresholds and working sizes, in one place (colours on the 0–255 scale)."""

EDGE_STEP = 10.0  # colour step (0–255, max over channels) between neighbours that separates two regions
EDGE_STEP_STRICT = 4.0  # the same, for regions that turned out not to be flat (soft transitions)
FLAT_RESIDUAL = 6.0  # RMS error (0–255) of the quadratic colour model below which a region counts as flat
SAME_COLOR = 28.0  # Euclidean RGB distance under which two flat regions are one element's colour
STROKE_THICKNESS = 0.1  # rings and outlines: thinner than this share of their hull's size (sqrt of its area)
BACKGROUND_GAP = 0.35  # same-colour pieces with more background than this between them are separate shapes
BAND_PX = 3  # width of the soft-edge band around an element's regions
RIM_OFF_LINE = 12.0  # a core's outermost pixel within this (Euclidean) of the line between its ink and ground is a mix
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
GROUND_FRAME_RATIO = 2.0  # ... unless the flat ground runs along this many times as much of the edge: it frames them
PICTURE_EDGE_TEXTURE = 0.25  # a picture filling the canvas: this share of each side's rim is texture at least
FRINGE_EDGE_SHARE = 0.5  # a ring round the canvas that is more than this share edge pixels is a fringe, not the ground
FRINGE_MAX_PX = 2  # ... the ground is looked for at most this many pixels in from such a fringe
GROUND_HULL_SHARE = 0.8  # the ground's convex hull covers at least this share of the canvas (if one does)
MIN_IMAGE_FRACTION = 0.005  # textured blobs on a flat background at least this big become "Image" elements
MAX_ELEMENTS = 48
FLANKED_SHARE = 0.6  # an element this much inside the gap between a solid shape's pieces (or filling this much of
# it) is set on that shape: the shape goes on under it
LABEL_BOX = 0.1  # a word set on a shape no bigger than this share of the canvas is that box's label
PAPER_WHITE_TOLERANCE = 24.0  # colours this close (max over channels) are one plain colour; to white: white
PAPER_PLAIN_SHARE = 0.9  # a ground this much of one plain colour (its median's) is a fill: it may lie on paper
TILE_RIM_PAGE = 0.3  # along each side of a photo tile (a photo in a grid), at most this share is the page's colour
TILE_TEXTURE = 0.2  # a photo tile is at least this much texture (edge pixels, regions no colour model explains)
TILE_DOMINANT = 0.3  # and no region flat to the noise level covers this share of it: a panel's ground does
SEAM_SHARE = 0.6  # a seam (a photo edge to edge with the page): a step, the strongest near it, on this share of a box
SEAM_REACH_PX = 4  # ... within this many pixels either side (an edge in a photo wanders or has stronger texture by it)
SEAM_MIN_PIECE_PX = 16  # ... and at least this far from the box's ends (a photo tile is this wide at least)
SEAM_PAGE_TEXTURE = 0.2  # a photo met at a seam is placed on a page when the canvas's rim outside it is less texture
SEAM_PAGE_PLAIN = 0.7  # ... and this share of that rim is within EDGE_STEP of its median colour (a sky is not)
SEAM_TILE_TEXTURE = 0.5  # ... and it is this much texture at least (a photo throughout, not pictures on white cells)
TILE_COLORS = 16  # and it has at least this many colours (5 bits a channel, each 0.2 % of the tile or more)
SOLID_PIECES = 0.8  # buttons and dots fill this much of their convex hulls (on average); letters less
STROKE_SOLID = 2.0  # a part of a shape this many times thicker than its outline's stroke is a solid shape drawn on it
OCCLUDER_INSIDE = 0.9  # an element this much inside a shape's convex hull lies over it (joins the pieces it cuts)
PIECE_GAP = 0.01  # pieces closer than this share of the image's long side are one shape (cut by a thin line)
LETTER_CONTRAST = 40.0  # small text: its letter pixels differ from the word box's ground by more than this
INK_LETTERS_NEAR = 24.0  # one-colour words over a photo: pixels this close (max channel) to the ink are its letters
INK_LETTERS_SHARE = (0.08, 0.6)  # ... which cover between these shares of the word box (the ground covers the rest)
INK_LETTERS_SPREAD = 10.0  # ... and vary by less than this (std, per channel): one printed colour, not a photo's
INK_LETTERS_OUTLINE = 0.75  # ... and run round less than this share of the box's outline (more: it is the ground)
OCR_MAX_SIDE_PX = 640  # the text detector runs on a copy at most this big (time grows with pixels)
OCR_DET_SIDE_PX = 736  # rapidocr's detector scales that copy up so that its shorter side is this long (its default)
OCR_DET_MAX_SIDE_PX = 2048  # ... but never longer than this (a 1024 × 163 banner would be a 4600 px strip)
SUBJECT_MAX_SIDE_PX = 256  # grabCut for a photo's subject runs at this size
SUBJECT_WORDS_INSIDE = 0.5  # a "subject" with this share of the words' letters inside it is where they are set
LABEL_BOX_SNUG = 8.0  # a button on a photo: its outline holds at most this many times its word's box ...
LABEL_BOX_RIM_PX = 2  # ... with the edge pixels this close round its fill (its keyline, its bevel)
LABEL_BOX_SOLID = 0.8  # ... and fills this share of its bounding box at least (a rectangle, a pill)
LABEL_BOX_WIDTH = 0.6  # ... and is at most this share of the canvas's width (wider: a band of the backdrop)
PICTURE_MAX_SIDE_PX = 400  # pictures on a photo (closed sharp outlines) are looked for at this size
PICTURE_FILL_RATIO = 1.5  # a picture's outline encloses this many times its own (dilated) edge pixels at least
PICTURE_SOLIDITY = 0.8  # a picture fills this share of its convex hull at least
PICTURE_MIN_SHARE = 0.02  # a picture covers this share of the canvas at least ...
PICTURE_MAX_SHARE = 0.4  # ... and this share at most
PICTURE_GROUND_LAB = 12.0  # a pixel within this Lab distance (8-bit units) of a colour along the canvas edge is ground
PICTURE_GROUND_RING = 0.6  # the ground rings a picture: this share of the band around it is ground at least ...
PICTURE_GROUND_INSIDE = 0.5  # ... and this share of the picture at most
PICTURE_GROUND_GRAIN = 1.0  # the ground around a picture has this grain at least (median 5×5 luminance std, 0–255)
PICTURE_FREE = 0.7  # this share of a picture is not yet in another element (not a text bar found already)
INPAINT_MAX_SIDE_PX = 384  # photo holes are filled at this size, then upsampled
TELEA_BAND_PX = 5  # (at that size) Telea fills this far into a subject's hole, a smooth fill beyond twice that
FILL_RELAX_STEPS = 20  # smoothing passes per pyramid level of that fill (towards a membrane fill)
INK_DARK = 80.0  # line art: its strokes are darker than this (luminance, 0–255)
INK_CONTRAST = 40.0  # ... and darker than what lies around them by this much
INK_SHARE = 0.005  # ... and their largest connected piece covers this share of the canvas at least
INK_NETWORK = 0.5  # ... and this share of all the strokes: one network of outlines (words are many pieces)
DRAWING_INK = 0.08  # a picture of flat shapes only (no words, no photos) whose dark strokes cover this share of its
# shapes' area is an inked drawing (a cartoon figure): a short layer count keeps the figure whole, not cut in halves
GLOW_GROUND_SHARE = 0.2  # soft glows: the ground's own colour shows (within the tolerance) on this share of the canvas
GLOW_GROUND_TOLERANCE = 3.0  # (0–255, max over channels)
GLOW_MIN_DEVIATION = 12.0  # a glow's strongest pixel differs from the ground by this much at least (Euclidean)
GLOW_FIT_RMS = 2.0  # the glows explain the image to this RMS error (0–255) or they are not taken
GLOW_MAX_SIDE_PX = 256  # the fit runs on a copy at most this big (glows are smooth)
SHADOW_AWAY_PX = 4.0  # a translucent shadow: its see-through pixels lie this far from the solid body (a rim does not)
SHADOW_SHARE = 0.05  # ... on this share of the visible pixels at least (and the solid body on as much)
SHADOW_PLATEAU = 0.7  # ... and this share of them within 0.1 of their median opacity (a feather ramps down)
SHADOW_RAMP_PX = 1.0  # a feathered shadow (one flat colour, not the body's): its soft margin past SHADOW_AWAY_PX is
# this many pixels wide at least on average along the body's outline (its area over the outline's length)
HOLE_MARKS_SHARE = 0.3  # pieces filling this share of a solid shape's hole (the rest: soft edge) are marks on it
SOLID_HOST = 0.6  # ... when the shape's piece around the hole fills this share of its convex hull (letters' rings less)
OUTLINED_SHARE = 0.6  # a fill this much inside a dark outline's filled outline (gaps closed) is outlined by it
OUTLINE_THICKNESS = 0.5  # ... and its strokes there are thinner than this share of the fill's thickest stroke
VEIL_MATCH = 8.0  # a shape goes on under a translucent sheet where the sheet over its colour shows within this
WORD_RING = 0.2  # a word's ground and letters are told apart in a ring this share of its box's height wide round it
WORD_GROUND_RING = 0.5  # ... the ring's own colour (its ground) covers this share of the ring at least
WORD_INK_SHARE = 0.05  # ... and a word's letters cover at least this share of its box (less: a mark or icon by it)
WORD_RING_CLEAR = 0.1  # ... colours whose ring share is under this share of their box share tie (then most area)
AUTO_LAYER_AREA = 0.005  # layers "auto": an element whose outline (convex hull) covers this share of the canvas gets
# a layer of its own; smaller ones (a menu's words, a pager's dots) join their neighbours
AUTO_MAX_DEPTH = 3  # layers "auto": at most this many layers lie stacked on one another above the background (a
# card, a picture on it, a caption on that); deeper stacks are mostly a thing and what is set on it, or pieces of one
# drawing, and merge (fit_depth)
SURROUND_SHARE = 0.9  # a short layer count puts an element this much in an RGBA input's see-through surround into the
# background (order.surround_pieces)
