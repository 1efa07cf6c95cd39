package trainer

import (
	"math"
	"os"
	"path/filepath"
	"reflect"
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
		// Integers are integers, numbers are finite (the decoder alone truncates and takes .inf).
		{"fractional epochs", valid + "epochs: 2.9\n", "line 4: epochs: want an integer, got 2.9"},
		{"fractional batch", valid + "batch_size: 8.7\n", "batch_size: want an integer, got 8.7"},
		{"exponent batch", valid + "batch_size: 1e3\n", "batch_size: want an integer, got 1e3"},
		{"integer-valued float", valid + "epochs: 3.0\n", "epochs: want an integer"},
		{"infinite lr", valid + "lr: .inf\n", "lr: want a finite number, got .inf"},
		{"nan momentum", valid + "momentum: .nan\n", "momentum: want a finite number"},
		{"integer lr", valid + "lr: 1\n", ""},
		{"bool not yes", valid + "cache_text: yes\n", "cache_text: want true or false"},
		{"fractional state interval", valid + "state_every_minutes: 0.5\n", ""},
		// Sizes and counts are bounded, the error naming the key and the limit.
		{"huge crop", valid + "crop_size: 99984\nresize_size: 99984\n", "resize_size: 99984 is out of range: want an integer in [16, 2048]"},
		{"huge crop alone", valid + "crop_size: 99984\n", "crop_size: 99984 is out of range: want an integer in [16, 1024]"},
		{"huge batch", valid + "batch_size: 5000\n", "batch_size: 5000 is out of range: want an integer in [1, 1024]"},
		{"step pixels", valid + "batch_size: 1024\nnum_exo: 14\n", "batch_size × (num_exo + 1) × crop_size² ≤ 134217728"},
		{"many threads", valid + "threads: 10000\n", "threads: 10000 is out of range: want an integer in [0, 256] (0 = libtorch's default)"},
		{"negative threads", valid + "threads: -1\n", "threads: -1"},
		{"many workers", valid + "workers: 100000\n", "workers"},
		{"many epochs", valid + "epochs: 1000000000\n", "epochs"},
		{"many exo", valid + "num_exo: 65\nexo_maps: per-image\n", "num_exo: 65 is out of range: want an integer in [1, 64]"},
		{"negative state interval", valid + "state_every_minutes: -1\n", "state_every_minutes"},
		{"lr 0", valid + "lr: 0\n", "lr: 0 is out of range: want a number > 0"},
		// num_exo against the grid the released exo indexing reads (METHOD §9.1).
		{"num_exo over the grid", valid + "num_exo: 50\n", "num_exo: want ≤ 14 with exo_maps: released"},
		{"num_exo at the grid", valid + "num_exo: 14\n", ""},
		{"num_exo over a small grid", valid + "num_exo: 5\ncrop_size: 64\nresize_size: 72\n", "num_exo: want ≤ 4 with exo_maps: released"},
		{"num_exo per-image", valid + "num_exo: 50\nexo_maps: per-image\n", ""},
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
	ablation, _ := filepath.Glob(filepath.Join(testref.RepoRoot(), "configs", "ablation", "*.yaml"))
	files = append(files, ablation...)
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

// Set applies a flag's text with ParseConfig's checks; the CLI adds the flag's name.
func TestSet(t *testing.T) {
	for _, tc := range []struct{ key, value, wantErr string }{
		{"batch_size", "4", ""},
		{"batch_size", "1e3", "want an integer, got 1e3"},
		{"epochs", "2.9", "want an integer, got 2.9"},
		{"epochs", "two", "want an integer, got two"},
		{"lr", "1e-3", ""},
		{"lr", ".inf", "want a finite number"},
		{"lr", "-.Inf", "want a finite number"},
		{"lr", "1e400", "want a finite number, got 1e400"},
		{"lr", "fast", "want a number, got fast"},
		{"seed", "-1", "uint64"},
		{"device", "cuda:1", ""},
		{"cache_text", "false", ""},
		{"no_such_key", "1", "unknown key no_such_key"},
	} {
		c := DefaultConfig()
		err := c.Set(tc.key, tc.value)
		switch {
		case tc.wantErr == "" && err != nil:
			t.Errorf("Set(%s, %s): %v", tc.key, tc.value, err)
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("Set(%s, %s): error %v, want one holding %q", tc.key, tc.value, err, tc.wantErr)
		}
	}
	c := DefaultConfig()
	if err := c.Set("batch_size", "4"); err != nil || c.BatchSize != 4 {
		t.Errorf("Set batch_size 4: %v, %d", err, c.BatchSize)
	}
}

// Every line of the ranges table parses and names a numeric key; every numeric key has a line.
func TestRanges(t *testing.T) {
	for key, r := range ranges {
		if _, err := parseInterval(r.interval); err != nil {
			t.Errorf("ranges[%q]: %v", key, err)
		}
		switch keyKinds()[key] {
		case reflect.Int, reflect.Int64, reflect.Uint64, reflect.Float64:
		default:
			t.Errorf("ranges[%q]: not a numeric key", key)
		}
	}
	for key, kind := range keyKinds() {
		if _, ok := ranges[key]; !ok && key != "seed" && (kind == reflect.Int || kind == reflect.Float64) {
			t.Errorf("numeric key %q has no line in ranges", key)
		}
	}
	for _, tc := range []struct {
		key string
		v   float64
		ok  bool
	}{
		{"momentum", 0, true}, {"momentum", 0.999, true}, {"momentum", 1, false},
		{"lr_gamma", 1, true}, {"lr_gamma", 0, false},
		{"threads", 256, true}, {"threads", 257, false}, {"threads", 2.5, false},
		{"state_every_minutes", 0.01, true}, {"lr", math.Inf(1), false}, {"alpha", math.NaN(), false},
	} {
		if err := CheckRange(tc.key, tc.v); (err == nil) != tc.ok {
			t.Errorf("CheckRange(%s, %v) = %v, want ok %v", tc.key, tc.v, err, tc.ok)
		}
	}
	// A configuration built in Go (not parsed) is checked for finite numbers too.
	c, err := ParseConfig([]byte(valid))
	if err != nil {
		t.Fatal(err)
	}
	c.Gamma1 = math.NaN()
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "gamma1: want a finite number") {
		t.Errorf("NaN gamma1: %v", err)
	}
}

// docs/CONFIG.md's limits table is the ranges table.
func TestLimitsDocumented(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join(testref.RepoRoot(), "docs", "CONFIG.md"))
	if err != nil {
		t.Fatal(err)
	}
	for key, r := range ranges {
		if row := "| `" + key + "` | `" + r.interval + "` |"; !strings.Contains(string(doc), row) {
			t.Errorf("docs/CONFIG.md has no limits row %q", row)
		}
	}
}
