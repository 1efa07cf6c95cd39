// Package trainer runs whole trainings: the epoch loop around train's step, with the data
// loader, per-epoch evaluation, checkpoints, resuming and the metrics log. Its Config is the YAML
// file `affgd train --config` reads (every key in docs/CONFIG.md).
package trainer

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"

	"gopkg.in/yaml.v3"

	"github.com/affgd/affgd/data"
	"github.com/affgd/affgd/torch"
	"github.com/affgd/affgd/train"
)

// Exo-map indexing modes of part discovery (METHOD.md §9.1).
const (
	ExoMapsReleased = "released"  // the released code's row indexing (default)
	ExoMapsPerImage = "per-image" // each exocentric image's own map
)

// Prototype selection modes (config key prototypes, discovery.Options.Prototypes).
const (
	PrototypesSelective = "selective" // part level when reliable, else object level (released)
	PrototypesObject    = "object"    // every sample object level
	PrototypesPart      = "part"      // part level whenever there are kmeans_k candidates (α ignored)
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

	// Ablations (the paper's ablation table, configs/ablation/).
	KMeansK     int               `yaml:"kmeans_k"`     // K-means clusters K, also the fewest candidates for part level
	Prototypes  string            `yaml:"prototypes"`   // selective, object or part
	LossWeights train.LossWeights `yaml:"loss_weights"` // a weight of 0 skips that loss

	// Run length and reporting.
	MaxSteps   int     `yaml:"max_steps_per_epoch"` // 0 = whole epochs
	TestLimit  int     `yaml:"test_limit"`          // 0 = the whole test set each epoch
	StateEvery float64 `yaml:"state_every_minutes"` // save the resumable state this often within an epoch; 0 = at epoch ends only
	// Test images per forward in the per-epoch evaluation; 0 = the device's default
	// (evaluate.DefaultBatchSize). Every image's figures equal batch 1's (docs/CONFIG.md).
	EvalBatchSize int `yaml:"eval_batch_size"`

	// Precision: speed options that are not parity, never the default (train.Precision).
	TF32          bool   `yaml:"tf32"`           // CUDA: TF32 matrix products and convolutions
	BackboneDType string `yaml:"backbone_dtype"` // float32, bf16 or fp16: the image backbones' dtype
}

// DefaultConfig returns the released training script's settings.
func DefaultConfig() Config {
	return Config{
		Divide: "seen", OutDir: "runs/affgd", Device: "cpu", Prefetch: 2,
		Epochs: 15, BatchSize: 8, NumExo: 3,
		LR: 0.001, Momentum: 0.9, WeightDecay: 5e-4, LRStep: 50, LRGamma: 0.1,
		ResizeSize: 256, CropSize: 224,
		Temperature: 0.5, Gamma1: 0.6, Gamma2: 0.6, Alpha: 0.6, ExoMaps: ExoMapsReleased, CacheText: true,
		KMeansK: 3, Prototypes: PrototypesSelective, LossWeights: train.AllLosses,
		StateEvery:    10,
		BackboneDType: "float32",
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
					if strings.HasSuffix(e, "train.LossWeights") {
						e = strings.Replace(e[:j], "field ", "unknown key loss_weights.", 1) + " (valid: " + strings.Join(LossWeightKeys(), ", ") + ")"
					} else {
						e = strings.Replace(e[:j], "field ", "unknown key ", 1)
					}
				}
				parts[i] = e
			}
			msg = strings.Join(parts, "; ")
		}
		return c, fmt.Errorf("%s (valid keys: %s)", msg, strings.Join(Keys(), ", "))
	}
	// The decoder truncates 2.9 into an int and takes .inf: check each value's kind on the node.
	var doc yaml.Node
	if err := yaml.Unmarshal(raw, &doc); err == nil && len(doc.Content) == 1 && doc.Content[0].Kind == yaml.MappingNode {
		m := doc.Content[0]
		for i := 0; i+1 < len(m.Content); i += 2 {
			k, v := m.Content[i], m.Content[i+1]
			if err := checkValue(k.Value, v); err != nil {
				return c, fmt.Errorf("line %d: %s: %w", v.Line, k.Value, err)
			}
		}
	}
	return c, nil
}

// Set sets one key (a SettableKeys name: a config key, or loss_weights.ce_ego and so on) from its
// text as a command-line flag or `affgd sweep --set` gives it, with ParseConfig's checks: an
// integer key takes only an integer (not 2.9 nor 1e3), a number key a finite number, a boolean
// key true or false. An unknown key lists the valid ones; other errors leave naming the key to the
// caller (who knows whether it was a flag or a --set). Ranges are Validate's.
func (c *Config) Set(key, value string) error {
	if !slices.Contains(SettableKeys(), key) {
		return fmt.Errorf("unknown key %s (valid keys: %s)", key, strings.Join(SettableKeys(), ", "))
	}
	v := &yaml.Node{Kind: yaml.ScalarNode, Value: value}
	kindKey := key
	if strings.Contains(key, ".") {
		kindKey = "" // the loss weights: numbers, checked below
		if err := checkKind(reflect.Float64, v); err != nil {
			return err
		}
	}
	if err := checkValue(kindKey, v); err != nil {
		return err
	}
	node := v
	path := strings.Split(key, ".")
	for i := len(path) - 1; i >= 0; i-- {
		node = &yaml.Node{Kind: yaml.MappingNode, Content: []*yaml.Node{{Kind: yaml.ScalarNode, Value: path[i]}, node}}
	}
	next := *c
	if err := node.Decode(&next); err != nil {
		msg := err.Error()
		var te *yaml.TypeError
		if errors.As(err, &te) && len(te.Errors) > 0 {
			msg = te.Errors[0]
			if i := strings.Index(msg, ": "); strings.HasPrefix(msg, "line ") && i >= 0 {
				msg = msg[i+2:] // drop the meaningless "line 0: "
			}
		}
		return errors.New(strings.TrimPrefix(msg, "yaml: "))
	}
	*c = next
	return nil
}

// keyKinds maps every key to the kind of its field.
var keyKinds = sync.OnceValue(func() map[string]reflect.Kind {
	kinds := map[string]reflect.Kind{}
	t := reflect.TypeFor[Config]()
	for i := range t.NumField() {
		if k := yamlKey(t.Field(i)); k != "" {
			kinds[k] = t.Field(i).Type.Kind()
		}
	}
	return kinds
})

func yamlKey(f reflect.StructField) string {
	k, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	return k
}

// checkValue checks that a YAML scalar fits the kind of key's field. Other nodes, and unknown
// keys, are left to the decoder.
func checkValue(key string, v *yaml.Node) error {
	kind, ok := keyKinds()[key]
	if !ok {
		return nil
	}
	return checkKind(kind, v)
}

// checkKind checks that a YAML scalar fits a field of the given kind; other nodes are left to
// the decoder.
func checkKind(kind reflect.Kind, v *yaml.Node) error {
	if v.Kind != yaml.ScalarNode {
		return nil
	}
	tag := v.ShortTag()
	switch kind {
	case reflect.Int, reflect.Int64, reflect.Uint64:
		if tag != "!!int" {
			return fmt.Errorf("want an integer, got %s", v.Value)
		}
	case reflect.Float64:
		var f float64
		if _, err := strconv.ParseFloat(v.Value, 64); errors.Is(err, strconv.ErrRange) {
			return fmt.Errorf("want a finite number, got %s", v.Value) // 1e400: YAML reads a string
		}
		if tag != "!!int" && tag != "!!float" {
			return fmt.Errorf("want a number, got %s", v.Value)
		}
		if v.Decode(&f) != nil || math.IsInf(f, 0) || math.IsNaN(f) {
			return fmt.Errorf("want a finite number, got %s", v.Value)
		}
	case reflect.Bool:
		if tag != "!!bool" {
			return fmt.Errorf("want true or false, got %s", v.Value)
		}
	}
	return nil
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

// ranges are the limits of the numeric keys in interval notation ("inf": no bound), with a note
// for the message. Validate checks every numeric key against its line, and every float key for
// being finite; ParseConfig and Set check that an integer key was given an integer. A new numeric
// key gets these checks by a line here. The upper bounds keep a typo from exhausting memory (a
// step holds batch_size × (num_exo + 1) images of crop_size², decoded from resize_size²).
var ranges = map[string]struct{ interval, note string }{
	"threads":             {"[0, 256]", "0 = libtorch's default"},
	"workers":             {"[0, 256]", "0 = one per CPU"},
	"prefetch":            {"[1, 64]", ""},
	"epochs":              {"[1, 100000]", ""},
	"batch_size":          {"[1, 1024]", ""},
	"num_exo":             {"[1, 64]", ""},
	"lr":                  {"(0, inf)", ""},
	"momentum":            {"[0, 1)", ""},
	"weight_decay":        {"[0, inf)", ""},
	"lr_step":             {"[1, inf)", ""},
	"lr_gamma":            {"(0, 1]", ""},
	"resize_size":         {"[16, " + strconv.Itoa(MaxResizeSize) + "]", ""},
	"crop_size":           {"[16, " + strconv.Itoa(MaxCropSize) + "]", "a multiple of the patch size 16"},
	"cont_temperature":    {"(0, inf)", ""},
	"gamma1":              {"[0, 1)", ""},
	"gamma2":              {"(0, 1)", ""},
	"alpha":               {"[0, 1]", ""},
	"kmeans_k":            {"[1, 64]", "K-means clusters; the released code uses 3"},
	"max_steps_per_epoch": {"[0, inf)", "0 = whole epochs"},
	"test_limit":          {"[0, inf)", "0 = the whole test set"},
	"state_every_minutes": {"[0, 10080]", "0 = at epoch ends only"},
	"eval_batch_size":     {"[0, 1024]", "0 = the device's default"},
}

// Size limits (see ranges). MaxCropSize also bounds `affgd predict --size`.
const (
	MaxCropSize   = 1024
	MaxResizeSize = 2048
	// MaxStepPixels bounds batch_size × (num_exo + 1) × crop_size², the pixels of one step
	// (83 times the released settings' 8 × 4 × 224²).
	MaxStepPixels = 1 << 27
)

// CheckRange checks v against key's line in ranges and returns the error without the key or the
// value (e.g. "want an integer in [0, 256] (0 = libtorch's default)"), for commands that take the same
// setting as a flag (eval and predict's --threads and --workers, predict's --size as crop_size).
func CheckRange(key string, v float64) error {
	r, ok := ranges[key]
	if !ok {
		return nil
	}
	iv, err := parseInterval(r.interval)
	if err != nil {
		panic(fmt.Sprintf("trainer: ranges[%q]: %v", key, err)) // a table typo; TestRanges parses every line
	}
	isInt := keyKinds()[key] != reflect.Float64
	ok = !math.IsNaN(v) && !math.IsInf(v, 0) && (v > iv.lo || !iv.loOpen && v == iv.lo) && (v < iv.hi || !iv.hiOpen && v == iv.hi)
	if isInt && v != math.Trunc(v) {
		ok = false
	}
	if ok {
		return nil
	}
	what := "a number"
	if isInt {
		what = "an integer"
	}
	want := fmt.Sprintf("%s in %s", what, r.interval)
	switch {
	case math.IsInf(iv.hi, 1) && !iv.loOpen:
		want = fmt.Sprintf("%s ≥ %g", what, iv.lo)
	case math.IsInf(iv.hi, 1):
		want = fmt.Sprintf("%s > %g", what, iv.lo)
	}
	if r.note != "" {
		want += " (" + r.note + ")"
	}
	return fmt.Errorf("want %s", want)
}

type interval struct {
	lo, hi         float64
	loOpen, hiOpen bool
}

// parseInterval reads "[a, b]", "(a, b)", "[a, b)" or "(a, b]"; a and b are numbers or inf.
func parseInterval(s string) (interval, error) {
	var iv interval
	if len(s) < 5 || !strings.ContainsRune("[(", rune(s[0])) || !strings.ContainsRune("])", rune(s[len(s)-1])) {
		return iv, fmt.Errorf("%q is not an interval", s)
	}
	lo, hi, ok := strings.Cut(s[1:len(s)-1], ",")
	if !ok {
		return iv, fmt.Errorf("%q is not an interval", s)
	}
	var err1, err2 error
	iv.lo, err1 = strconv.ParseFloat(strings.TrimSpace(lo), 64)
	iv.hi, err2 = strconv.ParseFloat(strings.TrimSpace(hi), 64)
	if err1 != nil || err2 != nil || !(iv.lo <= iv.hi) {
		return iv, fmt.Errorf("%q is not an interval", s)
	}
	iv.loOpen, iv.hiOpen = s[0] == '(', s[len(s)-1] == ')'
	return iv, nil
}

// Validate checks every value's range and names the first bad key.
func (c Config) Validate() error {
	// Numbers: finite, and in their ranges (in declaration order).
	v := reflect.ValueOf(c)
	for i := range v.NumField() {
		key, f := yamlKey(v.Type().Field(i)), v.Field(i)
		var x float64
		switch f.Kind() {
		case reflect.Int, reflect.Int64:
			x = float64(f.Int())
		case reflect.Uint64:
			x = float64(f.Uint())
		case reflect.Float64:
			x = f.Float()
			if math.IsNaN(x) || math.IsInf(x, 0) {
				return fmt.Errorf("config: %s: want a finite number, got %v", key, x)
			}
		default:
			continue
		}
		if err := CheckRange(key, x); err != nil {
			return fmt.Errorf("config: %s: %s is out of range: %w", key, strconv.FormatFloat(x, 'g', -1, 64), err)
		}
	}
	type check struct {
		bad  bool
		key  string
		want string
	}
	grid := c.CropSize / 16
	for _, k := range []check{
		{c.DataRoot == "", "data_root", "the dataset root folder"},
		{c.DINO == "", "dino", "a DINO weights file"},
		{c.CLIP == "", "clip", "a CLIP weights file"},
		{c.OutDir == "", "out_dir", "an output folder"},
		{c.CropSize%16 != 0, "crop_size", "a positive multiple of the patch size 16"},
		{c.ResizeSize < c.CropSize, "resize_size", fmt.Sprintf("≥ crop_size (%d)", c.CropSize)},
		{c.ExoMaps != ExoMapsReleased && c.ExoMaps != ExoMapsPerImage, "exo_maps", `"released" or "per-image"`},
		{c.Prototypes != PrototypesSelective && c.Prototypes != PrototypesObject && c.Prototypes != PrototypesPart, "prototypes", `"selective", "object" or "part"`},
		{c.ExoMaps == ExoMapsReleased && c.NumExo > grid, "num_exo", fmt.Sprintf(
			"≤ %d with exo_maps: released, which takes exocentric image n's map from row n of the %d×%d patch grid of crop_size %d; "+
				"got %d (lower num_exo, raise crop_size, or use exo_maps: per-image)", grid, grid, grid, c.CropSize, c.NumExo)},
		{c.BatchSize*(c.NumExo+1)*c.CropSize*c.CropSize > MaxStepPixels, "batch_size", fmt.Sprintf(
			"batch_size × (num_exo + 1) × crop_size² ≤ %d pixels per step; got %d × %d × %d² = %d (lower one of them)",
			MaxStepPixels, c.BatchSize, c.NumExo+1, c.CropSize, c.BatchSize*(c.NumExo+1)*c.CropSize*c.CropSize)},
	} {
		if k.bad {
			return fmt.Errorf("config: %s: want %s", k.key, k.want)
		}
	}
	if err := c.LossWeights.Check(); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	if _, err := data.ParseDivide(c.Divide); err != nil {
		return fmt.Errorf("config: divide: %w", err)
	}
	if _, err := torch.ParseDevice(c.Device); err != nil {
		return fmt.Errorf("config: device: %w", err)
	}
	if _, err := train.ParseBackboneDType(c.BackboneDType); err != nil {
		return fmt.Errorf("config: backbone_dtype: %w", err)
	}
	return nil
}
