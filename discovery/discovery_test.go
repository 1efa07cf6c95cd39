package discovery_test

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"testing"

	"github.com/affgd/affgd/discovery"
	"github.com/affgd/affgd/internal/testdev"
	"github.com/affgd/affgd/internal/testref"
	"github.com/affgd/affgd/torch"
	"github.com/affgd/affgd/torch/nn"
)

// The reference data is written by tests/discovery/gen_discovery.py: our own Python reference of
// these functions, written from METHOD.md with loops over positions, exo images and samples, and
// the fast_pytorch_kmeans package itself for K-means.
//
// rtol is the tolerance of float maps and centroids: max |got − want| ≤ rtol · max |want| per
// tensor. Go runs ATen kernels on the same float32 values; what differs from the reference is
// only the grouping of some reductions (the reference averages each 3×3 window and takes each
// token's distance separately where Go pools and reduces in one call; Go multiplies the exo
// descriptors of all E images by the centroids in one batched matmul), so differences are a few
// float32 ulps: the tests log them (on the CPU: ≤ 2.7e-7 relative, K-means centroids and most
// maps bitwise). 1e-5 leaves room for another thread count, BLAS or a GPU.
//
// Reliable, PScore and NumCandidates are compared exactly: they follow from discrete decisions
// (threshold, binarisation, α test, argmax) that the generator keeps at least 1e-5 away from
// their thresholds, and PScore is then a ratio of exact integer counts, so it is bitwise equal.
const rtol = 1e-5

func dataDir(t testing.TB) string { return testref.Dir(t, "discovery") }

// device is the test device ($AFFGD_TEST_DEVICE, internal/testdev: TF32 off on CUDA; a device
// that cannot be used fails the test with one line).
func device(t testing.TB) torch.Device { return testdev.Device(t) }

// refFile holds one reference file's tensors.
type refFile struct {
	f   *nn.File
	dev torch.Device
}

func readRef(t testing.TB, name string) *refFile {
	t.Helper()
	f, err := nn.ReadFile(filepath.Join(dataDir(t), name))
	if err != nil {
		t.Fatal(err)
	}
	return &refFile{f: f, dev: device(t)}
}

// get returns tensor key of the file on the test device.
func (r *refFile) get(t testing.TB, key string) *torch.Tensor {
	t.Helper()
	x, ok := r.f.Tensors[key]
	if !ok {
		t.Fatalf("%s: no tensor %q", r.f.Path, key)
	}
	return tensor(t, func() *torch.Tensor { return x.To(r.dev) })
}

// manifest is cases.json.
type manifest struct {
	Affinity map[string]struct{ E, H, W int64 } `json:"affinity"`
	KMeans   map[string]struct {
		MaxIter int     `json:"max_iter"`
		Tol     float64 `json:"tol"`
	} `json:"kmeans"`
	Discover map[string]struct {
		E       int64                         `json:"E"`
		B       int                           `json:"B"`
		Seed    *uint64                       `json:"seed"`
		Inits   map[string]map[string][]int64 `json:"inits"`
		Outcome map[string]string             `json:"outcome"`
	} `json:"discover"`
}

func readManifest(t testing.TB) *manifest {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dataDir(t), "cases.json"))
	if err != nil {
		t.Fatal(err)
	}
	var m manifest
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return &m
}

// tensor runs f, failing the test on a tensor error.
func tensor(t testing.TB, f func() *torch.Tensor) *torch.Tensor {
	t.Helper()
	var out *torch.Tensor
	if err := torch.Try(func() { out = f() }); err != nil {
		t.Fatal(err)
	}
	return out
}

// maxDiff returns max |a − b| and max |b|, NaN-aware (NaN against NaN counts as equal, NaN
// against a number as infinitely different), or an error for shapes that differ.
func maxDiff(a, b *torch.Tensor) (diff, scale float64, err error) {
	err = torch.Try(func() {
		sa, sb := fmt.Sprint(a.Shape()), fmt.Sprint(b.Shape())
		if sa != sb {
			torch.Fail("compare", "shape %s, want %s", sa, sb)
		}
		a, b = a.To(torch.CPU).ToDType(torch.Float64), b.To(torch.CPU).ToDType(torch.Float64)
		an, bn := a.IsNaN(), b.IsNaN()
		if an.Ne(bn).Any().Item() != 0 {
			diff = math.Inf(1)
			return
		}
		a, b = a.MaskedFill(an, 0), b.MaskedFill(bn, 0)
		diff = a.Sub(b).Abs().Max().Item()
		scale = b.Abs().Max().Item()
	})
	return diff, scale, err
}

func closeTo(t *testing.T, what string, got, want *torch.Tensor) {
	t.Helper()
	d, s, err := maxDiff(got, want)
	switch {
	case err != nil:
		t.Errorf("%s: %v", what, err)
	case !(d <= rtol*s):
		t.Errorf("%s: max |diff| %.3g > %g × max |want| %.3g", what, d, rtol, s)
	default:
		t.Logf("%s: max |diff| %.3g (%.2g relative)", what, d, d/math.Max(s, math.SmallestNonzeroFloat64))
	}
}

func equal(t *testing.T, what string, got, want *torch.Tensor) {
	t.Helper()
	d, _, err := maxDiff(got, want)
	if err != nil {
		t.Errorf("%s: %v", what, err)
	} else if d != 0 {
		t.Errorf("%s: got %v, want %v", what, got.To(torch.CPU), want.To(torch.CPU))
	}
}

func TestLocalMean(t *testing.T) {
	ref := readRef(t, "localmean.pt")
	for _, name := range []string{
		"1x1",           // a lone cell is its own mean
		"2x3",           // every cell on the border: windows of 4 and 6 cells
		"3x1",           // one column: windows of 2 and 3 cells
		"14x14",         // the patch grid: 9-cell interior
		"batch_4x14x14", // one leading dimension, as the (B, h, w) CAM at test time
		"lead_2x3x5x4",  // two leading dimensions, as the (B, E, h, w) exo maps
	} {
		t.Run(name, func(t *testing.T) {
			got := tensor(t, func() *torch.Tensor { return discovery.LocalMean(ref.get(t, name+".x")) })
			closeTo(t, "local mean", got, ref.get(t, name+".out"))
		})
	}
}

func TestAffinity(t *testing.T) {
	ref := readRef(t, "affinity.pt")
	man := readManifest(t)
	for _, name := range []string{
		"b2_e3_4x4_d8",     // small square grid
		"b1_e2_2x3_d16",    // one sample, two exo images, a grid that is not square
		"b3_e3_14x14_d512", // the real sizes: 14×14 patches, CLIP width 512
	} {
		t.Run(name, func(t *testing.T) {
			c, ok := man.Affinity[name]
			if !ok {
				t.Fatalf("case %s missing from cases.json", name)
			}
			var m *discovery.AffinityMaps
			if err := torch.Try(func() {
				m = discovery.Affinity(ref.get(t, name+".f_ego"), ref.get(t, name+".f_exo"),
					ref.get(t, name+".t_aff"), ref.get(t, name+".t_exo"), c.E, c.H, c.W)
			}); err != nil {
				t.Fatal(err)
			}
			closeTo(t, "SEgo", m.SEgo, ref.get(t, name+".s_ego"))
			closeTo(t, "SExo", m.SExo, ref.get(t, name+".s_exo"))
			closeTo(t, "ExoAff", m.ExoAff, ref.get(t, name+".exo_aff"))
		})
	}
}

func TestKMeans(t *testing.T) {
	ref := readRef(t, "kmeans.pt")
	man := readManifest(t)
	for _, name := range []string{
		"random_small",     // 20 points in 4-d
		"random_c384",      // 42 points in DINO's 384-d, the most the §9.1 indexing gives at 14×14
		"clustered",        // three well separated groups
		"empty_cluster",    // duplicated initial index: cluster 1 never gets a point → zero centroid
		"ties",             // points equidistant from two centroids go to the lower index
		"identical_points", // all points equal: two clusters empty, then converged
		"one_iteration",    // stops at maxIter = 1 without converging
		"loose_tol",        // stops as soon as error ≤ 10
		"tol_equals_error", // error = tol exactly after one iteration: stops (≤, not <)
		"zero_iterations",  // maxIter = 0: the initial points
		"four_clusters",    // k = len(init) = 4
		"three_points",     // the fewest candidates that are clustered
	} {
		t.Run(name, func(t *testing.T) {
			c, ok := man.KMeans[name]
			if !ok {
				t.Fatalf("case %s missing from cases.json", name)
			}
			init := ref.f.Tensors[name+".init"].Int64s()
			got := tensor(t, func() *torch.Tensor {
				return discovery.KMeans(ref.get(t, name+".points"), init, c.MaxIter, c.Tol)
			})
			closeTo(t, "centroids", got, ref.get(t, name+".centroids"))
		})
	}
}

// outcome is the per-sample outcome string of a result, as the generator writes it: P part level,
// F too few candidates, L low reliability.
func outcome(t *testing.T, r *discovery.Result, clusters int) string {
	t.Helper()
	rel := tensor(t, func() *torch.Tensor { return r.Reliable.To(torch.CPU) }).Float32s()
	s := make([]byte, len(rel))
	for b, v := range rel {
		switch {
		case v == 1:
			s[b] = 'P'
		case r.NumCandidates[b] < clusters:
			s[b] = 'F'
		default:
			s[b] = 'L'
		}
	}
	return string(s)
}

func TestDiscover(t *testing.T) {
	ref := readRef(t, "discover.pt")
	man := readManifest(t)
	dev := device(t)
	// want: the per-sample outcome each case exists to produce, under the released indexing
	// (§9.1) and per image; the test checks it so that a regenerated reference keeps testing
	// what the case is named for.
	cases := []struct {
		name, what      string
		quirk, perImage string
	}{
		{"part_all", "every sample part level, B=4, 6×6, C=32", "PPPP", "PPPP"},
		{"fallback_few", "too few candidates (flat rows; an eps-decided tiny-range row; a cell exactly at γ1), S_exo ≠ M_exo", "FFP", "FFP"},
		{"low_reliability", "saliency unrelated to the parts: every p < α, scores kept", "LLL", "LLL"},
		{"single_sample", "B = 1", "P", "P"},
		{"repeated_exo", "the E exo images of a sample identical; duplicated initial centroid (empty cluster)", "LP", "PP"},
		{"epoch1_maps", "M_exo = max(S_exo,0)·max(G,0), many zero cells", "PPP", "PPP"},
		{"tiny_grid", "3×3 grid, C=8, unstructured random inputs", "PL", "PP"},
		{"grid_4x5", "grid not square: §9.1 rows have w = 5 cells", "LP", "LP"},
		{"two_exo", "E = 2", "FPP", "PPP"},
		{"random_draw", "initial centroids drawn from a seeded generator, as the package draws them", "PPPP", "PPPP"},
		{"grid14_c384", "real sizes B=8, 14×14, C=384, drawn inits; one flat-row and one unreliable sample", "PPPPPFLP", "PPPPPPLP"},
	}
	for _, c := range cases {
		rec, ok := man.Discover[c.name]
		if !ok {
			t.Errorf("case %s missing from cases.json", c.name)
			continue
		}
		in := discovery.Inputs{
			DEgo: ref.get(t, c.name+".d_ego"), DExo: ref.get(t, c.name+".d_exo"),
			SEgo: ref.get(t, c.name+".s_ego"), SExo: ref.get(t, c.name+".s_exo"),
			MExo: ref.get(t, c.name+".m_exo"), SamHard: ref.get(t, c.name+".sam_hard"),
			E: rec.E,
		}
		for _, mode := range []struct {
			key      string
			perImage bool
			want     string
		}{{"quirk", false, c.quirk}, {"perimage", true, c.perImage}} {
			t.Run(c.name+"/"+mode.key, func(t *testing.T) {
				if rec.Outcome[mode.key] != mode.want {
					t.Errorf("reference outcome %s, this case wants %s (%s): regenerate or update the table",
						rec.Outcome[mode.key], mode.want, c.what)
				}
				inits := map[int][]int64{}
				for k, v := range rec.Inits[mode.key] {
					b, err := strconv.Atoi(k)
					if err != nil {
						t.Fatal(err)
					}
					inits[b] = v
				}
				var g *torch.Generator
				if rec.Seed != nil {
					if !dev.IsCPU() {
						// The reference draws from PyTorch's CPU generator; a CUDA generator
						// produces another stream.
						t.Skipf("initial centroids drawn by the CPU generator: not reproducible on %v", dev)
					}
					var err error
					if g, err = torch.NewGenerator(*rec.Seed, dev); err != nil {
						t.Fatal(err)
					}
				}
				opt := discovery.DefaultOptions()
				opt.PerImageExo = mode.perImage
				r, err := discovery.Discover(in, opt, inits, g)
				if err != nil {
					t.Fatal(err)
				}
				p := c.name + "." + mode.key + "."
				if got := outcome(t, r, opt.Clusters); got != mode.want {
					t.Errorf("outcome %s, want %s (%s)", got, mode.want, c.what)
				}
				ncand := ref.f.Tensors[p+"ncand"].Int64s()
				for b, n := range r.NumCandidates {
					if int64(n) != ncand[b] {
						t.Errorf("NumCandidates %v, want %v", r.NumCandidates, ncand)
						break
					}
				}
				equal(t, "Reliable", r.Reliable, ref.get(t, p+"reliable"))
				equal(t, "PScore", r.PScore, ref.get(t, p+"pscore"))
				closeTo(t, "WEgo", r.WEgo, ref.get(t, p+"w_ego"))
				closeTo(t, "WExo", r.WExo, ref.get(t, p+"w_exo"))
				for _, x := range []*torch.Tensor{r.WEgo, r.WExo, r.PScore, r.Reliable} {
					if x.RequiresGrad() {
						t.Error("a result requires grad")
					}
				}
			})
		}
	}
}

// TestDiscoverDetachesMExo: M_exo at epoch ≥ 1 carries autograd history from the CAM; discovery
// reads it without recording a graph, and its results are the same as from the detached map.
func TestDiscoverDetachesMExo(t *testing.T) {
	ref := readRef(t, "discover.pt")
	man := readManifest(t)
	const name = "epoch1_maps"
	rec := man.Discover[name]
	var in discovery.Inputs
	var leaf *torch.Tensor
	var r *discovery.Result
	if err := torch.Try(func() {
		leaf = torch.Ones([]int64{1}, torch.Float32, device(t)).SetRequiresGrad(true)
		in = discovery.Inputs{
			DEgo: ref.get(t, name+".d_ego"), DExo: ref.get(t, name+".d_exo"),
			SEgo: ref.get(t, name+".s_ego"), SExo: ref.get(t, name+".s_exo"),
			MExo: ref.get(t, name+".m_exo").Mul(leaf), SamHard: ref.get(t, name+".sam_hard"), E: rec.E,
		}
	}); err != nil {
		t.Fatal(err)
	}
	if !in.MExo.RequiresGrad() {
		t.Fatal("test setup: MExo has no history")
	}
	inits := map[int][]int64{}
	for k, v := range rec.Inits["quirk"] {
		b, _ := strconv.Atoi(k)
		inits[b] = v
	}
	r, err := discovery.Discover(in, discovery.DefaultOptions(), inits, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range []*torch.Tensor{r.WEgo, r.WExo} {
		if x.RequiresGrad() {
			t.Error("a W map requires grad")
		}
	}
	closeTo(t, "WExo", r.WExo, ref.get(t, name+".quirk.w_exo"))
}

// TestDiscoverFreesTemporaries: everything Discover creates except its results belongs to no
// scope of the caller, so closing the caller's scope returns the live-tensor count to where it was.
func TestDiscoverFreesTemporaries(t *testing.T) {
	ref := readRef(t, "discover.pt")
	man := readManifest(t)
	const name = "grid14_c384"
	rec := man.Discover[name]
	in := discovery.Inputs{
		DEgo: ref.get(t, name+".d_ego"), DExo: ref.get(t, name+".d_exo"),
		SEgo: ref.get(t, name+".s_ego"), SExo: ref.get(t, name+".s_exo"),
		MExo: ref.get(t, name+".m_exo"), SamHard: ref.get(t, name+".sam_hard"), E: rec.E,
	}
	g, err := torch.NewGenerator(0, device(t))
	if err != nil {
		t.Fatal(err)
	}
	before := testref.Settle(torch.LiveTensors)
	s := torch.NewScope()
	r, err := discovery.Discover(in, discovery.DefaultOptions(), nil, g)
	if err != nil {
		s.Close()
		t.Fatal(err)
	}
	during := testref.Settle(torch.LiveTensors)
	s.Close()
	after := testref.Settle(torch.LiveTensors)
	t.Logf("live tensors: %d before, %d with the result, %d after closing the scope", before, during, after)
	if during-before > 4 {
		t.Errorf("%d tensors live after Discover, want its 4 results", during-before)
	}
	if after != before {
		t.Errorf("%d tensors live after the scope closed, want %d", after, before)
	}
	if !r.WEgo.Released() {
		t.Error("result not released with the caller's scope")
	}
	runtime.KeepAlive(in) // the inputs count in "before": they must not be collected meanwhile
}

func TestErrors(t *testing.T) {
	dev := device(t)
	ones := func(shape ...int64) *torch.Tensor { return torch.Ones(shape, torch.Float32, dev) }
	// A valid batch: B=2, E=3, C=4, 4×5 grid.
	valid := func() discovery.Inputs {
		return discovery.Inputs{
			DEgo: ones(2, 4, 4, 5), DExo: ones(6, 4, 4, 5), SEgo: ones(2, 4, 5), SExo: ones(6, 4, 5),
			MExo: ones(6, 4, 5), SamHard: ones(2, 20), E: 3,
		}
	}
	discoverCases := []struct {
		name  string
		edit  func(in *discovery.Inputs, opt *discovery.Options, inits map[int][]int64)
		valid bool
	}{
		{"valid", func(*discovery.Inputs, *discovery.Options, map[int][]int64) {}, true},
		{"nil DExo", func(in *discovery.Inputs, _ *discovery.Options, _ map[int][]int64) { in.DExo = nil }, false},
		{"float64 SEgo", func(in *discovery.Inputs, _ *discovery.Options, _ map[int][]int64) {
			in.SEgo = torch.Ones([]int64{2, 4, 5}, torch.Float64, dev)
		}, false},
		{"DEgo 3-d", func(in *discovery.Inputs, _ *discovery.Options, _ map[int][]int64) { in.DEgo = ones(2, 4, 20) }, false},
		{"DExo not B·E", func(in *discovery.Inputs, _ *discovery.Options, _ map[int][]int64) { in.DExo = ones(5, 4, 4, 5) }, false},
		{"SExo grid", func(in *discovery.Inputs, _ *discovery.Options, _ map[int][]int64) { in.SExo = ones(6, 5, 4) }, false},
		{"MExo count", func(in *discovery.Inputs, _ *discovery.Options, _ map[int][]int64) { in.MExo = ones(2, 4, 5) }, false},
		{"SamHard not flat", func(in *discovery.Inputs, _ *discovery.Options, _ map[int][]int64) { in.SamHard = ones(2, 4, 5) }, false},
		{"E zero", func(in *discovery.Inputs, _ *discovery.Options, _ map[int][]int64) { in.E = 0 }, false},
		{"E > h under §9.1", func(in *discovery.Inputs, _ *discovery.Options, _ map[int][]int64) {
			in.E = 5
			in.DExo, in.SExo, in.MExo = ones(10, 4, 4, 5), ones(10, 4, 5), ones(10, 4, 5)
		}, false},
		{"E > h per image", func(in *discovery.Inputs, opt *discovery.Options, _ map[int][]int64) {
			in.E = 5
			in.DExo, in.SExo, in.MExo = ones(10, 4, 4, 5), ones(10, 4, 5), ones(10, 4, 5)
			opt.PerImageExo = true
		}, true},
		{"zero clusters", func(_ *discovery.Inputs, opt *discovery.Options, _ map[int][]int64) { opt.Clusters = 0 }, false},
		{"inits sample out of range", func(_ *discovery.Inputs, _ *discovery.Options, inits map[int][]int64) {
			inits[2] = []int64{0, 1, 2}
		}, false},
		{"inits wrong length", func(_ *discovery.Inputs, _ *discovery.Options, inits map[int][]int64) {
			inits[0] = []int64{0, 1}
		}, false},
	}
	for _, c := range discoverCases {
		t.Run("Discover/"+c.name, func(t *testing.T) {
			in, opt, inits := valid(), discovery.DefaultOptions(), map[int][]int64{}
			var err error
			if err = torch.Try(func() { c.edit(&in, &opt, inits) }); err != nil {
				t.Fatal(err)
			}
			_, err = discovery.Discover(in, opt, inits, nil)
			if c.valid && err != nil {
				t.Errorf("unexpected error: %v", err)
			}
			if !c.valid {
				if err == nil {
					t.Error("no error")
				} else {
					t.Log(err)
				}
			}
		})
	}

	// An initial index beyond the candidate list: sample 0 of this batch has 2 exo images with
	// a single peak each in row 0 … so use a map with one hot cell per row: 3 candidates.
	t.Run("Discover/inits index out of range", func(t *testing.T) {
		in := valid()
		if err := torch.Try(func() {
			m := torch.Zeros([]int64{6, 4, 5}, torch.Float32, dev)
			m.Narrow(2, 0, 1).Fill_(1) // column 0 of every row: one candidate per row
			in.MExo = m
		}); err != nil {
			t.Fatal(err)
		}
		_, err := discovery.Discover(in, discovery.DefaultOptions(), map[int][]int64{0: {0, 1, 3}}, nil)
		if err == nil {
			t.Error("no error for index 3 of 3 candidates")
		} else {
			t.Log(err)
		}
	})

	others := []struct {
		name string
		fn   func()
	}{
		{"LocalMean 1-d", func() { discovery.LocalMean(ones(5)) }},
		{"Affinity hw ≠ h·w", func() { discovery.Affinity(ones(2, 16, 8), ones(6, 16, 8), ones(2, 8), ones(2, 8), 3, 4, 5) }},
		{"Affinity exo count", func() { discovery.Affinity(ones(2, 16, 8), ones(4, 16, 8), ones(2, 8), ones(2, 8), 3, 4, 4) }},
		{"Affinity text width", func() { discovery.Affinity(ones(2, 16, 8), ones(6, 16, 8), ones(2, 7), ones(2, 8), 3, 4, 4) }},
		{"Affinity nil", func() { discovery.Affinity(nil, ones(6, 16, 8), ones(2, 8), ones(2, 8), 3, 4, 4) }},
		{"KMeans 1-d points", func() { discovery.KMeans(ones(5), []int64{0, 1, 2}, 10, 1e-4) }},
		{"KMeans no init", func() { discovery.KMeans(ones(5, 2), nil, 10, 1e-4) }},
		{"KMeans init out of range", func() { discovery.KMeans(ones(5, 2), []int64{0, 1, 5}, 10, 1e-4) }},
		{"KMeans negative maxIter", func() { discovery.KMeans(ones(5, 2), []int64{0, 1, 2}, -1, 1e-4) }},
	}
	for _, c := range others {
		t.Run(c.name, func(t *testing.T) {
			err := torch.Try(c.fn)
			if err == nil {
				t.Error("no error")
			} else {
				t.Log(err)
			}
		})
	}
}

// TestMain checks $AFFGD_TEST_DEVICE first (internal/testdev): a device that cannot be used stops
// the suite with one line instead of a run on another device.
func TestMain(m *testing.M) { testdev.Main(m) }
