package data

import (
	"bytes"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/affgd/affgd/internal/testref"
	"github.com/affgd/affgd/torch"
)

// writePNG writes a small w×h RGB png whose pixels depend on seed.
func writePNG(t testing.TB, path string, w, h, seed int) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	m := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			m.Set(x, y, color.RGBA{uint8(x*7 + seed), uint8(y*5 + 3*seed), uint8((x + y + seed) * 3), 255})
		}
	}
	var b bytes.Buffer
	if err := png.Encode(&b, m); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// makeAGD builds a tiny AGD20K-like Seen split: hold/cup with 5 exo, hold/bottle with 2 exo,
// cut/knife with 4 exo; egocentric images for each; two test images with GT and one without.
func makeAGD(t testing.TB) string {
	root := t.TempDir()
	base := filepath.Join(root, "Seen")
	n := 0
	for _, g := range []struct {
		action, object string
		exo, ego       int
	}{{"hold", "cup", 5, 2}, {"hold", "bottle", 2, 1}, {"cut", "knife", 4, 3}} {
		for i := 0; i < g.exo; i++ {
			n++
			writePNG(t, filepath.Join(base, "trainset", "exocentric", g.action, g.object, fmt.Sprintf("%s_%d.png", g.object, i)), 40+i, 30+2*i, n)
		}
		for i := 0; i < g.ego; i++ {
			n++
			writePNG(t, filepath.Join(base, "trainset", "egocentric", g.action, g.object, fmt.Sprintf("ego_%d.png", i)), 35, 45+i, n)
		}
	}
	writePNG(t, filepath.Join(base, "testset", "egocentric", "hold", "cup", "a.jpg"), 30, 20, 1)
	writePNG(t, filepath.Join(base, "testset", "egocentric", "hold", "cup", "b.jpg"), 30, 20, 2)
	writePNG(t, filepath.Join(base, "testset", "egocentric", "cut", "knife", "c.jpg"), 30, 20, 3)
	writePNG(t, filepath.Join(base, "testset", "GT", "hold", "cup", "a.png"), 30, 20, 4)
	writePNG(t, filepath.Join(base, "testset", "GT", "cut", "knife", "c.png"), 30, 20, 5)
	return root
}

func TestOpenTrain(t *testing.T) {
	root := makeAGD(t)
	s, err := OpenTrain(root, Seen)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Items) != 11 {
		t.Fatalf("%d items, want 11", len(s.Items))
	}
	for i, it := range s.Items {
		if i > 0 && s.Items[i-1].Path >= it.Path {
			t.Errorf("items not sorted by path at %d", i)
		}
		want, _ := Seen.Label(it.Action)
		if it.Label != want || !strings.Contains(it.Path, filepath.Join("exocentric", it.Action, it.Object)) {
			t.Errorf("item %+v: wrong label or folder", it)
		}
	}
}

func TestOpenTest(t *testing.T) {
	root := makeAGD(t)
	s, err := OpenTest(root, Seen)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Items) != 2 {
		t.Fatalf("%d test items, want 2 (b.jpg has no GT)", len(s.Items))
	}
	if filepath.Base(s.Items[1].GT) != "a.png" || s.Items[1].Action != "hold" || s.Items[0].Action != "cut" {
		t.Errorf("items %+v", s.Items)
	}
}

func TestOpenHICO(t *testing.T) {
	root := t.TempDir()
	writePNG(t, filepath.Join(root, "trainset", "exocentric", "stir", "pot", "x.png"), 20, 20, 1)
	writePNG(t, filepath.Join(root, "trainset", "egocentric", "stir", "pot", "y.png"), 20, 20, 2)
	s, err := OpenTrain(root, HICO)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Items) != 1 || s.Items[0].Label != 7 {
		t.Errorf("items %+v, want one stir item with label 7", s.Items)
	}
}

// TestDatasetErrors checks that each malformed dataset gives one error naming the path and
// what was expected.
func TestDatasetErrors(t *testing.T) {
	for _, c := range []struct {
		name  string
		setup func(root string)
		test  bool     // OpenTest instead of OpenTrain
		want  []string // substrings of the error
	}{
		{"missing root", func(root string) { os.RemoveAll(root) }, false, []string{"dataset root", "not a folder"}},
		{"missing Seen", func(root string) { os.RemoveAll(filepath.Join(root, "Seen")) }, false, []string{filepath.Join("", "Seen"), "missing folder"}},
		{"missing trainset", func(root string) { os.RemoveAll(filepath.Join(root, "Seen", "trainset")) }, false, []string{"trainset", "missing folder"}},
		{"missing GT", func(root string) { os.RemoveAll(filepath.Join(root, "Seen", "testset", "GT")) }, true, []string{"GT", "ground-truth"}},
		{"unknown action", func(root string) {
			writePNG(t, filepath.Join(root, "Seen", "trainset", "exocentric", "fly", "kite", "k.png"), 8, 8, 1)
		}, false, []string{"fly", "valid actions", "--divide"}},
		{"empty object folder", func(root string) {
			os.MkdirAll(filepath.Join(root, "Seen", "trainset", "exocentric", "hold", "pen"), 0o755)
		}, false, []string{filepath.Join("hold", "pen"), "no images"}},
		{"empty ego folder", func(root string) {
			writePNG(t, filepath.Join(root, "Seen", "trainset", "exocentric", "hold", "pen", "p.png"), 8, 8, 1)
			os.MkdirAll(filepath.Join(root, "Seen", "trainset", "egocentric", "hold", "pen"), 0o755)
		}, false, []string{filepath.Join("egocentric", "hold", "pen"), "no images"}},
		{"empty test set", func(root string) {
			os.RemoveAll(filepath.Join(root, "Seen", "testset", "GT"))
			os.MkdirAll(filepath.Join(root, "Seen", "testset", "GT"), 0o755)
		}, true, []string{"empty test set", "GT"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			root := makeAGD(t)
			c.setup(root)
			var err error
			if c.test {
				_, err = OpenTest(root, Seen)
			} else {
				_, err = OpenTrain(root, Seen)
			}
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestImageErrors(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.png")
	writePNG(t, good, 20, 10, 1)
	b, _ := os.ReadFile(good)
	var jb bytes.Buffer
	jpeg.Encode(&jb, image.NewRGBA(image.Rect(0, 0, 32, 32)), nil)
	files := map[string][]byte{
		"text.jpg":      []byte("hello, not an image"),
		"trunc.png":     b[:len(b)/2],
		"trunc.jpg":     jb.Bytes()[:jb.Len()/2],
		"corrupt.png":   append(append([]byte{}, b[:20]...), bytes.Repeat([]byte{0x55}, 200)...),
		"empty.jpg":     {},
		"missing_x.png": nil,
	}
	for name, content := range files {
		p := filepath.Join(dir, name)
		if content != nil {
			os.WriteFile(p, content, 0o644)
		}
		_, err := DecodeImage(p)
		if err == nil {
			t.Errorf("%s: no error", name)
			continue
		}
		if !strings.Contains(err.Error(), name) {
			t.Errorf("%s: error %q does not name the file", name, err)
		}
		t.Logf("%s: %v", name, err)
		if _, err := LoadGT(p); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%s: LoadGT error %v", name, err)
		}
	}
}

func TestSample(t *testing.T) {
	s, err := OpenTrain(makeAGD(t), Seen)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	for trial := 0; trial < 200; trial++ {
		for i, it := range s.Items {
			for _, e := range []int{1, 3, 5} {
				smp := s.Sample(i, e, rng)
				if len(smp.Exo) != e || smp.Exo[0] != it.Path || smp.Label != it.Label {
					t.Fatalf("item %d e=%d: %+v", i, e, smp)
				}
				dir := filepath.Dir(it.Path)
				n := len(s.itemGroup[i].exo)
				seen := map[string]bool{}
				for _, p := range smp.Exo {
					if filepath.Dir(p) != dir {
						t.Fatalf("partner %s not from %s", p, dir)
					}
					if n > e && seen[p] {
						t.Fatalf("item %d e=%d: repeated %s though the folder has %d > e images", i, e, p, n)
					}
					seen[p] = true
				}
				want := strings.Replace(dir, "exocentric", "egocentric", 1)
				if filepath.Dir(smp.Ego) != want {
					t.Fatalf("ego %s not from %s", smp.Ego, want)
				}
			}
		}
	}
	// With replacement: the 2-image folder with e = 3 must sometimes repeat an image.
	var small int
	for i := range s.Items {
		if s.Items[i].Object == "bottle" {
			small = i
		}
	}
	repeats := 0
	for k := 0; k < 100; k++ {
		smp := s.Sample(small, 3, rng)
		if smp.Exo[1] == smp.Exo[0] || smp.Exo[2] == smp.Exo[0] || smp.Exo[1] == smp.Exo[2] {
			repeats++
		}
	}
	if repeats == 0 {
		t.Error("with replacement never repeated an image")
	}
}

func batchesOf(t *testing.T, s *TrainSet, o LoaderOptions) [][]byte {
	l, err := NewTrainLoader(s, o)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var out [][]byte
	for {
		b, err := l.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		var buf []byte
		buf = append(buf, b.Exo.Bytes()...)
		buf = append(buf, b.Ego.Bytes()...)
		buf = append(buf, b.Label.Bytes()...)
		buf = append(buf, fmt.Sprint(b.Samples)...)
		out = append(out, buf)
		b.Release()
	}
	return out
}

func TestLoaderDeterminism(t *testing.T) {
	s, err := OpenTrain(makeAGD(t), Seen)
	if err != nil {
		t.Fatal(err)
	}
	o := LoaderOptions{BatchSize: 4, Resize: 40, Crop: 32, Seed: 7, Epoch: 2}
	o.Workers = 1
	one := batchesOf(t, s, o)
	o.Workers, o.Prefetch = 4, 3
	four := batchesOf(t, s, o)
	if len(one) != 3 || len(four) != 3 {
		t.Fatalf("%d and %d batches, want 3 (11 items, the last batch partial)", len(one), len(four))
	}
	for i := range one {
		if !bytes.Equal(one[i], four[i]) {
			t.Errorf("batch %d differs between 1 and 4 workers", i)
		}
	}
	o.StartBatch = 1
	resumed := batchesOf(t, s, o)
	if len(resumed) != 2 || !bytes.Equal(resumed[0], one[1]) || !bytes.Equal(resumed[1], one[2]) {
		t.Error("StartBatch=1 does not give batches 1.. of the full epoch")
	}
	o.StartBatch, o.Epoch = 0, 3
	if other := batchesOf(t, s, o); bytes.Equal(other[0], one[0]) {
		t.Error("epoch 3 gives the same first batch as epoch 2")
	}
}

func TestLoaderShapesAndErrors(t *testing.T) {
	s, err := OpenTrain(makeAGD(t), Seen)
	if err != nil {
		t.Fatal(err)
	}
	l, err := NewTrainLoader(s, LoaderOptions{BatchSize: 8, Resize: 40, Crop: 32, Workers: 2})
	if err != nil {
		t.Fatal(err)
	}
	if l.Len() != 2 {
		t.Errorf("Len %d, want 2", l.Len())
	}
	b, err := l.Next()
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(b.Exo.Shape()) != "[8 3 3 32 32]" || fmt.Sprint(b.Ego.Shape()) != "[8 3 32 32]" || b.Label.DType() != torch.Int64 {
		t.Errorf("shapes %v %v %v", b.Exo.Shape(), b.Ego.Shape(), b.Label.DType())
	}
	b.Release()
	b.Release()
	l.Close()
	l.Close()
	if _, err := l.Next(); err == nil {
		t.Error("Next after Close gave no error")
	}
	for _, o := range []LoaderOptions{{BatchSize: -1}, {Crop: 300}, {StartBatch: 9}, {Epoch: -1}} {
		if _, err := NewTrainLoader(s, o); err == nil {
			t.Errorf("options %+v: no error", o)
		}
	}
	// A corrupt image: the batch holding it fails with the file's name; the others still come.
	os.WriteFile(s.Items[0].Path, []byte("garbage"), 0o644)
	l, _ = NewTrainLoader(s, LoaderOptions{BatchSize: 1, Resize: 40, Crop: 32, Workers: 2})
	defer l.Close()
	bad, good := 0, 0
	for {
		b, err := l.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			bad++
			if !strings.Contains(err.Error(), filepath.Base(s.Items[0].Path)) {
				t.Errorf("error %q does not name the file", err)
			}
			continue
		}
		good++
		b.Release()
	}
	if bad == 0 || good == 0 {
		t.Errorf("%d failed and %d good batches", bad, good)
	}
}

// TestLoaderMemory runs 50 batches (and a loader closed early) and checks that the live tensor
// count returns to where it started.
func TestLoaderMemory(t *testing.T) {
	s, err := OpenTrain(makeAGD(t), Seen)
	if err != nil {
		t.Fatal(err)
	}
	before := testref.Settle(torch.LiveTensors)
	count := 0
	for epoch := 0; count < 50; epoch++ {
		l, err := NewTrainLoader(s, LoaderOptions{BatchSize: 1, Resize: 40, Crop: 32, Workers: 3, Epoch: epoch})
		if err != nil {
			t.Fatal(err)
		}
		for count < 50 {
			sc := torch.NewScope()
			b, err := l.Next()
			if errors.Is(err, io.EOF) {
				sc.Close()
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			_ = b.Exo.Sum() // work in the caller's scope
			if count%2 == 0 {
				b.Release()
			}
			sc.Close() // releases the batch's tensors when not released already
			count++
		}
		l.Close() // early close frees the prefetched batches
	}
	if after := testref.Settle(torch.LiveTensors); after != before {
		t.Errorf("live tensors %d before, %d after 50 batches", before, after)
	}
}
