package discovery

import (
	"fmt"
	"math"
	"slices"
	"testing"

	"github.com/affgd/affgd/torch"
)

// This file keeps the sample-by-sample part discovery of earlier versions (one K-means, one
// reliability and one choice per sample, reading each decision from the device), as the
// reference the batched [discover] must equal bit for bit on the CPU.

// sampleMaps are one sample's part maps and soft maps, (h, w) and (E, h, w).
type sampleMaps struct{ partEgo, softEgo, partExo, softExo *torch.Tensor }

func discoverLoop(in Inputs, opt Options, inits map[int][]int64, g *torch.Generator) *Result {
	d := validate(in, opt, inits)
	dev := in.DEgo.Device()
	K := int64(opt.Clusters)

	v := newViews(d, in, opt)
	exoFlat, exoTok, egoTok, egoWeighted := v.exoFlat, v.exoTok, v.egoTok, v.egoWeighted
	fallbackExo, selected, L := v.fallbackExo, v.selected, v.L
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

// TestBatchedEqualsPerSample: the batched discovery gives every output of the per-sample loop
// exactly (bitwise on the CPU), over the released and per-image indexing, the three prototype
// modes, several K, duplicated given initial centroids (empty clusters), counted empty clusters,
// and samples with too few candidates. (Bitwise needs every product to have 400 multiply-adds or
// more: below that libtorch's CPU bmm sums in a plain loop, not in the BLAS kernel mm calls; with
// the DINO descriptors' 384 channels only K = 1 with a single candidate is below.) With K = 1
// the exo part maps differ by an ulp: libtorch folds the per-sample (1, C)·(E, C, hw) product into
// another kernel than the batched one, so that case is checked to 1e-6 relative.
func TestBatchedEqualsPerSample(t *testing.T) {
	if !torch.CPU.IsCPU() {
		t.Skip()
	}
	cases := []struct {
		name          string
		B, E, C, h, w int64
		opt           Options
		inits         map[int][]int64
	}{
		{"released", 8, 3, 384, 14, 14, Options{Gamma1: 0.6, Alpha: 0.35, Clusters: 3}, nil},
		{"per-image", 8, 3, 384, 14, 14, Options{Gamma1: 0.6, Alpha: 0.35, Clusters: 3, PerImageExo: true}, nil},
		{"part-level k5", 6, 2, 64, 7, 9, Options{Gamma1: 0.5, Alpha: 0.6, Clusters: 5, Prototypes: PartLevel, CountEmpty: true}, nil},
		{"object-level", 4, 3, 32, 6, 6, Options{Gamma1: 0.6, Alpha: 0.6, Clusters: 3, Prototypes: ObjectLevel}, nil},
		{"k1 low alpha", 5, 2, 384, 5, 5, Options{Gamma1: 0.3, Alpha: 0.2, Clusters: 1, CountEmpty: true}, nil},
		{"given inits, few candidates", 4, 2, 24, 6, 6, Options{Gamma1: 0.9, Alpha: 0.5, Clusters: 3, CountEmpty: true, PerImageExo: true},
			map[int][]int64{1: {0, 0, 1}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := torch.WithScope(func(*torch.Scope) {
				g0, _ := torch.NewGenerator(7, torch.CPU)
				hw := c.h * c.w
				sam := torch.Rand([]int64{c.B, hw}, g0).GtScalar(0.6).ToDType(torch.Float32)
				in := Inputs{
					DEgo: torch.Randn([]int64{c.B, c.C, c.h, c.w}, g0), DExo: torch.Randn([]int64{c.B * c.E, c.C, c.h, c.w}, g0),
					SEgo: torch.Rand([]int64{c.B, c.h, c.w}, g0), SExo: torch.Rand([]int64{c.B * c.E, c.h, c.w}, g0),
					MExo: torch.Rand([]int64{c.B * c.E, c.h, c.w}, g0).PowScalar(3), SamHard: sam, E: c.E,
				}
				if c.name == "given inits, few candidates" { // sample 2 flat: no candidate
					in.MExo.Narrow(0, 2*c.E, c.E).Fill_(0.5)
				}
				run := func(f func(Inputs, Options, map[int][]int64, *torch.Generator) *Result) *Result {
					g, _ := torch.NewGenerator(3, torch.CPU)
					var r *Result
					torch.NoGrad(func() { r = f(in, c.opt, c.inits, g) })
					return r
				}
				want, got := run(discoverLoop), run(discover)
				if !slices.Equal(got.NumCandidates, want.NumCandidates) || !slices.Equal(got.EmptyClusters, want.EmptyClusters) {
					t.Errorf("candidates %v empty %v, want %v %v", got.NumCandidates, got.EmptyClusters, want.NumCandidates, want.EmptyClusters)
				}
				for _, x := range []struct {
					name      string
					got, want *torch.Tensor
				}{{"Reliable", got.Reliable, want.Reliable}, {"PScore", got.PScore, want.PScore}, {"WEgo", got.WEgo, want.WEgo}, {"WExo", got.WExo, want.WExo}} {
					if !slices.Equal(x.got.Shape(), x.want.Shape()) {
						t.Fatalf("%s shape %v, want %v", x.name, x.got.Shape(), x.want.Shape())
					}
					a, b := x.got.Contiguous().Float32s(), x.want.Contiguous().Float32s()
					for i := range a {
						tol := 0.0
						if c.opt.Clusters == 1 {
							tol = 1e-6 * math.Abs(float64(b[i]))
						}
						if math.Abs(float64(a[i])-float64(b[i])) > tol && !(math.IsNaN(float64(a[i])) && math.IsNaN(float64(b[i]))) {
							t.Errorf("%s[%d] = %v, want %v (bitwise)", x.name, i, a[i], b[i])
							break
						}
					}
				}
				t.Logf("candidates %v, reliable %v", want.NumCandidates, fmt.Sprint(want.Reliable.Float32s()))
			})
			if err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestDiscoverReads: part discovery reads from the device once for the candidate counts and once
// per K-means convergence check (at most 4), whatever the batch size.
func TestDiscoverReads(t *testing.T) {
	for _, B := range []int64{1, 4, 16} {
		err := torch.WithScope(func(*torch.Scope) {
			g0, _ := torch.NewGenerator(5, torch.CPU)
			const E, C, h, w = 3, 64, 8, 8
			in := Inputs{
				DEgo: torch.Randn([]int64{B, C, h, w}, g0), DExo: torch.Randn([]int64{B * E, C, h, w}, g0),
				SEgo: torch.Rand([]int64{B, h, w}, g0), SExo: torch.Rand([]int64{B * E, h, w}, g0),
				MExo: torch.Rand([]int64{B * E, h, w}, g0), SamHard: torch.Rand([]int64{B, h * w}, g0).GtScalar(0.5).ToDType(torch.Float32), E: E,
			}
			g, _ := torch.NewGenerator(1, torch.CPU)
			before := torch.ReadCounters()
			if _, err := Discover(in, Options{Gamma1: 0.5, Alpha: 0.3, Clusters: 3, PerImageExo: true}, nil, g); err != nil {
				t.Fatal(err)
			}
			if reads := torch.ReadCounters().Sub(before).Reads; reads < 2 || reads > 5 {
				t.Errorf("B=%d: %d device→host reads, want 1 + 1..4 K-means checks", B, reads)
			}
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}
