# SPDX-License-Identifier: GPL-3.0-or-later
"""The embedded CPU decomposer: LayerD-style "peel and fill" with classical parts, no network weights to download.

How it works, in the order of ``CpuDecomposer.decompose``:

1. Check inputs. An RGBA input is analysed in straight colour where it is visible and as one flat "key" colour
   (far from all visible colours) where it is nearly transparent; at the end every layer's alpha is capped by
   the input's, and the transparent surround takes no place in the layer budget. A cut-out whose visible pixels
   are in good part see-through, at one opacity, away from its solid body (a drop shadow, a tinted backdrop, a
   faded copy) has that translucent part as its bottom layer (going on under the body at its opacity, in its own
   colour there when it shows one flat colour) and its body, decomposed with the rest of the count, above it; so
   does a blurred drop shadow of one flat colour, not the body's, fading out from the body's edge (under the body
   as strong as it shows at that edge).
2. Regions. Pixels whose colour steps to a neighbour are small form connected regions, so a flat fill *and*
   a smooth gradient each stay one region; the anti-aliased seams between them are "edge" pixels. Each region
   gets a quadratic colour model; regions it explains well are "flat" (graphics), the rest texture (photos).
   Regions the model does not explain are split again with a stricter step and a trimmed fit, so a feathered
   cut-out does not melt into the flat background around it. The short runs that make up a thin slanted line
   are chained into one region when they chain up into something long.
3. Text. rapidocr's PP-OCR detector (weights ship inside the wheel) finds words; the dominant colour among the
   regions inside a word box is its letters, which form a text element named after what it reads. Small text is
   all anti-aliased edge (no region of it is big enough): its letters are the pixels of the box nearer the ink's
   colour than the box's flat ground; on a photo, the pixels of one tight colour of the box, the colour the box
   holds most more than the ring just outside it does (dark words over stripes of the photo's own colours) tried
   first, then its most common colour. Single "characters" are ignored: they are mostly shapes read as glyphs (a
   star as '★').
4. Elements. The background is the flat colour that runs along most of the canvas's edge (border contact, not area,
   tells ground from figure: the corners around a round icon, not its disc), plus the regions its colour model
   explains (a gradient cut in two by a shape, the counters of letters), or the texture when there is no such region
   (a photo). Photographs placed on a flat page (solid blobs whose inside is mostly texture) stay one "Image" element
   with the holes inside them and the flat-looking patches that carry the photo's grain (exact-colour graphics placed
   on it stay elements); one running along the canvas edge makes the whole picture a photo. Marks of the ground's
   colour enclosed by a solid shape (white words in a blue box, an icon's glyph) are elements on that shape, not
   holes through it. Other flat regions are grouped by colour (per word), or by a gradient's colour model (a
   gradient-filled shape cut by a line); textured blobs on a flat background are "Image" elements, unless
   their outline shows nowhere (a soft glow: the ground's own shading). Pieces of one
   colour with background between them (unless they are the thin, hollow pieces of letters), or on both sides of
   another element in depth, are split into separate elements; words of one colour next to each other (and glyph-like
   shapes of their colour: words the detector missed) are one phrase. Two flat elements whose colours differ exactly
   as what lies under them differs are one translucent sheet (colour and opacity solved); further flat pieces beside
   it that show that sheet over what lies next to them join it (a band across a page and two cards), and the flat
   shapes it is seen over go on under it, one shape each (a card with a band across it: not two halves with the
   band's grey baked into the page; a plane half under water). Rectangular photographs
   laid out on a page (a grid of photos, a picture in a layout) are found by cutting the canvas along gutters of the
   page's colour (an XY cut): each box that is a photo to its edge (textured, many colours, no flat ground inside,
   little page colour along its sides) is one "Image" element, with the flat patches of it that reach its edge. On
   a photo, the box a word is set in (a button on a hero picture: a smooth fill, glossy gradients too, snug round
   the word, solid, clear of the canvas's edges, with its rim) is a shape under the word. A
   photo with no photo grid first gets a "Picture" element for each picture or sprite placed on it (a round
   portrait, a cut-out figure), as many as the budget has room for and the biggest one even with no room left
   (unless one layer is all the budget has above the background): with the photo's texture flattened (mean-shift),
   strong colour steps that join up into a closed, solid outline enclosing much more than its own edge, ringed by the
   colours along the canvas's edge (the ground goes on around it) and not filled by them. Then, with room still left
   and not a design's backdrop, it gets a "Subject" layer (colour contrast to the border with a
   centre prior seeds grabCut; the salient blobs' dilated hull, reaching up for a head when the subject stands on the
   bottom edge, is its probable region; a guided filter scales it up), unless that holds most of the words' letters
   (the middle of a backdrop, where a title and buttons are set).
   A drawing inked over flat colours (a cartoon figure) has its outlines as one "Line art" element: on a flat
   ground, dark thin strokes (darker than what lies around them) whose largest connected piece is a network of
   outlines, lying between the drawing's colours rather than on the ground; the strokes were texture that made the
   figure look like a photograph. A fill drawn inside a thin dark outline of its own (outlined lettering, a badge
   with a black rim) takes the outline's pieces around it: one figure, not a layer of outlines under its fills.
   On a flat ground, strokes no region caught (hairlines of a sketch, all anti-aliased edge) join the element whose
   colour over the ground they show, within reach, and marks too small to be regions join the element around them
   when they are a shade of its colour, instead of staying painted into the background. With a layer count the
   user chose and room left in it, shapes or images made of separate pieces (a row of same-coloured buttons; not
   pieces a thin line apart, nor letters) split into a layer per piece, and then phrases go back to their words
   (a title stays one text before two buttons share a layer), so that asking for N layers gives N where the image
   has that much.
5. Order. Element B is above A when B sits inside A's convex hulls more than A sits inside B's: an occluded
   shape has a bite taken out of it. Elements are peeled in levels (unoccluded first), text to the front.
   Glyphs and strokes (rings, outlines: thin and hollow) use their own mask, not their hulls.
   A solid shape whose outline cuts a tiled pattern's pieces into slivers lies above the pattern, line art
   above every element it touches, a translucent sheet above the shapes that go on under it, and a solid shape
   seen on both sides of an element (a band left and right of a box set on it) under that element, completed
   there (its hull is its pieces' hulls, which leave the box out). What fills a
   solid shape's holes (an icon's glyph in the ink of the panel the icon sits on, so grouped with the panel under
   it) is the shape's own: the disc comes back whole with its glyph, not with glyph-shaped holes over pieces of the
   panel; the order is taken again after that.
6. Layer count. With a count the user chose that is short of the elements, an RGBA input's see-through margin
   that is not its background (a card whose colour runs along more of the edge: the margin, in the key colour, is
   an element framing the canvas) goes into the background first, so that, as step 1 promises, the transparent
   surround takes no place in the layer budget. Then adjacent elements in depth order are merged (exactly, by
   compositing) until the requested count is met, disjoint pairs of one depth first; an image with fewer elements
   returns fewer layers and says so in ``LayerStack.notes``. The pieces of an inked drawing of flat shapes (a
   cartoon figure: no words, dark strokes on DRAWING_INK of it) merge touching pairs first, the biggest first, so
   a short count keeps the figure whole. With layers "auto", an element gets a layer when its hull covers
   AUTO_LAYER_AREA of the canvas, and at most AUTO_MAX_DEPTH layers lie stacked on one another (a card, a picture
   on it, a caption on that): deeper, the touching pair that leaves the shallowest stack merges, and the count
   gets those layers back.
7. Peel. Per element, front to back: alpha 1 (or its opacity) on its regions, alpha from the colour line
   between its colour (F, nearest own pixel) and what lies under it (B, nearest pixel outside) in a thin edge
   band, completion under the elements above it (inside its own convex hulls); colour = nearest own colour,
   also under zero alpha in a one-pixel rim round what shows (so resampling does not bleed black) and under the
   elements above it; past that rim (the gaps between its pieces, around its outer edge), the input's colour.
   Between two elements of one colour (the words of a phrase) the band leaves the other's core alone
   and each takes the edge pixels nearer its own core (two layers do not both hold a pixel);
   the counters of small letters on a shape (too small to be regions, owned by nothing) are the
   shape's, so a button has no letter-shaped holes under its words.
8. Fill. The background's hole is filled from its colour model (flat or gradient) or by Telea inpainting
   (texture, at reduced size for big holes), which deep inside a photo subject's hole gives way to a smooth
   pull-push fill with a little grain (no radial streaks); where the layers above leave it visible, the
   background colour is solved from the input, so the composite matches. Under the layers above, the background
   keeps the input's alpha (a ground that goes on under them), except for an RGBA input's transparent surround.
9. Residual. On an RGBA input, where soft layers overlap on its see-through rim (a fill under a drawing's
   outline) the topmost one's alpha comes down until the composite is no more opaque than the input. Whatever
   error is left (clipping, overlapping soft edges) goes into the colour of the layer that contributes most at
   that pixel, and what clipping leaves there into the runner-up's. The "over" composite of the result equals
   the input (mean error ≤ 1/255). When nothing came apart in an opaque image without a single edge whose
   border colour shows flat on a fifth of the canvas, it is soft glows over that ground: one layer per glow, its
   colour the saturated end of the line from the ground, its alpha fitted per pixel.
   Otherwise the one layer is the input itself.

Cancellation is checked between stages and, through a per-thread token (``cancel.checkpoint``), between the sub-steps
of the long ones, so a cancel lands inside the running stage (bench_decompose measures how soon on 12 MP).

The steps live one module each: ``decomposer`` (the call, steps 1 and 6's wiring), ``regions`` (2), ``text`` (3),
``build``, ``ground``, ``translucent``, ``depths``, ``tiles``, ``lineart``, ``leftovers``, ``holes`` (its outlines) and
``subject`` (4), ``order`` and ``holes`` (5), ``order`` (6), ``peel`` (7), ``fill`` (8), ``compositing`` (8's solve
and 9), ``shadows`` (1), ``glows`` (9); ``elements`` holds the element record, ``masks`` the mask geometry, ``tuning``
the thresholds and ``cancel`` the per-thread cancel checkpoint.
"""

from .decomposer import CpuDecomposer
from .elements import color_name

__all__ = ["CpuDecomposer", "color_name"]
