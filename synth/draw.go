package synth

import (
	"image"
	"math"
	"math/rand/v2"
)

// This file is a tiny rasteriser: shapes (ellipse, rounded box, capsule, polygon) filled with
// paints (solid, stripes, checker, dots, shaded) on a float canvas, 2×2 supersampled. It draws
// new images, so it loops over pixels in Go; nothing here touches tensor data.

// rgb is a colour with channels in 0..255.
type rgb [3]float64

// vec is a point or direction in pixel coordinates (x right, y down).
type vec struct{ x, y float64 }

func (a vec) add(b vec) vec       { return vec{a.x + b.x, a.y + b.y} }
func (a vec) sub(b vec) vec       { return vec{a.x - b.x, a.y - b.y} }
func (a vec) scale(s float64) vec { return vec{a.x * s, a.y * s} }
func (a vec) dot(b vec) float64   { return a.x*b.x + a.y*b.y }
func (a vec) norm() float64       { return math.Hypot(a.x, a.y) }
func unit(angle float64) vec      { return vec{math.Cos(angle), math.Sin(angle)} }
func (a vec) perp() vec           { return vec{-a.y, a.x} }
func (a vec) rotate(angle float64) vec {
	c, s := math.Cos(angle), math.Sin(angle)
	return vec{c*a.x - s*a.y, s*a.x + c*a.y}
}

// shape is a region of the plane with a bounding box.
type shape interface {
	contains(p vec) bool
	bounds() (lo, hi vec)
}

// ellipse is centred at c with semi-axes a (along angle) and b.
type ellipse struct {
	c     vec
	a, b  float64
	angle float64
}

func (e ellipse) contains(p vec) bool {
	d := p.sub(e.c).rotate(-e.angle)
	return (d.x*d.x)/(e.a*e.a)+(d.y*d.y)/(e.b*e.b) <= 1
}

func (e ellipse) bounds() (vec, vec) {
	r := math.Max(e.a, e.b)
	return e.c.sub(vec{r, r}), e.c.add(vec{r, r})
}

// box is a rectangle centred at c with half-sizes hx (along angle) and hy, corners rounded with
// radius r (0 ≤ r ≤ min(hx, hy)).
type box struct {
	c         vec
	hx, hy, r float64
	angle     float64
}

func (b box) contains(p vec) bool {
	d := p.sub(b.c).rotate(-b.angle)
	qx := math.Abs(d.x) - (b.hx - b.r)
	qy := math.Abs(d.y) - (b.hy - b.r)
	return math.Hypot(math.Max(qx, 0), math.Max(qy, 0))+math.Min(math.Max(qx, qy), 0) <= b.r
}

func (b box) bounds() (vec, vec) {
	r := math.Hypot(b.hx, b.hy)
	return b.c.sub(vec{r, r}), b.c.add(vec{r, r})
}

// capsule is the set of points within r of the segment p0–p1.
type capsule struct {
	p0, p1 vec
	r      float64
}

func (c capsule) contains(p vec) bool {
	d := c.p1.sub(c.p0)
	t := 0.0
	if l2 := d.dot(d); l2 > 0 {
		t = math.Max(0, math.Min(1, p.sub(c.p0).dot(d)/l2))
	}
	return p.sub(c.p0.add(d.scale(t))).norm() <= c.r
}

func (c capsule) bounds() (vec, vec) {
	lo := vec{math.Min(c.p0.x, c.p1.x) - c.r, math.Min(c.p0.y, c.p1.y) - c.r}
	hi := vec{math.Max(c.p0.x, c.p1.x) + c.r, math.Max(c.p0.y, c.p1.y) + c.r}
	return lo, hi
}

// polygon is a simple polygon (even-odd rule).
type polygon []vec

func (pg polygon) contains(p vec) bool {
	in := false
	for i, j := 0, len(pg)-1; i < len(pg); j, i = i, i+1 {
		a, b := pg[i], pg[j]
		if (a.y > p.y) != (b.y > p.y) && p.x < (b.x-a.x)*(p.y-a.y)/(b.y-a.y)+a.x {
			in = !in
		}
	}
	return in
}

func (pg polygon) bounds() (vec, vec) {
	lo, hi := pg[0], pg[0]
	for _, p := range pg[1:] {
		lo = vec{math.Min(lo.x, p.x), math.Min(lo.y, p.y)}
		hi = vec{math.Max(hi.x, p.x), math.Max(hi.y, p.y)}
	}
	return lo, hi
}

// paint gives the colour of a filled shape at a point.
type paint interface{ at(p vec) rgb }

type solid rgb

func (s solid) at(vec) rgb { return rgb(s) }

// stripes alternate c1 and c2 in bands of width period/2 across direction angle.
type stripes struct {
	c1, c2        rgb
	angle, period float64
}

func (s stripes) at(p vec) rgb {
	if math.Mod(math.Abs(p.dot(unit(s.angle))), s.period) < s.period/2 {
		return s.c1
	}
	return s.c2
}

// checker is a checkerboard of square cells of side cell, rotated by angle.
type checker struct {
	c1, c2      rgb
	angle, cell float64
}

func (c checker) at(p vec) rgb {
	d := p.rotate(-c.angle)
	i := int(math.Floor(d.x/c.cell)) + int(math.Floor(d.y/c.cell))
	if i%2 == 0 {
		return c.c1
	}
	return c.c2
}

// dots are discs of colour dot and radius r on a square lattice of pitch spacing over bg.
type dots struct {
	bg, dot    rgb
	spacing, r float64
}

func (d dots) at(p vec) rgb {
	fx := p.x - d.spacing*math.Round(p.x/d.spacing)
	fy := p.y - d.spacing*math.Round(p.y/d.spacing)
	if fx*fx+fy*fy <= d.r*d.r {
		return d.dot
	}
	return d.bg
}

// shaded is a colour brightened towards one side (light from direction dir) over a length.
type shaded struct {
	c      rgb
	centre vec
	dir    vec
	length float64
	amount float64 // relative brightness change from the centre to either end
}

func (s shaded) at(p vec) rgb {
	t := p.sub(s.centre).dot(s.dir) / s.length
	t = math.Max(-1, math.Min(1, t))
	f := 1 + s.amount*t
	return rgb{s.c[0] * f, s.c[1] * f, s.c[2] * f}
}

// canvas is an RGB image in float64 plus, per pixel, the id of the layer drawn last there
// (0 = background), from which the masks of the drawn parts are read.
type canvas struct {
	w, h  int
	pix   []float64 // w·h·3, row-major
	owner []uint8
}

func newCanvas(w, h int) *canvas {
	return &canvas{w: w, h: h, pix: make([]float64, w*h*3), owner: make([]uint8, w*h)}
}

// Layer ids of the canvas's owner map.
const (
	layerBackground uint8 = iota
	layerClutter
	layerBody
	layerPart
	layerHand
)

// subsamples are the offsets of the 2×2 supersampling inside a pixel.
var subsamples = [4]vec{{0.25, 0.25}, {0.75, 0.25}, {0.25, 0.75}, {0.75, 0.75}}

// fill paints shape s with paint p at opacity alpha; pixels at least half covered take layer id.
func (c *canvas) fill(s shape, p paint, alpha float64, layer uint8) {
	lo, hi := s.bounds()
	x0, y0 := max(0, int(math.Floor(lo.x))), max(0, int(math.Floor(lo.y)))
	x1, y1 := min(c.w-1, int(math.Ceil(hi.x))), min(c.h-1, int(math.Ceil(hi.y)))
	for y := y0; y <= y1; y++ {
		for x := x0; x <= x1; x++ {
			n := 0
			for _, o := range subsamples {
				if s.contains(vec{float64(x) + o.x, float64(y) + o.y}) {
					n++
				}
			}
			if n == 0 {
				continue
			}
			a := alpha * float64(n) / 4
			col := p.at(vec{float64(x) + 0.5, float64(y) + 0.5})
			i := (y*c.w + x) * 3
			for k := 0; k < 3; k++ {
				c.pix[i+k] = (1-a)*c.pix[i+k] + a*col[k]
			}
			if n >= 2 && alpha >= 0.5 {
				c.owner[y*c.w+x] = layer
			}
		}
	}
}

// gradient fills the whole canvas with a linear blend from c1 to c2 along direction angle.
func (c *canvas) gradient(c1, c2 rgb, angle float64) {
	d := unit(angle)
	half := (math.Abs(d.x)*float64(c.w) + math.Abs(d.y)*float64(c.h)) / 2
	mid := vec{float64(c.w) / 2, float64(c.h) / 2}
	for y := 0; y < c.h; y++ {
		for x := 0; x < c.w; x++ {
			t := (vec{float64(x) + 0.5, float64(y) + 0.5}.sub(mid).dot(d)/half + 1) / 2
			i := (y*c.w + x) * 3
			for k := 0; k < 3; k++ {
				c.pix[i+k] = (1-t)*c1[k] + t*c2[k]
			}
			c.owner[y*c.w+x] = layerBackground
		}
	}
}

// noise adds independent normal noise of standard deviation sigma to every channel.
func (c *canvas) noise(r *rand.Rand, sigma float64) {
	for i := range c.pix {
		c.pix[i] += sigma * r.NormFloat64()
	}
}

// image returns the canvas as an 8-bit RGBA image, clamping and rounding each channel.
func (c *canvas) image() *image.RGBA {
	img := image.NewRGBA(image.Rect(0, 0, c.w, c.h))
	for i := 0; i < c.w*c.h; i++ {
		for k := 0; k < 3; k++ {
			img.Pix[i*4+k] = to8(c.pix[i*3+k])
		}
		img.Pix[i*4+3] = 255
	}
	return img
}

// mask returns 1 where layer was drawn last, 0 elsewhere.
func (c *canvas) mask(layer uint8) []float64 {
	m := make([]float64, c.w*c.h)
	for i, o := range c.owner {
		if o == layer {
			m[i] = 1
		}
	}
	return m
}

func to8(v float64) uint8 {
	return uint8(math.Max(0, math.Min(255, math.Round(v))))
}

// blur convolves a w×h single-channel map with a normalised Gaussian of standard deviation
// sigma (separable, truncated at 3σ, borders clamped).
func blur(m []float64, w, h int, sigma float64) []float64 {
	rad := int(math.Ceil(3 * sigma))
	k := make([]float64, 2*rad+1)
	sum := 0.0
	for i := range k {
		d := float64(i - rad)
		k[i] = math.Exp(-d * d / (2 * sigma * sigma))
		sum += k[i]
	}
	for i := range k {
		k[i] /= sum
	}
	clamp := func(v, n int) int { return max(0, min(n-1, v)) }
	tmp := make([]float64, len(m))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			s := 0.0
			for i, kv := range k {
				s += kv * m[y*w+clamp(x+i-rad, w)]
			}
			tmp[y*w+x] = s
		}
	}
	out := make([]float64, len(m))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			s := 0.0
			for i, kv := range k {
				s += kv * tmp[clamp(y+i-rad, h)*w+x]
			}
			out[y*w+x] = s
		}
	}
	return out
}

// heatmap turns a non-negative map into an 8-bit grey image scaled so its maximum is 255.
func heatmap(m []float64, w, h int) *image.Gray {
	mx := 0.0
	for _, v := range m {
		mx = math.Max(mx, v)
	}
	img := image.NewGray(image.Rect(0, 0, w, h))
	if mx == 0 {
		return img
	}
	for i, v := range m {
		img.Pix[i] = to8(255 * v / mx)
	}
	return img
}
