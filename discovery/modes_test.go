package discovery_test

import (
	"math"
	"slices"
	"testing"

	"github.com/affgd/affgd/discovery"
	"github.com/affgd/affgd/torch"
)

// inputsOf returns a reference case's inputs.
func inputsOf(t *testing.T, ref *refFile, man *manifest, name string) discovery.Inputs {
	t.Helper()
	rec := man.Discover[name]
	return discovery.Inputs{
		DEgo: ref.get(t, name+".d_ego"), DExo: ref.get(t, name+".d_exo"),
		SEgo: ref.get(t, name+".s_ego"), SExo: ref.get(t, name+".s_exo"),
		MExo: ref.get(t, name+".m_exo"), SamHard: ref.get(t, name+".sam_hard"), E: rec.E,
	}
}

// discoverSeeded runs Discover with the case's initial centroids drawn from a fresh generator
// of seed 0, so that two runs draw the same centroids for the samples they cluster.
func discoverSeeded(t *testing.T, in discovery.Inputs, opt discovery.Options) *discovery.Result {
	t.Helper()
	g, err := torch.NewGenerator(0, in.DEgo.Device())
	if err != nil {
		t.Fatal(err)
	}
	r, err := discovery.Discover(in, opt, nil, g)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// sample returns row b of x as float32 values on the CPU.
func sample(t *testing.T, x *torch.Tensor, b int64) []float32 {
	return tensor(t, func() *torch.Tensor { return x.Select(0, b).To(torch.CPU) }).Float32s()
}

func sameFloats(a, b []float32) bool {
	return slices.EqualFunc(a, b, func(x, y float32) bool { return x == y || (x != x && y != y) })
}

// prototypes: object gives every sample the object-level maps without clustering; part ignores
// α, so exactly the samples with at least Clusters candidates are part level, with the maps and
// scores of their most reliable cluster (the selective run's, same draws).
func TestPrototypesModes(t *testing.T) {
	ref, man := readRef(t, "discover.pt"), readManifest(t)
	// grid14_c384 is PPPPPFLP released: one sample with too few candidates, one unreliable.
	const name = "grid14_c384"
	in := inputsOf(t, ref, man, name)
	if !in.DEgo.Device().IsCPU() {
		t.Skip("the seeded draws are compared on the CPU generator")
	}
	sel := discoverSeeded(t, in, discovery.DefaultOptions())
	if got := outcome(t, sel, 3); got != "PPPPPFLP" {
		t.Fatalf("selective outcome %s, want PPPPPFLP", got)
	}
	obj := discoverSeeded(t, in, discovery.Options{Gamma1: 0.6, Alpha: 0.6, Clusters: 3, Prototypes: discovery.ObjectLevel})
	part := discoverSeeded(t, in, discovery.Options{Gamma1: 0.6, Alpha: 0.6, Clusters: 3, Prototypes: discovery.PartLevel})
	if got := outcome(t, part, 3); got != "PPPPPFPP" {
		t.Errorf("part outcome %s, want PPPPPFPP (only the sample with too few candidates falls back)", got)
	}
	if !slices.Equal(obj.NumCandidates, sel.NumCandidates) || !slices.Equal(part.NumCandidates, sel.NumCandidates) {
		t.Errorf("candidates differ between modes: %v %v %v", sel.NumCandidates, obj.NumCandidates, part.NumCandidates)
	}
	B, E := int64(len(sel.NumCandidates)), in.E
	rel := tensor(t, func() *torch.Tensor { return sel.Reliable.To(torch.CPU) }).Float32s()
	for b := range B {
		// object: reliable 0, no scores, W_ego = S_ego, and the exo maps of an object-level
		// sample of the selective run.
		if v := sample(t, obj.Reliable.Unsqueeze(1), b)[0]; v != 0 {
			t.Errorf("object: sample %d reliable %v", b, v)
		}
		for _, p := range sample(t, obj.PScore, b) {
			if !math.IsNaN(float64(p)) {
				t.Errorf("object: sample %d clustered (p %v)", b, p)
				break
			}
		}
		if !sameFloats(sample(t, obj.WEgo, b), sample(t, in.SEgo, b)) {
			t.Errorf("object: sample %d W_ego is not its S_ego", b)
		}
		exo := func(r *discovery.Result) []float32 {
			return tensor(t, func() *torch.Tensor { return r.WExo.Narrow(0, b*E, E).To(torch.CPU) }).Float32s()
		}
		if rel[b] == 0 && !sameFloats(exo(obj), exo(sel)) {
			t.Errorf("object: sample %d W_exo differs from the selective run's object-level maps", b)
		}
		if rel[b] == 1 && sameFloats(exo(obj), exo(sel)) {
			t.Errorf("object: sample %d W_exo equals its part maps", b)
		}
		// part: the scores are the selective run's; part-level samples of both runs agree.
		if !sameFloats(sample(t, part.PScore, b), sample(t, sel.PScore, b)) {
			t.Errorf("part: sample %d scores %v, selective %v", b, sample(t, part.PScore, b), sample(t, sel.PScore, b))
		}
		if rel[b] == 1 && (!sameFloats(sample(t, part.WEgo, b), sample(t, sel.WEgo, b)) || !sameFloats(exo(part), exo(sel))) {
			t.Errorf("part: sample %d maps differ from the selective run's part maps", b)
		}
	}
	// The unreliable sample (6) takes its best cluster under part: maps no longer the object's.
	if sameFloats(sample(t, part.WEgo, 6), sample(t, obj.WEgo, 6)) {
		t.Error("part: the unreliable sample kept the object-level W_ego")
	}
}

// kmeans_k sets the number of clusters: PScore has K columns, a sample is clustered only with at
// least K candidates, the clustering (and so the scores) changes with K, and CountEmpty counts
// the empty clusters without changing any result.
func TestClustersK(t *testing.T) {
	ref, man := readRef(t, "discover.pt"), readManifest(t)
	const name = "grid14_c384"
	in := inputsOf(t, ref, man, name)
	if !in.DEgo.Device().IsCPU() {
		t.Skip("the seeded draws are compared on the CPU generator")
	}
	var prev []float32
	for _, k := range []int{2, 3, 4, 5} {
		opt := discovery.DefaultOptions()
		opt.Clusters = k
		r := discoverSeeded(t, in, opt)
		if s := r.PScore.Shape(); s[1] != int64(k) {
			t.Errorf("K=%d: PScore %v", k, s)
		}
		for b, n := range r.NumCandidates {
			nan := math.IsNaN(float64(sample(t, r.PScore, int64(b))[0]))
			if nan != (n < k) {
				t.Errorf("K=%d: sample %d with %d candidates clustered = %v", k, b, n, !nan)
			}
		}
		// The best cluster's maps (its centroid) move with K (the best p often saturates at 1).
		w := tensor(t, func() *torch.Tensor { return r.WEgo.To(torch.CPU) }).Float32s()
		if prev != nil && sameFloats(w, prev) {
			t.Errorf("K=%d: W_ego equals K=%d's: the clustering did not change", k, k-1)
		}
		prev = w

		opt.CountEmpty = true
		c := discoverSeeded(t, in, opt)
		if len(c.EmptyClusters) != len(r.NumCandidates) {
			t.Fatalf("K=%d: EmptyClusters %v", k, c.EmptyClusters)
		}
		for b, e := range c.EmptyClusters {
			if (r.NumCandidates[b] < k) != (e == -1) || e > k {
				t.Errorf("K=%d: sample %d (%d candidates): %d empty clusters", k, b, r.NumCandidates[b], e)
			}
		}
		for _, x := range [][2]*torch.Tensor{{r.WEgo, c.WEgo}, {r.WExo, c.WExo}, {r.PScore, c.PScore}, {r.Reliable, c.Reliable}} {
			equal(t, "CountEmpty result", x[1], x[0])
		}
	}
	// A duplicated initial centroid leaves a cluster empty (the package's zero centroid).
	rec := man.Discover["repeated_exo"]
	in = inputsOf(t, ref, man, "repeated_exo")
	inits := map[int][]int64{}
	for k, v := range rec.Inits["quirk"] {
		b := int(k[0] - '0')
		inits[b] = v
	}
	opt := discovery.DefaultOptions()
	opt.CountEmpty = true
	r, err := discovery.Discover(in, opt, inits, nil)
	if err != nil {
		t.Fatal(err)
	}
	if slices.Max(r.EmptyClusters) < 1 {
		t.Errorf("duplicated initial centroid: empty clusters %v, want one ≥ 1", r.EmptyClusters)
	}
}
