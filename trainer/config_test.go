package trainer

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/affgd/affgd/internal/testref"
)

// valid is a configuration that passes Validate; cases change one thing.
const valid = "data_root: /d\ndino: a.pth\nclip: b.pt\n"

func TestParseConfig(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		wantErr    string // "" = valid
	}{
		{"defaults", valid, ""},
		{"empty file needs paths", "", "data_root"},
		{"typo'd key", valid + "batchsize: 4\n", "batchsize"},
		{"wrong type", valid + "epochs: many\n", "epochs"},
		{"zero batch", valid + "batch_size: 0\n", "batch_size"},
		{"negative lr", valid + "lr: -1\n", "lr"},
		{"crop not a multiple of 16", valid + "crop_size: 100\n", "crop_size"},
		{"resize below crop", valid + "resize_size: 128\n", "resize_size"},
		{"gamma1 out of range", valid + "gamma1: 1.5\n", "gamma1"},
		{"gamma2 zero", valid + "gamma2: 0\n", "gamma2"},
		{"alpha out of range", valid + "alpha: 2\n", "alpha"},
		{"unknown divide", valid + "divide: kitchen\n", "divide"},
		{"bad device", valid + "device: tpu\n", "device"},
		{"bad exo_maps", valid + "exo_maps: mine\n", "exo_maps"},
		{"per-image exo maps", valid + "exo_maps: per-image\n", ""},
		{"hico", valid + "divide: hico\n", ""},
		{"momentum 1", valid + "momentum: 1\n", "momentum"},
		{"backbone dtype int8", valid + "backbone_dtype: int8\n", "backbone_dtype: \"int8\" is not a backbone dtype: want one of float32, bf16, fp16"},
		{"bf16 backbones", valid + "backbone_dtype: bf16\ntf32: true\n", ""},
		{"negative eval batch", valid + "eval_batch_size: -2\n", "eval_batch_size"},
		{"eval batch 32", valid + "eval_batch_size: 32\n", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := ParseConfig([]byte(tc.yaml))
			if err == nil {
				err = c.Validate()
			}
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tc.wantErr != "" && err == nil:
				t.Fatalf("no error, want one naming %q", tc.wantErr)
			case tc.wantErr != "" && !strings.Contains(err.Error(), tc.wantErr):
				t.Fatalf("error %q does not name %q", err, tc.wantErr)
			}
		})
	}
}

func TestDefaultsAreTheReleasedScripts(t *testing.T) {
	c := DefaultConfig()
	if c.Epochs != 15 || c.BatchSize != 8 || c.LR != 0.001 || c.Momentum != 0.9 || c.WeightDecay != 5e-4 ||
		c.ResizeSize != 256 || c.CropSize != 224 || c.Temperature != 0.5 || c.Gamma1 != 0.6 || c.Gamma2 != 0.6 ||
		c.Alpha != 0.6 || c.NumExo != 3 || c.LRStep != 50 || c.LRGamma != 0.1 || c.ExoMaps != ExoMapsReleased || c.Seed != 0 {
		t.Fatalf("defaults differ from train.py's: %+v", c)
	}
}

func TestYAMLRoundTrip(t *testing.T) {
	c, err := ParseConfig([]byte(valid + "batch_size: 4\nseed: 7\n"))
	if err != nil {
		t.Fatal(err)
	}
	back, err := ParseConfig(c.YAML())
	if err != nil || back != c {
		t.Fatalf("round trip: %v\n%+v\n%+v", err, c, back)
	}
}

// Every key is documented in docs/CONFIG.md, and the shipped configs parse.
func TestConfigDocsAndExamples(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join(testref.RepoRoot(), "docs", "CONFIG.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range Keys() {
		if !strings.Contains(string(doc), "| `"+k+"` |") {
			t.Errorf("docs/CONFIG.md has no row for %q", k)
		}
	}
	files, _ := filepath.Glob(filepath.Join(testref.RepoRoot(), "configs", "*.yaml"))
	if len(files) == 0 {
		t.Fatal("no configs/*.yaml")
	}
	for _, f := range files {
		c, err := LoadConfig(f)
		if err == nil {
			err = c.Validate()
		}
		if err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}
