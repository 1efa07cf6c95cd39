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

// discover runs §7 for the whole batch at once: one device→host read (the candidate counts,
// which the K-means draws and the padding need), then every clustered sample's K-means,
// reliability, best cluster and maps as batched tensor ops on the device. Each sample's values
// are those of the sample-by-sample computation (the per-sample loop of earlier versions; test
// TestBatchedEqualsPerSample): the batched products multiply the same rows, padded points are
// zero and carry no weight, and a converged sample keeps its centroids.
func discover(in Inputs, opt Options, inits map[int][]int64, g *torch.Generator) *Result {
	d := validate(in, opt, inits)
	dev := in.DEgo.Device()
	K := int64(opt.Clusters)

	v := newViews(d, in, opt)
	exoFlat, exoTok, egoTok, egoWeighted := v.exoFlat, v.exoTok, v.egoTok, v.egoWeighted
	fallbackExo, selected, L := v.fallbackExo, v.selected, v.L
	counts := selected.SumDims([]int64{1, 2}, false).Int64s() // the one read

	res := &Result{NumCandidates: make([]int, d.B)}
	if opt.CountEmpty {
		res.EmptyClusters = make([]int, d.B)
	}
	// (b) Who is clustered, and (c) their initial centroids, drawn in sample order as the
	// released code draws them.
	var clustered []int64
	var initRows []*torch.Tensor
	var nMax int64
	for b := range d.B {
		res.NumCandidates[b] = int(counts[b])
		if opt.CountEmpty {
			res.EmptyClusters[b] = -1
		}
		if counts[b] < K || opt.Prototypes == ObjectLevel {
			continue
		}
		if idx, ok := inits[int(b)]; ok {
			for _, i := range idx {
				if i < 0 || i >= counts[b] {
					torch.Fail("discovery.Discover", "inits[%d] index %d out of range for %d candidates", b, i, counts[b])
				}
			}
			initRows = append(initRows, torch.FromSliceOn(idx, dev, K))
		} else {
			initRows = append(initRows, torch.Randint(0, counts[b], []int64{K}, g, dev))
		}
		clustered = append(clustered, b)
		nMax = max(nMax, counts[b])
	}

	// (f) The object-level maps, which the part-level samples then replace.
	partEgo, softEgo := in.SEgo.Clone(), in.SEgo.Clone()
	partExo, softExo := fallbackExo.Clone(), fallbackExo.Clone()
	reliable := torch.Zeros([]int64{d.B}, dev)
	scores := torch.Full([]int64{d.B, K}, math.NaN(), torch.Float32, dev)
	if len(clustered) > 0 {
		nc := int64(len(clustered))
		idx := torch.FromSliceOn(clustered, dev, nc)
		// (a) Each clustered sample's candidates in the released order (exo image 0's positions
		// ascending, then image 1's, ...), padded to nMax with zero points: a stable descending
		// sort of the selection puts the selected positions first, in order.
		sel := selected.IndexSelect(0, idx).Reshape(nc, d.E*L)
		_, order := sel.ToDType(torch.Int64).Sort(1, true, true)
		pos := order.Narrow(1, 0, nMax) // (nc, nMax)
		valid := torch.Arange(0, float64(nMax), 1, torch.Int64, dev).Unsqueeze(0).
			Lt(torch.FromSliceOn(countsOf(counts, clustered), dev, nc, 1)) // (nc, nMax)
		tok := exoTok.Narrow(2, 0, L).IndexSelect(0, idx).Reshape(nc, d.E*L, d.C)
		points := tok.Gather(1, pos.Unsqueeze(2).Expand(nc, nMax, d.C))
		points = torch.Where(valid.Unsqueeze(2), points, torch.Zeros([]int64{1}, dev))
		validF := valid.ToDType(torch.Float32)

		raw := kmeansBatch(points, validF, torch.Stack(initRows, 0), KMeansMaxIter, KMeansTol)
		if opt.CountEmpty {
			empty := emptyClustersBatch(points, validF, raw).Int64s()
			for i, b := range clustered {
				res.EmptyClusters[b] = int(empty[i])
			}
		}
		c := clusterMaps(d, opt, raw, idx, exoFlat, exoTok, egoWeighted, egoTok, in.SamHard)
		obj := func(t *torch.Tensor) *torch.Tensor { return t.IndexSelect(0, idx) }
		put := func(dst, part *torch.Tensor) {
			ok := c.ok.Reshape(append([]int64{nc}, ones(int64(part.Dim()-1))...)...)
			dst.IndexPut_([]*torch.Tensor{idx}, torch.Where(ok, part, obj(dst)), false)
		}
		put(partEgo, c.partEgo)
		put(softEgo, c.softEgo)
		put(partExo, c.partExo)
		put(softExo, c.softExo)
		reliable.IndexPut_([]*torch.Tensor{idx}, c.ok.ToDType(torch.Float32), false)
		scores.IndexPut_([]*torch.Tensor{idx}, c.p, false)
	}
	res.Reliable = reliable
	res.PScore = scores
	res.WEgo = partEgo.Add(softEgo).DivScalar(2)
	res.WExo = partExo.Add(softExo).DivScalar(2).Reshape(d.B*d.E, d.h, d.w)
	return res
}

// views are the batch-wide views and precomputations that part discovery starts from (§7a–b):
// elementwise or per channel vector, so they give the values the released code computes sample
// by sample.
type views struct {
	exoFlat     *torch.Tensor // (B, E, C, hw): exo_desc per sample, channels first
	exoTok      *torch.Tensor // (B, E, hw, C): one descriptor per token
	egoTok      *torch.Tensor // (B, hw, C), raw D_ego
	egoWeighted *torch.Tensor // (B, C, hw): D_ego ⊙ S_ego
	fallbackExo *torch.Tensor // (B, E, h, w): the object-level exo maps
	selected    *torch.Tensor // (B, E, L) bool: the candidates (normalised map > Gamma1)
	L           int64         // candidates' row length: h·w under §9.1, else w
}

// newViews computes [views]. The maps candidates are read from, and the object-level exo maps,
// have one row per exo image of each sample: under §9.1 row n of map b (length w), else map
// b·E+n (length h·w).
func newViews(d dims, in Inputs, opt Options) views {
	v := views{}
	v.exoFlat = in.DExo.Reshape(d.B, d.E, d.C, d.hw)
	v.exoTok = v.exoFlat.Permute(0, 1, 3, 2)
	v.egoTok = in.DEgo.Reshape(d.B, d.C, d.hw).Permute(0, 2, 1)
	v.egoWeighted = in.DEgo.Mul(in.SEgo.Unsqueeze(1)).Reshape(d.B, d.C, d.hw)
	m := in.MExo.Detach()
	var cand *torch.Tensor
	if opt.PerImageExo {
		v.L = d.hw
		cand = m.Reshape(d.B, d.E, d.hw)
		v.fallbackExo = in.SExo.Reshape(d.B, d.E, d.h, d.w)
	} else {
		v.L = d.w
		cand = m.Narrow(0, 0, d.B).Narrow(1, 0, d.E) // (B, E, w)
		v.fallbackExo = in.SExo.Narrow(0, 0, d.B).Narrow(1, 0, d.E).Unsqueeze(2).Expand(d.B, d.E, d.h, d.w)
	}
	lo, _ := cand.MinDim(-1, true)
	hi, _ := cand.MaxDim(-1, true)
	v.selected = cand.Sub(lo).Div(hi.Sub(lo).AddScalar(candidateEps)).GtScalar(opt.Gamma1)
	return v
}

// countsOf returns counts[b] for the samples b of idx.
func countsOf(counts []int64, idx []int64) []int64 {
	out := make([]int64, len(idx))
	for i, b := range idx {
		out[i] = counts[b]
	}
	return out
}

// ones is n ones (a shape's trailing singleton dimensions).
func ones(n int64) []int64 {
	out := make([]int64, n)
	for i := range out {
		out[i] = 1
	}
	return out
}

// clustered are the batched §7d–e results of the nc clustered samples: their part and soft
// maps from the most reliable cluster, every cluster's p, and whether the sample is part level.
type clustered struct {
	partEgo, softEgo *torch.Tensor // (nc, h, w)
	partExo, softExo *torch.Tensor // (nc, E, h, w)
	p                *torch.Tensor // (nc, K)
	ok               *torch.Tensor // (nc) bool: the best p reaches Alpha (always under PartLevel)
}

// clusterMaps computes §7c–e for the clustered samples idx from their raw centroids (nc, K, C):
// L2-normalised centroids, their ego similarity maps and reliabilities p, the best cluster
// (argmax p), and its part maps (similarity to the channel-normalised exo descriptors and the
// ego similarity) and soft maps (softmax of minus the distance of the raw descriptors to the
// normalised centroid, jointly over the E·hw exo tokens). exoFlat (B, E, C, hw), exoTok
// (B, E, hw, C), egoWeighted (B, C, hw) = D_ego ⊙ S_ego, egoTok (B, hw, C) raw D_ego, sam
// (B, hw) are the whole batch's.
func clusterMaps(d dims, opt Options, raw, idx, exoFlat, exoTok, egoWeighted, egoTok, sam *torch.Tensor) clustered {
	nc := raw.Size(0)
	centroids := raw.Normalize(2, 2, normEps) // (nc, K, C)

	// Reliability of each cluster from its ego similarity map.
	sim := centroids.Bmm(egoWeighted.IndexSelect(0, idx).Normalize(2, 1, normEps)) // (nc, K, hw)
	hi, _ := sim.MaxDim(-1, true)
	lo, _ := sim.MinDim(-1, true)
	simNorm := sim.Sub(lo).Div(hi.Sub(lo).AddScalar(reliabilityEps))
	hard := simNorm.Gt(simNorm.MeanDims([]int64{2}, true)).ToDType(torch.Float32)
	sm := sam.IndexSelect(0, idx).Unsqueeze(1) // (nc, 1, hw)
	inter := hard.Mul(sm).SumDims([]int64{2}, false)
	hardSum := hard.SumDims([]int64{2}, false)
	samSum := sm.SumDims([]int64{2}, false) // (nc, 1)
	union := hardSum.Add(samSum).Sub(inter)
	p := inter.Div(hardSum.AddScalar(ratioEps)).Add(samSum.Div(union.AddScalar(ratioEps))).DivScalar(2) // (nc, K)

	best, _ := p.MaxDim(1, false)
	ok := best.LtScalar(opt.Alpha).LogicalNot()
	if opt.Prototypes == PartLevel {
		ok = torch.Ones([]int64{nc}, torch.Bool, p.Device())
	}
	k := p.ArgmaxDim(1, false) // (nc)

	// Part maps of cluster k.
	exoN := exoFlat.IndexSelect(0, idx).Normalize(2, 2, normEps) // (nc, E, C, hw)
	allExo := centroids.Unsqueeze(1).Matmul(exoN)                // (nc, E, K, hw)
	kExo := k.Reshape(nc, 1, 1, 1).Expand(nc, d.E, 1, d.hw)
	partExo := allExo.Gather(2, kExo).Reshape(nc, d.E, d.h, d.w)
	partEgo := sim.Gather(1, k.Reshape(nc, 1, 1).Expand(nc, 1, d.hw)).Reshape(nc, d.h, d.w)

	// Soft maps.
	c := centroids.Gather(1, k.Reshape(nc, 1, 1).Expand(nc, 1, d.C)) // (nc, 1, C)
	exoDist := exoTok.IndexSelect(0, idx).Reshape(nc, d.E*d.hw, d.C).Sub(c).Norm(2, []int64{2}, false)
	// The ego tokens keep the channels-first layout of the per-sample view (the reduction's
	// order follows the layout).
	egoDist := egoTok.Permute(0, 2, 1).IndexSelect(0, idx).Permute(0, 2, 1).Sub(c).Norm(2, []int64{2}, false)
	softExo := exoDist.Neg().Softmax(1).Reshape(nc, d.E, d.h, d.w)
	softEgo := egoDist.Neg().Softmax(1).Reshape(nc, d.h, d.w)
	return clustered{partEgo: partEgo, softEgo: softEgo, partExo: partExo, softExo: softExo, p: p, ok: ok}
}

// emptyClustersBatch counts, per sample, the centroids (nc, K, C) to which none of its valid
// points (nc, N, C) is closest, with the assignment rule of [KMeans]: (nc) int64.
func emptyClustersBatch(x, valid, c *torch.Tensor) *torch.Tensor {
	sim := x.MulScalar(2).Bmm(c.Transpose(1, 2)).Sub(x.PowScalar(2).SumDims([]int64{2}, false).Unsqueeze(2)).
		Sub(c.PowScalar(2).SumDims([]int64{2}, false).Unsqueeze(1))
	_, closest := sim.MaxDim(-1, false) // (nc, N)
	k := c.Size(1)
	clusters := torch.Arange(0, float64(k), 1, torch.Int64, x.Device()).Reshape(1, k, 1)
	hit := closest.Unsqueeze(1).Eq(clusters).ToDType(torch.Float32).Mul(valid.Unsqueeze(1)).SumDims([]int64{2}, false)
	return hit.EqScalar(0).ToDType(torch.Int64).SumDims([]int64{1}, false)
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
