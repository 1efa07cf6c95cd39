// Package trainer runs whole trainings: the epoch loop around train's step, with the data
// loader, per-epoch evaluation, checkpoints, resuming and the metrics log. Its Config is the YAML
// file `affgd train --config` reads (every key in docs/CONFIG.md).
package trainer

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/affgd/affgd/data"
	"github.com/affgd/affgd/torch"
)

// Exo-map indexing modes of part discovery (METHOD.md §9.1).
const (
	ExoMapsReleased = "released"  // the released code's row indexing (default)
	ExoMapsPerImage = "per-image" // each exocentric image's own map
)

// Config is a training run. The defaults (DefaultConfig) are the released code's and the paper's;
// the YAML keys are the `yaml` tags.
type Config struct {
	// Data and weights.
	DataRoot string `yaml:"data_root"` // AGD20K root (holding Seen/, Unseen/) or HICO-IIF root
	Divide   string `yaml:"divide"`    // seen, unseen or hico
	DINO     string `yaml:"dino"`      // DINO ViT-S/16 weights
	CLIP     string `yaml:"clip"`      // CLIP ViT-B/16 weights (OpenAI TorchScript or open_clip state dict)
	Vocab    string `yaml:"vocab"`     // CLIP BPE vocabulary; "" = the open_clip copy in the venv
	Init     string `yaml:"init"`      // optional head weights to start from (released key names)
	OutDir   string `yaml:"out_dir"`   // checkpoints, state, metrics log and plot

	// Machine.
	Device   string `yaml:"device"`   // cpu, cuda or cuda:N
	Threads  int    `yaml:"threads"`  // libtorch intra-op threads; 0 = libtorch's default
	Workers  int    `yaml:"workers"`  // image decoding goroutines; 0 = number of CPUs
	Prefetch int    `yaml:"prefetch"` // batches prepared ahead of the model
	Seed     uint64 `yaml:"seed"`     // head initialisation, shuffling, augmentation, K-means draws
	// Deterministic turns on libtorch's deterministic algorithms and cuDNN's deterministic mode
	// (torch.SetDeterministic; docs/CONFIG.md says what becomes reproducible and its cost).
	Deterministic bool `yaml:"deterministic"`

	// Optimisation (METHOD.md §4.12).
	Epochs      int     `yaml:"epochs"`
	BatchSize   int     `yaml:"batch_size"`
	NumExo      int     `yaml:"num_exo"`
	LR          float64 `yaml:"lr"`
	Momentum    float64 `yaml:"momentum"`
	WeightDecay float64 `yaml:"weight_decay"`
	LRStep      int     `yaml:"lr_step"`
	LRGamma     float64 `yaml:"lr_gamma"`

	// Images (METHOD.md §1).
	ResizeSize int `yaml:"resize_size"`
	CropSize   int `yaml:"crop_size"`

	// Method (METHOD.md §4, §9.1).
	Temperature float64 `yaml:"cont_temperature"`
	Gamma1      float64 `yaml:"gamma1"`
	Gamma2      float64 `yaml:"gamma2"`
	Alpha       float64 `yaml:"alpha"`
	ExoMaps     string  `yaml:"exo_maps"`
	CacheText   bool    `yaml:"cache_text"` // each prompt's text features computed once (train.Model.CacheText)

	// Run length and reporting.
	MaxSteps  int `yaml:"max_steps_per_epoch"` // 0 = whole epochs
	TestLimit int `yaml:"test_limit"`          // 0 = the whole test set each epoch
}

// DefaultConfig returns the released training script's settings.
func DefaultConfig() Config {
	return Config{
		Divide: "seen", OutDir: "runs/affgd", Device: "cpu", Prefetch: 2,
		Epochs: 15, BatchSize: 8, NumExo: 3,
		LR: 0.001, Momentum: 0.9, WeightDecay: 5e-4, LRStep: 50, LRGamma: 0.1,
		ResizeSize: 256, CropSize: 224,
		Temperature: 0.5, Gamma1: 0.6, Gamma2: 0.6, Alpha: 0.6, ExoMaps: ExoMapsReleased, CacheText: true,
	}
}

// LoadConfig reads a YAML file over the defaults. Unknown keys are errors, as are values out of
// range (Validate).
func LoadConfig(path string) (Config, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("config: %w", err)
	}
	c, err := ParseConfig(raw)
	if err != nil {
		return c, fmt.Errorf("config %s: %w", path, err)
	}
	return c, nil
}

// ParseConfig reads YAML text over the defaults; see LoadConfig.
func ParseConfig(raw []byte) (Config, error) {
	c := DefaultConfig()
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
		msg := strings.TrimPrefix(err.Error(), "yaml: ")
		var te *yaml.TypeError
		if errors.As(err, &te) {
			parts := make([]string, len(te.Errors))
			for i, e := range te.Errors {
				if j := strings.Index(e, " not found in type "); j >= 0 {
					e = strings.Replace(e[:j], "field ", "unknown key ", 1)
				}
				parts[i] = e
			}
			msg = strings.Join(parts, "; ")
		}
		return c, fmt.Errorf("%s (valid keys: %s)", msg, strings.Join(Keys(), ", "))
	}
	return c, nil
}

// Diff returns the keys whose values differ between c and o, in declaration order.
func (c Config) Diff(o Config) []string {
	var a, b map[string]any
	_ = yaml.Unmarshal(c.YAML(), &a)
	_ = yaml.Unmarshal(o.YAML(), &b)
	var keys []string
	for _, k := range Keys() {
		if fmt.Sprint(a[k]) != fmt.Sprint(b[k]) {
			keys = append(keys, k)
		}
	}
	return keys
}

// Keys lists the YAML keys of Config in declaration order.
func Keys() []string {
	var ks []string
	node := yaml.Node{}
	_ = node.Encode(DefaultConfig())
	for i := 0; i+1 < len(node.Content); i += 2 {
		ks = append(ks, node.Content[i].Value)
	}
	return ks
}

// YAML renders c as a config file.
func (c Config) YAML() []byte {
	out, err := yaml.Marshal(c)
	if err != nil {
		panic(err) // a struct of plain fields always marshals
	}
	return out
}

// Validate checks every value's range and names the first bad key.
func (c Config) Validate() error {
	type check struct {
		bad  bool
		key  string
		want string
	}
	for _, k := range []check{
		{c.DataRoot == "", "data_root", "the dataset root folder"},
		{c.DINO == "", "dino", "a DINO weights file"},
		{c.CLIP == "", "clip", "a CLIP weights file"},
		{c.OutDir == "", "out_dir", "an output folder"},
		{c.Threads < 0, "threads", "≥ 0 (0 = libtorch's default)"},
		{c.Workers < 0, "workers", "≥ 0 (0 = one per CPU)"},
		{c.Prefetch < 1, "prefetch", "≥ 1"},
		{c.Epochs < 1, "epochs", "≥ 1"},
		{c.BatchSize < 1, "batch_size", "≥ 1"},
		{c.NumExo < 1, "num_exo", "≥ 1"},
		{!(c.LR > 0), "lr", "> 0"},
		{!(c.Momentum >= 0 && c.Momentum < 1), "momentum", "in [0, 1)"},
		{!(c.WeightDecay >= 0), "weight_decay", "≥ 0"},
		{c.LRStep < 1, "lr_step", "≥ 1"},
		{!(c.LRGamma > 0 && c.LRGamma <= 1), "lr_gamma", "in (0, 1]"},
		{c.CropSize < 16 || c.CropSize%16 != 0, "crop_size", "a positive multiple of the patch size 16"},
		{c.ResizeSize < c.CropSize, "resize_size", fmt.Sprintf("≥ crop_size (%d)", c.CropSize)},
		{!(c.Temperature > 0), "cont_temperature", "> 0"},
		{!(c.Gamma1 >= 0 && c.Gamma1 < 1), "gamma1", "in [0, 1)"},
		{!(c.Gamma2 > 0 && c.Gamma2 < 1), "gamma2", "in (0, 1)"},
		{!(c.Alpha >= 0 && c.Alpha <= 1), "alpha", "in [0, 1]"},
		{c.ExoMaps != ExoMapsReleased && c.ExoMaps != ExoMapsPerImage, "exo_maps", `"released" or "per-image"`},
		{c.MaxSteps < 0, "max_steps_per_epoch", "≥ 0 (0 = whole epochs)"},
		{c.TestLimit < 0, "test_limit", "≥ 0 (0 = the whole test set)"},
	} {
		if k.bad {
			return fmt.Errorf("config: %s: want %s", k.key, k.want)
		}
	}
	if _, err := data.ParseDivide(c.Divide); err != nil {
		return fmt.Errorf("config: divide: %w", err)
	}
	if _, err := torch.ParseDevice(c.Device); err != nil {
		return fmt.Errorf("config: device: %w", err)
	}
	return nil
}
