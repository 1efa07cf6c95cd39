package discovery

import (
	"fmt"
	"math"

	"github.com/affgd/affgd/torch"
)

// Min-max eps of the released code: candidate maps and reliability similarity maps.
const (
	candidateEps   = 1e-10
	reliabilityEps = 1e-12
	ratioEps       = 1e-10 // added to the denominators of the reliability score
)

// Options configure [Discover].
type Options struct {
	Gamma1   float64 // candidate threshold on the min-max normalised exo map (strict >); 0.6
	Alpha    float64 // reliability a sample's best cluster must reach (p ≥ Alpha); 0.6
	Clusters int     // K-means clusters; also the fewest candidates that allow clustering; 3
	// PerImageExo selects the intended per-image exocentric maps: the map of exo image (b, n) is
	// map b·E+n. False (the default) reproduces the released code's indexing (METHOD.md §9.1):
	// the map of exo image (b, n) is row n of flattened map b, and its candidates are tokens of
	// the first grid row of image (b, n).
	PerImageExo bool
	// Prototypes selects which samples are part level (the ablations of the paper's §4.3 table):
	// Selective (the zero value, as released) clusters and applies α; ObjectLevel gives every
	// sample the object-level maps without clustering; PartLevel ignores α, so every sample with
	// at least Clusters candidates takes its most reliable cluster.
	Prototypes Prototypes
	// CountEmpty makes [Discover] fill Result.EmptyClusters (one more assignment of the
	// candidates to the final centroids per clustered sample; for analysis, off in training).
	CountEmpty bool
}

// Prototypes is the part-level selection mode of [Options.Prototypes].
type Prototypes int

// The modes of [Options.Prototypes].
const (
	Selective   Prototypes = iota // part level when the best cluster's p reaches α (released)
	ObjectLevel                   // every sample object level
	PartLevel                     // part level whenever there are Clusters candidates (α ignored)
)

// DefaultOptions returns the released code's settings: γ1 = 0.6, α = 0.6, 3 clusters, the §9.1
// indexing.
func DefaultOptions() Options {
	return Options{Gamma1: 0.6, Alpha: 0.6, Clusters: 3}
}

// Inputs are the tensors part discovery reads for one batch of B samples with E exocentric
// images each. All are float32 on one device; exo image n of sample b is row b·E+n of the B·E
// dimension. D maps are the raw DINO key descriptors.
type Inputs struct {
	DEgo    *torch.Tensor // (B, C, h, w)
	DExo    *torch.Tensor // (B·E, C, h, w)
	SEgo    *torch.Tensor // (B, h, w): raw CLIP ego map, [AffinityMaps].SEgo
	SExo    *torch.Tensor // (B·E, h, w): CLIP exo map, [AffinityMaps].SExo (object-level fallback)
	MExo    *torch.Tensor // (B·E, h, w): the map candidates are read from (detached here)
	SamHard *torch.Tensor // (B, h·w): DINO saliency, 0 or 1
	E       int64
}

// Result is the outcome of [Discover]. No tensor carries autograd history.
type Result struct {
	Reliable *torch.Tensor // (B) float32: 1 part level, 0 object level
	// PScore is the reliability p of every cluster, (B, Clusters); NaN for a sample with too
	// few candidates to cluster. Low-reliability samples keep their (all < Alpha) scores.
	PScore        *torch.Tensor
	WEgo          *torch.Tensor // (B, h, w): (partmap_ego + soft_ego) / 2
	WExo          *torch.Tensor // (B·E, h, w): (partmap_exo + soft_exo) / 2
	NumCandidates []int         // per sample: the candidate descriptors collected (§7a)
	// EmptyClusters is, per sample, how many of its final K-means clusters hold no candidate
	// (-1 for a sample that was not clustered); filled only with Options.CountEmpty.
	EmptyClusters []int
}

// Discover runs the part discovery of METHOD.md §7 for every sample of the batch.
//
// For sample b: (a) each exo image's map (see [Options.PerImageExo]) is min-max normalised
// (eps 1e-10) and the raw exo descriptors at positions above Gamma1 are the candidates, exo
// image 0's positions ascending, then image 1's, and so on; (b) with fewer than Clusters
// candidates the sample is object level; (c) the candidates are clustered by [KMeans] (300
// iterations at most, tol 1e-4) and the centroids L2-normalised; (d) every centroid's similarity
// to the channel-normalised exo descriptors and to the channel-normalised D_ego ⊙ S_ego (the
// CLIP map weights the channels before the normalisation) is computed; (e) each cluster's
// reliability p compares its binarised ego similarity (min-max, eps 1e-12, above its mean) with
// SamHard; if no p reaches Alpha the sample is object level, otherwise the cluster of largest p
// gives the part maps and, from its normalised centroid and the raw descriptors, the soft maps
// (softmax of minus the distance, jointly over all E·h·w exo positions; over h·w for ego).
// (f) An object-level sample takes SEgo[b] and its exo CLIP maps from SExo (under the default
// indexing: row n of SExo map b, repeated down all h rows) as both its part and soft maps.
//
// inits[b], when present, gives the Clusters initial centroid indices into sample b's candidate
// list (duplicates allowed: a duplicated centroid gives an empty cluster, as in the package); it
// is ignored when sample b has too few candidates to cluster.
// Other samples draw them as fast_pytorch_kmeans does, torch.randint(0, N, (Clusters,)) on the
// inputs' device, from g (nil: libtorch's default generator of that device, which is what the
// released code uses); g must be on the inputs' device. Draws happen in sample order and only
// for samples that reach clustering, so a generator seeded like torch.manual_seed reproduces the
// released code's draws.
//
// The default indexing needs E ≤ h (it reads rows 0..E−1 of a map).
func Discover(in Inputs, opt Options, inits map[int][]int64, g *torch.Generator) (*Result, error) {
	var res *Result
	err := torch.Try(func() {
		torch.NoGrad(func() {
			s := torch.NewScope()
			defer s.Close()
			res = discover(in, opt, inits, g)
			s.Keep(res.Reliable, res.PScore, res.WEgo, res.WExo)
		})
	})
	if err != nil {
		return nil, err
	}
	return res, nil
}

// dims are the sizes of one batch.
type dims struct{ B, E, C, h, w, hw int64 }

// validate checks the inputs and options and returns the batch sizes.
func validate(in Inputs, opt Options, inits map[int][]int64) dims {
	const op = "discovery.Discover"
	named := []struct {
		name string
		t    *torch.Tensor
	}{{"DEgo", in.DEgo}, {"DExo", in.DExo}, {"SEgo", in.SEgo}, {"SExo", in.SExo}, {"MExo", in.MExo}, {"SamHard", in.SamHard}}
	for _, n := range named {
		if n.t == nil {
			torch.Fail(op, "input %s is nil", n.name)
		}
		if n.t.DType() != torch.Float32 {
			torch.Fail(op, "input %s has dtype %v, want float32", n.name, n.t.DType())
		}
		if n.t.Device() != in.DEgo.Device() {
			torch.Fail(op, "input %s is on %v, DEgo on %v", n.name, n.t.Device(), in.DEgo.Device())
		}
	}
	if in.DEgo.Dim() != 4 {
		torch.Fail(op, "DEgo has shape %v, want (B, C, h, w)", in.DEgo.Shape())
	}
	if in.E < 1 {
		torch.Fail(op, "E = %d, want ≥ 1", in.E)
	}
	d := dims{B: in.DEgo.Size(0), E: in.E, C: in.DEgo.Size(1), h: in.DEgo.Size(2), w: in.DEgo.Size(3)}
	d.hw = d.h * d.w
	if d.B < 1 || d.C < 1 || d.hw < 1 {
		torch.Fail(op, "DEgo has shape %v: empty batch, channels or grid", in.DEgo.Shape())
	}
	checkShape(op, "DExo", in.DExo, d.B*d.E, d.C, d.h, d.w)
	checkShape(op, "SEgo", in.SEgo, d.B, d.h, d.w)
	checkShape(op, "SExo", in.SExo, d.B*d.E, d.h, d.w)
	checkShape(op, "MExo", in.MExo, d.B*d.E, d.h, d.w)
	checkShape(op, "SamHard", in.SamHard, d.B, d.hw)
	if opt.Clusters < 1 {
		torch.Fail(op, "Options.Clusters = %d, want ≥ 1", opt.Clusters)
	}
	if opt.Prototypes < Selective || opt.Prototypes > PartLevel {
		torch.Fail(op, "Options.Prototypes = %d, want Selective, ObjectLevel or PartLevel", opt.Prototypes)
	}
	if math.IsNaN(opt.Gamma1) || math.IsNaN(opt.Alpha) {
		torch.Fail(op, "Options.Gamma1 = %v, Options.Alpha = %v: NaN", opt.Gamma1, opt.Alpha)
	}
	if !opt.PerImageExo && d.E > d.h {
		torch.Fail(op, "the released exo indexing (Options.PerImageExo false) reads row n < E of a map: E = %d > h = %d", d.E, d.h)
	}
	for b, idx := range inits {
		if b < 0 || int64(b) >= d.B {
			torch.Fail(op, "inits has an entry for sample %d of a batch of %d", b, d.B)
		}
		if len(idx) != opt.Clusters {
			torch.Fail(op, "inits[%d] has %d indices, want Options.Clusters = %d", b, len(idx), opt.Clusters)
		}
	}
	return d
}

// sampleMaps are one sample's part maps and soft maps, (h, w) and (E, h, w).
type sampleMaps struct{ partEgo, softEgo, partExo, softExo *torch.Tensor }

func discover(in Inputs, opt Options, inits map[int][]int64, g *torch.Generator) *Result {
	d := validate(in, opt, inits)
	dev := in.DEgo.Device()
	K := int64(opt.Clusters)

	// Batch-wide views and precomputations (elementwise or per channel vector, so they give the
	// values the released code computes sample by sample).
	exoFlat := in.DExo.Reshape(d.B, d.E, d.C, d.hw)            // exo_desc per sample, channels first
	exoTok := exoFlat.Permute(0, 1, 3, 2)                      // (B, E, hw, C): one descriptor per token
	egoTok := in.DEgo.Reshape(d.B, d.C, d.hw).Permute(0, 2, 1) // (B, hw, C), raw
	egoWeighted := in.DEgo.Mul(in.SEgo.Unsqueeze(1)).Reshape(d.B, d.C, d.hw)

	// The maps candidates are read from, and the object-level exo maps, one row per exo image of
	// each sample: under §9.1 row n of map b (length w), else map b·E+n (length h·w).
	m := in.MExo.Detach()
	var cand, fallbackExo *torch.Tensor
	var L int64
	if opt.PerImageExo {
		L = d.hw
		cand = m.Reshape(d.B, d.E, d.hw)
		fallbackExo = in.SExo.Reshape(d.B, d.E, d.h, d.w)
	} else {
		L = d.w
		cand = m.Narrow(0, 0, d.B).Narrow(1, 0, d.E) // (B, E, w)
		fallbackExo = in.SExo.Narrow(0, 0, d.B).Narrow(1, 0, d.E).Unsqueeze(2).Expand(d.B, d.E, d.h, d.w)
	}
	lo, _ := cand.MinDim(-1, true)
	hi, _ := cand.MaxDim(-1, true)
	selected := cand.Sub(lo).Div(hi.Sub(lo).AddScalar(candidateEps)).GtScalar(opt.Gamma1) // (B, E, L)
	counts := selected.SumDims([]int64{1, 2}, false).To(torch.CPU).Int64s()

	res := &Result{NumCandidates: make([]int, d.B)}
	if opt.CountEmpty {
		res.EmptyClusters = make([]int, d.B)
	}
	reliable := make([]float32, d.B)
	scores := make([]*torch.Tensor, d.B)
	maps := make([]sampleMaps, d.B)
	for b := range d.B {
		res.NumCandidates[b] = int(counts[b])
		object := sampleMaps{
			partEgo: in.SEgo.Select(0, b), softEgo: in.SEgo.Select(0, b),
			partExo: fallbackExo.Select(0, b), softExo: fallbackExo.Select(0, b),
		}
		if opt.CountEmpty {
			res.EmptyClusters[b] = -1
		}
		if counts[b] < K || opt.Prototypes == ObjectLevel {
			scores[b] = torch.Full([]int64{K}, math.NaN(), torch.Float32, dev)
			maps[b] = object
			continue
		}
		var init *torch.Tensor
		if idx, ok := inits[int(b)]; ok {
			for _, i := range idx {
				if i < 0 || i >= counts[b] {
					torch.Fail("discovery.Discover", "inits[%d] index %d out of range for %d candidates", b, i, counts[b])
				}
			}
			init = torch.FromSliceOn(idx, dev, K)
		} else {
			init = torch.Randint(0, counts[b], []int64{K}, g, dev)
		}
		points := exoTok.Select(0, b).Narrow(1, 0, L).Index(selected.Select(0, b)) // (N, C)
		part, p, empty, ok := cluster(d, opt, points, init, exoFlat.Select(0, b), exoTok.Select(0, b),
			egoWeighted.Select(0, b), egoTok.Select(0, b), in.SamHard.Select(0, b))
		scores[b] = p
		if opt.CountEmpty {
			res.EmptyClusters[b] = empty
		}
		if !ok {
			maps[b] = object
			continue
		}
		reliable[b] = 1
		maps[b] = part
	}

	res.Reliable = torch.FromSliceOn(reliable, dev, d.B)
	res.PScore = torch.Stack(scores, 0)
	stack := func(get func(sampleMaps) *torch.Tensor) *torch.Tensor {
		ts := make([]*torch.Tensor, len(maps))
		for i, sm := range maps {
			ts[i] = get(sm)
		}
		return torch.Stack(ts, 0)
	}
	res.WEgo = stack(func(s sampleMaps) *torch.Tensor { return s.partEgo }).
		Add(stack(func(s sampleMaps) *torch.Tensor { return s.softEgo })).DivScalar(2)
	res.WExo = stack(func(s sampleMaps) *torch.Tensor { return s.partExo }).
		Add(stack(func(s sampleMaps) *torch.Tensor { return s.softExo })).DivScalar(2).
		Reshape(d.B*d.E, d.h, d.w)
	return res
}

// cluster runs §7c–e for one sample with at least Clusters candidate points (N, C): it returns
// the part and soft maps of the most reliable cluster, every cluster's reliability p (K), and
// whether the best p reaches Alpha (false: the sample is object level and the maps are nil;
// always true under PartLevel), and with Options.CountEmpty the number of empty clusters.
// exo (E, C, hw) and exoTok (E, hw, C) are the sample's exo descriptors, egoWeighted (C, hw) is
// D_ego ⊙ S_ego, egoTok (hw, C) the raw D_ego, sam (hw) the saliency. Its temporaries are freed;
// the results belong to the caller's scope.
func cluster(d dims, opt Options, points, init, exo, exoTok, egoWeighted, egoTok, sam *torch.Tensor) (sampleMaps, *torch.Tensor, int, bool) {
	s := torch.NewScope()
	defer s.Close()

	raw := kmeans(points, init, KMeansMaxIter, KMeansTol)
	empty := 0
	if opt.CountEmpty {
		empty = emptyClusters(points, raw)
	}
	centroids := raw.Normalize(2, 1, normEps) // (K, C)

	// Reliability of each cluster from its ego similarity map.
	sim := centroids.Mm(egoWeighted.Normalize(2, 0, normEps)) // (K, hw)
	hi, _ := sim.MaxDim(-1, true)
	lo, _ := sim.MinDim(-1, true)
	simNorm := sim.Sub(lo).Div(hi.Sub(lo).AddScalar(reliabilityEps))
	hard := simNorm.Gt(simNorm.MeanDims([]int64{1}, true)).ToDType(torch.Float32)
	inter := hard.Mul(sam).SumDims([]int64{1}, false)
	hardSum := hard.SumDims([]int64{1}, false)
	samSum := sam.Sum()
	union := hardSum.Add(samSum).Sub(inter)
	p := inter.Div(hardSum.AddScalar(ratioEps)).Add(samSum.Div(union.AddScalar(ratioEps))).DivScalar(2)
	s.Keep(p)
	if opt.Prototypes != PartLevel && p.Max().LtScalar(opt.Alpha).Item() != 0 {
		return sampleMaps{}, p, empty, false
	}
	k := p.ArgmaxDim(0, false).ItemInt()

	// Part maps of cluster k: its similarity to every channel-normalised exo descriptor and the
	// ego similarity computed above.
	c := centroids.Select(0, k)
	partExo := centroids.Matmul(exo.Normalize(2, 1, normEps)).Select(1, k).Reshape(d.E, d.h, d.w) // (E, K, hw) → k
	partEgo := sim.Select(0, k).Reshape(d.h, d.w)

	// Soft maps: softmax of minus the distance of the raw descriptors to the normalised centroid,
	// jointly over the E·hw exo tokens.
	exoDist := exoTok.Reshape(d.E*d.hw, d.C).Sub(c).Norm(2, []int64{1}, false)
	egoDist := egoTok.Sub(c).Norm(2, []int64{1}, false)
	softExo := exoDist.Neg().Softmax(0).Reshape(d.E, d.h, d.w)
	softEgo := egoDist.Neg().Softmax(0).Reshape(d.h, d.w)

	m := sampleMaps{partEgo: partEgo, softEgo: softEgo, partExo: partExo, softExo: softExo}
	s.Keep(m.partEgo, m.softEgo, m.partExo, m.softExo)
	return m, p, empty, true
}

// emptyClusters counts the centroids (K, C) to which no point (N, C) is closest, with the
// assignment rule of [KMeans].
func emptyClusters(x, c *torch.Tensor) int {
	sim := x.MulScalar(2).Mm(c.Transpose(0, 1)).Sub(x.PowScalar(2).SumDims([]int64{1}, false).Unsqueeze(1)).
		Sub(c.PowScalar(2).SumDims([]int64{1}, false).Unsqueeze(0))
	_, closest := sim.MaxDim(-1, false)
	k := c.Size(0)
	hit := closest.Unsqueeze(0).Eq(torch.Arange(0, float64(k), 1, torch.Int64, x.Device()).Unsqueeze(1)).
		ToDType(torch.Float32).SumDims([]int64{1}, false)
	return int(hit.EqScalar(0).ToDType(torch.Float32).Sum().Item())
}

// String describes a result briefly (for logs): how many samples are part level.
func (r *Result) String() string {
	if r == nil || r.Reliable == nil {
		return "discovery.Result(nil)"
	}
	var n float64
	if err := torch.Try(func() { n = r.Reliable.Sum().Item() }); err != nil {
		return "discovery.Result(" + err.Error() + ")"
	}
	return fmt.Sprintf("discovery.Result(%v of %d part level, candidates %v)", n, len(r.NumCandidates), r.NumCandidates)
}
