package clip_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/affgd/affgd/models/clip"
	"github.com/affgd/affgd/models/tokenizer"
	"github.com/affgd/affgd/torch"
)

// fullSeed is FULL_SEED of tests/clip/gen_clip.py.
const fullSeed = 7

// TestFullSizeViTB16: a full-size ViT-B/16 with random weights drawn from the seed gen_clip.py
// uses (the weights are not stored: both sides draw them, and their per-tensor sums are checked
// first), written in OpenAI's float16 container and loaded back, gives PyTorch's dense features
// on one 224×224 image and PyTorch's text features for the affordance prompts of the 36
// AGD20K-Seen classes and four exocentric prompts, tokenised by our tokenizer.
func TestFullSizeViTB16(t *testing.T) {
	ref := readRef(t, "full_ref.pt")
	start := time.Now()
	path := filepath.Join(t.TempDir(), "ViT-B-16.pt")
	if err := clip.WriteRandom(path, clip.ViTB16(), fullSeed, clip.FormatTorchScript); err != nil {
		t.Fatal(err)
	}
	m := load(t, path)
	defer m.Free()
	os.Remove(path)
	if m.Config != clip.ViTB16() {
		t.Fatalf("config %v, want %v", m.Config, clip.ViTB16())
	}
	t.Logf("write + load: %v", time.Since(start))

	sums := ref.Tensors["weight_sums"].Float64s()
	named := m.NamedTensors()
	if len(named) != len(sums) {
		t.Fatalf("%d tensors, PyTorch %d", len(named), len(sums))
	}
	for i, n := range named {
		var got float64
		// Summed on the CPU, as the reference did: a CUDA reduction adds in another order.
		scoped(t, func() { got = n.Tensor.To(torch.CPU).ToDType(torch.Float64).Sum().Item() })
		if got != sums[i] {
			t.Fatalf("%s: weights differ from PyTorch's (sum %.17g, PyTorch %.17g)", n.Name, got, sums[i])
		}
	}

	scoped(t, func() {
		start := time.Now()
		dense, err := m.DenseFeatures(on(t, ref.Tensors["image"]))
		if err != nil {
			t.Fatal(err)
		}
		compare(t, "dense 1x224x224", dense, ref.Tensors["dense"])
		t.Logf("dense features: %v", time.Since(start))

		b, err := os.ReadFile(dataPath(t, "full_prompts.txt"))
		if err != nil {
			t.Fatal(err)
		}
		prompts := strings.Split(strings.TrimSpace(string(b)), "\n")
		if prompts[6] != tokenizer.AffordancePrompt("cut_with") || prompts[36] != tokenizer.ExoPrompt("cut_with") {
			t.Fatalf("prompts differ from the tokenizer package's: %q, %q", prompts[6], prompts[36])
		}
		tok, err := tokenizer.Load(dataPath(t, "bpe_simple_vocab_16e6.txt.gz"))
		if err != nil {
			t.Fatal(err)
		}
		rows, err := tok.Tokenize(prompts, 77, false)
		if err != nil {
			t.Fatal(err)
		}
		want := ref.Tensors["tokens"].Int64s()
		for i, r := range rows {
			for j, id := range r {
				if id != want[i*77+j] {
					t.Fatalf("prompt %q: token %d is %d, open_clip's %d", prompts[i], j, id, want[i*77+j])
				}
			}
		}
		start = time.Now()
		text, err := m.EncodePrompts(tok, prompts)
		if err != nil {
			t.Fatal(err)
		}
		compare(t, fmt.Sprintf("text (%d prompts)", len(prompts)), text, ref.Tensors["text"])
		t.Logf("text features: %v", time.Since(start))
	})
}
