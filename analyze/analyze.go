// Package analyze checks the method's assumptions on a dataset with a trained model (`affgd
// analyze`): (a) whether CLIP's affordance map responds more strongly in egocentric than in
// exocentric images (the premise of the pixel loss's γ2 anchors), (b) how part discovery behaves
// per class — candidate counts, the reliability p, and the share of part-level samples as a
// function of α (computed once, the thresholds swept offline), and (c) the effect of the number
// of clusters K on empty clusters and part-level samples.
package analyze

import (
	"errors"
	"fmt"
	"io"
	"math"
	"slices"

	"github.com/affgd/affgd/data"
	"github.com/affgd/affgd/discovery"
	"github.com/affgd/affgd/models/tokenizer"
	"github.com/affgd/affgd/torch"
	"github.com/affgd/affgd/train"
)

// ActBins is the number of equal bins of [0, 1] in the normalised-map histograms.
const ActBins = 20

// Splits of [Options.Split].
const (
	SplitTrain = "train" // exocentric and egocentric images: (a), (b) and (c)
	SplitTest  = "test"  // egocentric test images with GT masks: (a) for ego only, against the GT
)

// Options configure [Run]. Zero values take the released training's settings.
type Options struct {
	Split     string // SplitTrain (default) or SplitTest
	Resize    int    // training images: shorter side (256)
	Size      int    // crop side / test transform side (224)
	E         int    // exocentric images per sample (3)
	BatchSize int    // samples per forward (8)
	Limit     int    // analyse the first Limit samples (train: of epoch 0's order) or test images; 0 = all
	Seed      uint64 // the loader's shuffle and augmentation, and the K-means draws
	Workers   int    // decoding goroutines (0 = one per CPU)
	Device    torch.Device

	Gamma1, Gamma2, Alpha float64 // 0.6 each
	K                     int     // clusters of (b) (3)
	PerImageExo           bool    // exo_maps: per-image
	Ks                    []int   // the K of (c) (2, 3, 4, 5)
	Alphas                []float64
	Progress              func(done, total int)
}

func (o *Options) defaults() {
	if o.Split == "" {
		o.Split = SplitTrain
	}
	if o.Resize == 0 {
		o.Resize = data.ResizeSize
	}
	if o.Size == 0 {
		o.Size = data.CropSize
	}
	if o.E == 0 {
		o.E = 3
	}
	if o.BatchSize == 0 {
		o.BatchSize = 8
	}
	for _, f := range []*float64{&o.Gamma1, &o.Gamma2, &o.Alpha} {
		if *f == 0 {
			*f = 0.6
		}
	}
	if o.K == 0 {
		o.K = 3
	}
	if len(o.Ks) == 0 {
		o.Ks = []int{2, 3, 4, 5}
	}
	if !slices.Contains(o.Ks, o.K) {
		o.Ks = append(o.Ks, o.K)
		slices.Sort(o.Ks)
	}
	if len(o.Alphas) == 0 {
		for i := 0; i <= 20; i++ {
			o.Alphas = append(o.Alphas, float64(i)/20)
		}
	}
	if o.Progress == nil {
		o.Progress = func(int, int) {}
	}
}

// View is the CLIP affordance map's response in one view (ego or exo) of a class.
type View struct {
	Maps int `json:"maps"`
	// Hist counts the cells of the min-max normalised maps in ActBins equal bins of [0, 1].
	Hist []int64 `json:"hist"`
	// AboveGamma2 is the share of cells above γ2 in the normalised maps: the pixel loss's anchor
	// share in ego (§4.9).
	AboveGamma2 float64 `json:"above_gamma2"`
	MeanRaw     float64 `json:"mean_raw"` // mean cosine similarity to the affordance prompt
	MaxRaw      float64 `json:"max_raw"`  // mean over maps of their largest cosine
	// GT figures (test split): the share of the γ2 anchors' weight on the GT part (GT mask pooled
	// to the feature grid, scaled to [0, 1]), and the same share for all cells (what anchors
	// placed anywhere would get).
	AnchorOnGT float64 `json:"anchor_on_gt,omitempty"`
	CellsOnGT  float64 `json:"cells_on_gt,omitempty"`

	above, raw, rawMax, anchorGT, anchors, gtSum, cells float64
}

func (v *View) finish() {
	n := float64(v.Maps)
	if v.Maps == 0 {
		v.AboveGamma2, v.MeanRaw, v.MaxRaw = math.NaN(), math.NaN(), math.NaN()
		return
	}
	v.AboveGamma2, v.MeanRaw, v.MaxRaw = v.above/n, v.raw/n, v.rawMax/n
	if v.cells > 0 {
		v.AnchorOnGT, v.CellsOnGT = v.anchorGT/math.Max(v.anchors, 1e-12), v.gtSum/v.cells
	}
}

// Discovery is part discovery's behaviour on a class's samples, at the configured K.
type Discovery struct {
	Samples     int   `json:"samples"`
	Candidates  []int `json:"candidates"`  // per sample
	Unclustered int   `json:"unclustered"` // fewer than K candidates: object level whatever α
	// PScores are the clustered samples' best reliability p (what α is compared with).
	PScores []float64 `json:"pscores"`
	// PartShare[i] is the share of the samples at part level with α = Options.Alphas[i].
	PartShare []float64 `json:"part_share_by_alpha"`
}

// Clusters is the effect of one K on a set of samples: the share of empty clusters among the
// clustered samples' K·n clusters and the share of part-level samples at α.
type Clusters struct {
	K             int     `json:"k"`
	Samples       int     `json:"samples"`
	Clustered     int     `json:"clustered"`
	EmptyClusters int     `json:"empty_clusters"`
	EmptyShare    float64 `json:"empty_share"`
	PartLevel     int     `json:"part_level"`
	PartShare     float64 `json:"part_share"`
}

// Class is one class's figures (or all samples', under the name "overall").
type Class struct {
	Name      string     `json:"name"`
	Ego       View       `json:"ego"`
	Exo       *View      `json:"exo,omitempty"`
	Discovery *Discovery `json:"discovery,omitempty"`
	Clusters  []Clusters `json:"clusters,omitempty"`
}

// Result is an analysis: overall and per class (in the split's class order, classes without
// samples left out).
type Result struct {
	Split   string    `json:"split"`
	Divide  string    `json:"divide"`
	Samples int       `json:"samples"`
	Gamma1  float64   `json:"gamma1"`
	Gamma2  float64   `json:"gamma2"`
	Alpha   float64   `json:"alpha"`
	K       int       `json:"kmeans_k"`
	Alphas  []float64 `json:"alphas"`
	Overall *Class    `json:"overall"`
	Classes []*Class  `json:"classes"`
}

// newClass makes an empty accumulator for a class.
func newClass(name string, o Options) *Class {
	c := &Class{Name: name, Ego: View{Hist: make([]int64, ActBins)}}
	if o.Split == SplitTrain {
		c.Exo = &View{Hist: make([]int64, ActBins)}
		c.Discovery = &Discovery{}
		for _, k := range o.Ks {
			c.Clusters = append(c.Clusters, Clusters{K: k})
		}
	}
	return c
}

func (c *Class) finish(o Options) {
	c.Ego.finish()
	if c.Exo == nil {
		return
	}
	c.Exo.finish()
	d := c.Discovery
	d.PartShare = make([]float64, len(o.Alphas))
	for i, a := range o.Alphas {
		n := 0
		for _, p := range d.PScores {
			if p >= a {
				n++
			}
		}
		d.PartShare[i] = float64(n) / float64(max(d.Samples, 1))
	}
	for i := range c.Clusters {
		k := &c.Clusters[i]
		k.EmptyShare = float64(k.EmptyClusters) / float64(max(k.Clustered*k.K, 1))
		k.PartShare = float64(k.PartLevel) / float64(max(k.Samples, 1))
	}
}

// Run analyses m on the split of the dataset at root (classes of div).
func Run(m *train.Model, root string, div data.Divide, o Options) (*Result, error) {
	o.defaults()
	classes := div.Classes()
	res := &Result{Split: o.Split, Divide: string(div), Gamma1: o.Gamma1, Gamma2: o.Gamma2, Alpha: o.Alpha, K: o.K, Alphas: o.Alphas}
	all := newClass("overall", o)
	per := make([]*Class, len(classes))
	for i, name := range classes {
		per[i] = newClass(name, o)
	}
	add := func(label int64, f func(c *Class)) {
		f(all)
		f(per[label])
	}
	var err error
	switch o.Split {
	case SplitTrain:
		err = runTrain(m, root, div, o, add, &res.Samples)
	case SplitTest:
		err = runTest(m, root, div, o, add, &res.Samples)
	default:
		return nil, fmt.Errorf("analyze: split %q: want %q or %q", o.Split, SplitTrain, SplitTest)
	}
	if err != nil {
		return nil, err
	}
	if res.Samples == 0 {
		return nil, fmt.Errorf("analyze: no samples in the %s split under %s", o.Split, root)
	}
	all.finish(o)
	res.Overall = all
	for _, c := range per {
		if c.Ego.Maps > 0 {
			c.finish(o)
			res.Classes = append(res.Classes, c)
		}
	}
	return res, nil
}

// normalise min-max normalises each map of (N, h, w) (eps 1e-12: a flat map is 0, as it has no
// cell above γ2 in training either).
func normalise(x *torch.Tensor) *torch.Tensor {
	s := x.Shape()
	flat := x.Reshape(s[0], -1)
	mn, _ := flat.MinDim(1, true)
	mx, _ := flat.MaxDim(1, true)
	return flat.Sub(mn).Div(mx.Sub(mn).AddScalar(1e-12))
}

// viewStats are per-map figures of N raw maps (N, h, w) on the CPU: histogram rows, share above
// γ2, mean and max raw value, and with gt (N, h·w in [0, 1]) the anchors' and the cells' weight
// on it.
type viewStats struct {
	hist                   []int64 // (N, ActBins) row-major
	above, mean, max       []float64
	anchorGT, anchors, gts []float64
}

func statsOf(raw *torch.Tensor, gamma2 float64, gt *torch.Tensor) viewStats {
	n := normalise(raw) // (N, hw)
	idx := n.MulScalar(ActBins).Floor().Clamp(0, ActBins-1).ToDType(torch.Int64)
	bins := torch.Arange(0, ActBins, 1, torch.Int64, raw.Device())
	hist := idx.Unsqueeze(-1).Eq(bins).ToDType(torch.Int64).SumDims([]int64{1}, false) // (N, bins)
	anchor := n.GtScalar(gamma2).ToDType(torch.Float32)
	flatRaw := raw.Reshape(raw.Size(0), -1)
	mx, _ := flatRaw.MaxDim(1, false)
	cols := []*torch.Tensor{anchor.MeanDims([]int64{1}, false), flatRaw.MeanDims([]int64{1}, false), mx}
	if gt != nil {
		cols = append(cols, anchor.Mul(gt).SumDims([]int64{1}, false), anchor.SumDims([]int64{1}, false), gt.MeanDims([]int64{1}, false))
	}
	vals := torch.Stack(cols, 1).ToDType(torch.Float64).To(torch.CPU).Float64s()
	s := viewStats{hist: hist.To(torch.CPU).Int64s()}
	w := len(cols)
	for i := 0; i < len(vals); i += w {
		s.above, s.mean, s.max = append(s.above, vals[i]), append(s.mean, vals[i+1]), append(s.max, vals[i+2])
		if gt != nil {
			s.anchorGT, s.anchors, s.gts = append(s.anchorGT, vals[i+3]), append(s.anchors, vals[i+4]), append(s.gts, vals[i+5])
		}
	}
	return s
}

// addMap adds map i of s to v (cells: the grid size, for the GT shares).
func (v *View) addMap(s viewStats, i, cells int) {
	v.Maps++
	for b := range ActBins {
		v.Hist[b] += s.hist[i*ActBins+b]
	}
	v.above += s.above[i]
	v.raw += s.mean[i]
	v.rawMax += s.max[i]
	if s.gts != nil {
		v.anchorGT += s.anchorGT[i]
		v.anchors += s.anchors[i]
		v.gtSum += s.gts[i] * float64(cells)
		v.cells += float64(cells)
	}
}

func runTrain(m *train.Model, root string, div data.Divide, o Options, add func(int64, func(*Class)), samples *int) error {
	ts, err := data.OpenTrain(root, div)
	if err != nil {
		return err
	}
	loader, err := data.NewTrainLoader(ts, data.LoaderOptions{BatchSize: o.BatchSize, E: o.E, Resize: o.Resize, Crop: o.Size, Workers: o.Workers, Seed: o.Seed})
	if err != nil {
		return err
	}
	defer loader.Close()
	total := len(ts.Items)
	if o.Limit > 0 && o.Limit < total {
		total = o.Limit
	}
	for step := 0; *samples < total; step++ {
		b, err := loader.Next()
		if err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return err
		}
		err = torch.WithScope(func(_ *torch.Scope) {
			torch.NoGrad(func() { trainBatch(m, b, o, add, step, total-*samples) })
		})
		if err != nil {
			return fmt.Errorf("analyze: batch %d: %w", step+1, err)
		}
		*samples += min(int(b.Label.Size(0)), total-*samples)
		b.Release()
		o.Progress(*samples, total)
	}
	return nil
}

// trainBatch adds one training batch (its first keep samples) to the figures.
func trainBatch(m *train.Model, lb *data.Batch, o Options, add func(int64, func(*Class)), step, keep int) {
	batch := train.Batch{Exo: lb.Exo.To(o.Device), Ego: lb.Ego.To(o.Device), Label: lb.Label.To(o.Device)}
	f := must(m.Backbones(batch))
	E := f.E
	aff := discovery.Affinity(f.FEgo, f.FExo, f.TAff, f.TExo, E, f.H, f.W)
	ego := statsOf(aff.SEgo, o.Gamma2, nil)
	exo := statsOf(aff.ExoAff, o.Gamma2, nil)
	labels := lb.Label.Int64s()
	n := min(len(labels), keep)
	type kOut struct {
		cand, empty []int
		rel, best   []float32
	}
	outs := make([]kOut, len(o.Ks))
	for ki, k := range o.Ks {
		g, err := torch.NewGenerator(drawSeed(o.Seed, step, k), o.Device)
		if err != nil {
			torch.Fail("analyze", "%v", err)
		}
		d := discovery.Options{Gamma1: o.Gamma1, Alpha: o.Alpha, Clusters: k, PerImageExo: o.PerImageExo, CountEmpty: true}
		r := must(m.ForwardFeatures(batch, f, train.Options{Epoch: 1, Discovery: d, Gen: g, Gamma2: o.Gamma2, Weights: &train.LossWeights{Proto: 1}}))
		best, _ := r.PScore.MaxDim(1, false)
		outs[ki] = kOut{cand: r.NumCandidates, empty: r.EmptyClusters, rel: r.Reliable.To(torch.CPU).Float32s(), best: best.To(torch.CPU).Float32s()}
	}
	cells := int(f.H * f.W)
	for i := range n {
		add(labels[i], func(c *Class) {
			c.Ego.addMap(ego, i, cells)
			for e := range int(E) {
				c.Exo.addMap(exo, i*int(E)+e, cells)
			}
			for ki, k := range o.Ks {
				out := outs[ki]
				cl := &c.Clusters[ki]
				cl.Samples++
				if out.empty[i] >= 0 {
					cl.Clustered++
					cl.EmptyClusters += out.empty[i]
				}
				if out.rel[i] > 0.5 {
					cl.PartLevel++
				}
				if k == o.K {
					d := c.Discovery
					d.Samples++
					d.Candidates = append(d.Candidates, out.cand[i])
					if p := float64(out.best[i]); math.IsNaN(p) {
						d.Unclustered++
					} else {
						d.PScores = append(d.PScores, p)
					}
				}
			}
		})
	}
}

// drawSeed seeds one batch's K-means draws for one K.
func drawSeed(seed uint64, step, k int) uint64 {
	x := seed ^ uint64(step+1)*0x9E3779B97F4A7C15 ^ uint64(k)*0xBF58476D1CE4E5B9
	x ^= x >> 31
	return (x * 0x94D049BB133111EB) >> 1
}

func runTest(m *train.Model, root string, div data.Divide, o Options, add func(int64, func(*Class)), samples *int) error {
	ts, err := data.OpenTest(root, div)
	if err != nil {
		return err
	}
	items := ts.Items
	if o.Limit > 0 && o.Limit < len(items) {
		items = items[:o.Limit]
	}
	for start := 0; start < len(items); start += o.BatchSize {
		part := items[start:min(start+o.BatchSize, len(items))]
		err := torch.WithScope(func(_ *torch.Scope) {
			torch.NoGrad(func() { testBatch(m, part, o, add) })
		})
		if err != nil {
			return fmt.Errorf("analyze: %w", err)
		}
		*samples += len(part)
		o.Progress(*samples, len(items))
	}
	return nil
}

// testBatch adds test images (ego maps against their GT masks) to the figures.
func testBatch(m *train.Model, items []data.TestItem, o Options, add func(int64, func(*Class))) {
	var imgs, gts []*torch.Tensor
	var prompts []string
	var labels []int64
	p := m.DINO.Cfg.PatchSize
	h, w := int64(o.Size)/p, int64(o.Size)/p
	for _, it := range items {
		rgb, err := data.DecodeImage(it.Image)
		if err != nil {
			torch.Fail("analyze", "%v", err)
		}
		x := must(data.TestTransform(rgb, o.Size))
		gt := must(data.LoadGT(it.GT)).ToDType(torch.Float32)
		pooled := torch.AdaptiveAvgPool2d(gt.Unsqueeze(0).Unsqueeze(0), h, w).Reshape(h * w)
		if mx := pooled.Max().Item(); mx > 0 {
			pooled = pooled.DivScalar(mx)
		}
		imgs, gts = append(imgs, x), append(gts, pooled)
		prompts = append(prompts, affPrompt(m, it.Label))
		labels = append(labels, it.Label)
	}
	x := torch.Stack(imgs, 0).To(o.Device)
	tAff := must(m.CLIP.EncodePrompts(m.Tok, prompts))
	fEgo := must(m.CLIP.DenseFeatures(x))
	sEgo := torch.Einsum("bnc,bc->bn", fEgo.Normalize(2, -1, 1e-12), tAff.Normalize(2, -1, 1e-12)).Reshape(int64(len(items)), h, w)
	s := statsOf(sEgo, o.Gamma2, torch.Stack(gts, 0).To(o.Device))
	for i, l := range labels {
		add(l, func(c *Class) { c.Ego.addMap(s, i, int(h*w)) })
	}
}

// affPrompt is the affordance prompt of a label's class.
func affPrompt(m *train.Model, label int64) string {
	if label < 0 || int(label) >= len(m.Classes) {
		torch.Fail("analyze", "label %d outside the model's %d classes", label, len(m.Classes))
	}
	return tokenizer.AffordancePrompt(m.Classes[label])
}

func must[T any](v T, err error) T {
	if err != nil {
		if te, ok := err.(*torch.Error); ok {
			panic(te)
		}
		panic(&torch.Error{Op: "analyze", Msg: err.Error()})
	}
	return v
}
