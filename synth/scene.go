package synth

import (
	"hash/fnv"
	"math"
	"math/rand/v2"
)

// partStyle is the look of one action's affordance part: the only thing in an image that tells
// the action apart from the others.
type partStyle struct {
	name    string // for the doc and the tests
	c1, c2  rgb    // main and second colour of the pattern
	pattern int    // patternSolid, patternStripes, patternChecker, patternDots
	form    int    // formBar, formBlade, formDisc, formCap
}

const (
	patternSolid = iota
	patternStripes
	patternChecker
	patternDots
)

const (
	formBar   = iota // a rounded bar (handle)
	formBlade        // a tapering blade
	formDisc         // an ellipse
	formCap          // a wide square-cornered block
)

// partStyles are the parts of the actions, by the action's position in Options.Actions:
// saturated hues far from skin and from the neutral bodies and clutter, each with its own
// texture and outline, all strong at the scale of a 16×16 patch.
var partStyles = []partStyle{
	{"red stripes bar", rgb{215, 35, 40}, rgb{250, 245, 235}, patternStripes, formBar},
	{"blue checker blade", rgb{35, 75, 210}, rgb{235, 240, 255}, patternChecker, formBlade},
	{"green dots disc", rgb{30, 160, 60}, rgb{200, 255, 190}, patternDots, formDisc},
	{"purple cap", rgb{135, 40, 185}, rgb{135, 40, 185}, patternSolid, formCap},
	{"cyan stripes blade", rgb{20, 200, 210}, rgb{10, 60, 80}, patternStripes, formBlade},
	{"magenta checker bar", rgb{225, 40, 165}, rgb{25, 20, 30}, patternChecker, formBar},
	{"yellow dots cap", rgb{240, 215, 20}, rgb{70, 50, 10}, patternDots, formCap},
	{"lime disc", rgb{150, 230, 30}, rgb{150, 230, 30}, patternSolid, formDisc},
}

// MaxActions is the largest number of actions one dataset can hold: one distinct part style each
// (the length of partStyles).
const MaxActions = 8

// bodyColours are the neutral colours every object's body is drawn from, whatever its action.
var bodyColours = []rgb{
	{150, 150, 150}, {110, 110, 115}, {190, 185, 175}, {125, 100, 80}, {95, 105, 120}, {170, 160, 140},
}

// skinTones are the hands' colours.
var skinTones = []rgb{
	{241, 194, 167}, {224, 172, 140}, {198, 134, 103}, {160, 108, 78}, {115, 76, 55},
}

// objectSpec is the fixed geometry of one object (an ACTION/OBJECT folder) in object
// coordinates where the body's length is 1: the body spans u ∈ [−½, ½], v ∈ [−w/2, w/2].
type objectSpec struct {
	style     partStyle
	bodyForm  int     // 0 rounded box, 1 ellipse, 2 capsule: by object index, shared by all actions
	bodyW     float64 // body width (length 1)
	side      bool    // part on the body's side (+v) instead of its end (+u)
	partL     float64 // part length along its own axis
	partW     float64 // part width
	baseAngle float64 // usual orientation of the object in the image
}

// newObjectSpec draws the geometry of object j of an action from the seed.
func newObjectSpec(seed uint64, action string, j int, style partStyle) objectSpec {
	r := rng(seed, "object", action, j)
	return objectSpec{
		style:     style,
		bodyForm:  j % 3,
		bodyW:     0.38 + 0.2*r.Float64(),
		side:      j%2 == 1,
		partL:     0.5 + 0.15*r.Float64(),
		partW:     0.34 + 0.12*r.Float64(),
		baseAngle: 2 * math.Pi * r.Float64(),
	}
}

// partFrame returns the part's centre, axis direction and the point on the body it is attached to,
// in object coordinates.
func (o objectSpec) partFrame() (centre, axis vec) {
	if o.side {
		axis = vec{0, 1}
		return vec{0, o.bodyW/2 + o.partL/2 - 0.08}, axis
	}
	axis = vec{1, 0}
	return vec{0.5 + o.partL/2 - 0.08, 0}, axis
}

// extent is the object's bounding box in object coordinates.
func (o objectSpec) extent() (lo, hi vec) {
	c, ax := o.partFrame()
	pe := c.add(ax.scale(o.partL / 2)).add(ax.perp().scale(o.partW * 0.65))
	pf := c.sub(ax.scale(o.partL / 2)).sub(ax.perp().scale(o.partW * 0.65))
	lo = vec{math.Min(-0.5, math.Min(pe.x, pf.x)), math.Min(-o.bodyW/2, math.Min(pe.y, pf.y))}
	hi = vec{math.Max(0.5, math.Max(pe.x, pf.x)), math.Max(o.bodyW/2, math.Max(pe.y, pf.y))}
	return lo, hi
}

// kind is the role of an image in the dataset.
type kind int

const (
	kindExo  kind = iota // exocentric training image: object, hand on the part, clutter
	kindEgo              // egocentric training image: the object alone
	kindTest             // egocentric test image, with a GT mask of the part
)

func (k kind) String() string { return [...]string{"exo", "ego", "test"}[k] }

// scene is one rendered image and, for test images, its ground-truth heatmap.
type scene struct {
	c  *canvas
	gt []float64 // blurred part mask, nil unless kindTest
}

// render draws image index i of kind k of object o.
func render(seed uint64, action, object string, o objectSpec, k kind, i, size int) scene {
	r := rng(seed, "image", action, object, k.String(), i)
	// Size: the longer side in [2/3·size, size], aspect 0.7..1, landscape or portrait.
	long := float64(size) * (2.0/3 + r.Float64()/3)
	short := long * (0.7 + 0.3*r.Float64())
	w, h := int(math.Round(long)), int(math.Round(short))
	if r.IntN(2) == 0 {
		w, h = h, w
	}
	c := newCanvas(w, h)
	minSide := float64(min(w, h))

	// Background: a gentle gradient of two neutral colours, then neutral clutter.
	c.gradient(neutral(r, 90, 220), neutral(r, 90, 220), 2*math.Pi*r.Float64())
	nClutter := 2 + r.IntN(4)
	if k == kindExo {
		nClutter += 2 + r.IntN(3)
	}
	for n := 0; n < nClutter; n++ {
		clutter(c, r, minSide)
	}

	// The object: rotated, scaled to a fraction of the shorter side, placed fully inside.
	angle := o.baseAngle + 0.35*r.NormFloat64()
	frac := 0.68 + 0.22*r.Float64() // longest extent / shorter image side
	if k == kindExo {
		frac = 0.5 + 0.22*r.Float64()
	}
	lo, hi := o.extent()
	mid := lo.add(hi).scale(0.5)
	rad := hi.sub(lo).scale(0.5).norm() // radius of the extent around its centre
	s := frac * minSide / (2 * rad)
	margin := 2.0
	place := func(n float64) float64 {
		span := n - 2*(s*rad+margin)
		if span <= 0 {
			return n / 2
		}
		return s*rad + margin + span*r.Float64()
	}
	centre := vec{place(float64(w)), place(float64(h))}
	// toImage maps object coordinates to pixels.
	toImage := func(p vec) vec { return centre.add(p.sub(mid).scale(s).rotate(angle)) }

	body := neutralBody(r)
	drawBody(c, o, s, angle, toImage, body)
	partC, partAx := o.partFrame()
	drawPart(c, r, o, s, angle, toImage)

	if k == kindExo {
		// The hand grasps the part near its middle; the arm leaves the image on the far side.
		grasp := toImage(partC.add(partAx.scale(o.partL * 0.25 * (2*r.Float64() - 1))))
		across := partAx.perp().rotate(angle) // across the part, in the image
		if r.IntN(2) == 0 {
			across = across.scale(-1)
		}
		drawHand(c, r, grasp, across, s*o.partL, float64(max(w, h)))
	}
	c.noise(r, 2.5)

	sc := scene{c: c}
	if k == kindTest {
		m := c.mask(layerPart)
		sigma := math.Max(1.5, 0.12*s*math.Min(o.partL, o.partW))
		sc.gt = blur(m, w, h, sigma)
	}
	return sc
}

// drawBody draws the neutral body in one of the three shared forms.
func drawBody(c *canvas, o objectSpec, s, angle float64, toImage func(vec) vec, col rgb) {
	cen := toImage(vec{0, 0})
	hl, hw := s/2, s*o.bodyW/2
	p := shaded{c: col, centre: cen, dir: unit(angle + math.Pi/2), length: hw, amount: 0.15}
	switch o.bodyForm {
	case 0:
		c.fill(box{c: cen, hx: hl, hy: hw, r: 0.3 * hw, angle: angle}, p, 1, layerBody)
	case 1:
		c.fill(ellipse{c: cen, a: hl, b: hw, angle: angle}, p, 1, layerBody)
	default:
		d := unit(angle).scale(hl - hw)
		c.fill(capsule{p0: cen.sub(d), p1: cen.add(d), r: hw}, p, 1, layerBody)
	}
}

// drawPart draws the action's part in its colours, texture and outline.
func drawPart(c *canvas, r *rand.Rand, o objectSpec, s, angle float64, toImage func(vec) vec) {
	pc, ax := o.partFrame()
	cen := toImage(pc)
	a := angle + math.Atan2(ax.y, ax.x) // the part's axis in the image
	hl, hw := s*o.partL/2, s*o.partW/2
	st := o.style
	// Texture period: a few pixels, so a 16×16 patch at 224 px holds one or two periods.
	period := math.Max(5, 0.22*s*o.partW)
	var p paint
	switch st.pattern {
	case patternStripes:
		p = stripes{c1: st.c1, c2: st.c2, angle: a + 0.2*r.NormFloat64(), period: period}
	case patternChecker:
		p = checker{c1: st.c1, c2: st.c2, angle: a, cell: period / 2}
	case patternDots:
		p = dots{bg: st.c1, dot: st.c2, spacing: period, r: period * 0.28}
	default:
		p = shaded{c: st.c1, centre: cen, dir: unit(a), length: hl, amount: 0.12}
	}
	var sh shape
	switch st.form {
	case formBar:
		sh = box{c: cen, hx: hl, hy: hw * 0.8, r: 0.5 * hw * 0.8, angle: a}
	case formBlade:
		u, v := unit(a), unit(a).perp()
		base := cen.sub(u.scale(hl))
		sh = polygon{
			base.add(v.scale(hw)), base.sub(v.scale(hw)),
			base.add(u.scale(2 * hl)).sub(v.scale(hw * 0.15)),
			base.add(u.scale(1.6 * hl)).add(v.scale(hw * 0.6)),
		}
	case formDisc:
		sh = ellipse{c: cen, a: hl, b: hw * 1.15, angle: a}
	default:
		sh = box{c: cen, hx: hl * 0.85, hy: hw * 1.2, r: 0.1 * hw, angle: a}
	}
	c.fill(sh, p, 1, layerPart)
}

// drawHand draws a skin-coloured hand at grasp, fingers pointing along across, sized for a part of
// pixel length partLen, with its arm leaving the image (length reach) opposite the fingers.
func drawHand(c *canvas, r *rand.Rand, grasp, across vec, partLen, reach float64) {
	skin := skinTones[r.IntN(len(skinTones))]
	skin = rgb{skin[0] + 8*r.NormFloat64(), skin[1] + 8*r.NormFloat64(), skin[2] + 8*r.NormFloat64()}
	sz := partLen * (0.45 + 0.15*r.Float64()) // palm length
	dir := across.rotate(0.25 * r.NormFloat64())
	// The palm sits on the far side of the grasp point, the fingers wrap over the part.
	palm := grasp.sub(dir.scale(0.35 * sz))
	armDir := dir.scale(-1).rotate(0.5 * r.NormFloat64())
	sleeve := neutral(r, 40, 200)
	c.fill(capsule{p0: palm, p1: palm.add(armDir.scale(reach)), r: 0.42 * sz}, solid(skin), 1, layerHand)
	// A sleeve further up the arm, as a person's would be.
	c.fill(capsule{p0: palm.add(armDir.scale(1.4 * sz)), p1: palm.add(armDir.scale(reach)), r: 0.5 * sz}, solid(sleeve), 1, layerHand)
	c.fill(ellipse{c: palm, a: 0.5 * sz, b: 0.45 * sz, angle: math.Atan2(dir.y, dir.x)}, solid(skin), 1, layerHand)
	fingerR := 0.11 * sz
	for f := 0; f < 4; f++ {
		off := dir.perp().scale((float64(f) - 1.5) * 0.22 * sz)
		base := palm.add(dir.scale(0.3 * sz)).add(off)
		tip := base.add(dir.rotate((float64(f) - 1.5) * 0.08).scale(0.55 * sz * (1 - 0.12*math.Abs(float64(f)-1.5))))
		c.fill(capsule{p0: base, p1: tip, r: fingerR}, solid(skin), 1, layerHand)
	}
	thumbBase := palm.add(dir.perp().scale(0.4 * sz))
	c.fill(capsule{p0: thumbBase, p1: thumbBase.add(dir.rotate(0.9).scale(0.45 * sz)), r: fingerR * 1.15}, solid(skin), 1, layerHand)
}

// clutter draws one neutral background shape: a box, an ellipse or a line.
func clutter(c *canvas, r *rand.Rand, minSide float64) {
	col := neutral(r, 50, 230)
	p := vec{float64(c.w) * r.Float64(), float64(c.h) * r.Float64()}
	sz := minSide * (0.06 + 0.16*r.Float64())
	a := 2 * math.Pi * r.Float64()
	switch r.IntN(3) {
	case 0:
		c.fill(box{c: p, hx: sz, hy: sz * (0.3 + 0.7*r.Float64()), r: 0, angle: a}, solid(col), 0.85, layerClutter)
	case 1:
		c.fill(ellipse{c: p, a: sz, b: sz * (0.4 + 0.6*r.Float64()), angle: a}, solid(col), 0.85, layerClutter)
	default:
		d := unit(a).scale(sz * 2)
		c.fill(capsule{p0: p.sub(d), p1: p.add(d), r: 1 + 0.04*sz}, solid(col), 0.9, layerClutter)
	}
}

// neutral draws a low-saturation colour with grey level in [lo, hi].
func neutral(r *rand.Rand, lo, hi float64) rgb {
	g := lo + (hi-lo)*r.Float64()
	return rgb{g + 12*r.NormFloat64(), g + 12*r.NormFloat64(), g + 12*r.NormFloat64()}
}

// neutralBody draws a body colour: one of the shared neutral colours, jittered.
func neutralBody(r *rand.Rand) rgb {
	b := bodyColours[r.IntN(len(bodyColours))]
	f := 0.85 + 0.3*r.Float64()
	return rgb{b[0] * f, b[1] * f, b[2] * f}
}

// rng returns a generator determined by the seed and a key, so that each image has its own
// stream: an image does not change when the counts of other images do.
func rng(seed uint64, key ...any) *rand.Rand {
	h := fnv.New64a()
	for _, k := range key {
		switch v := k.(type) {
		case string:
			h.Write([]byte(v))
		case int:
			var b [8]byte
			for i := range b {
				b[i] = byte(uint64(v) >> (8 * i))
			}
			h.Write(b[:])
		}
		h.Write([]byte{0})
	}
	return rand.New(rand.NewPCG(seed, h.Sum64()))
}
