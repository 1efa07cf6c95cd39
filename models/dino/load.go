package dino

import (
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"

	"github.com/affgd/affgd/torch"
	"github.com/affgd/affgd/torch/nn"
)

// IgnoredPrefixes lists the entries of a DINO state dict that [Load] accepts and leaves unused:
// DINO's projection head (head.mlp.*, head.last_layer.* in its training checkpoints) and a linear
// classifier head (head.weight, head.bias). Every other key must be a parameter of the model.
var IgnoredPrefixes = []string{"head."}

// stripPrefixes are the wrappers DINO's utils.load_pretrained_weights removes from keys:
// DistributedDataParallel's "module." and the multi-crop wrapper's "backbone.".
var stripPrefixes = []string{"module.", "backbone."}

// SelectiveCLPrefix is where the released SelectiveCL checkpoint (model.state_dict() of its Net)
// keeps the DINO backbone.
const SelectiveCLPrefix = "vit_model"

type loadOptions struct {
	heads  int64
	key    string
	device torch.Device
}

// LoadOption tunes [Load].
type LoadOption func(*loadOptions)

// WithHeads sets the number of attention heads, which the weights do not record (default
// EmbedDim/64).
func WithHeads(n int64) LoadOption { return func(o *loadOptions) { o.heads = n } }

// WithKey loads the state dict found under key in the file, e.g. "teacher" (or "student") in
// DINO's full training checkpoints. Without it, a file whose keys start with "vit_model." (the
// released SelectiveCL checkpoint) is read from there, and any other file from its top level.
func WithKey(key string) LoadOption { return func(o *loadOptions) { o.key = key } }

// OnDevice places the weights on d (default the CPU).
func OnDevice(d torch.Device) LoadOption { return func(o *loadOptions) { o.device = d } }

// Load reads a DINO ViT from a checkpoint file: a torch.save state dict (zip or legacy format)
// as DINO publishes them, with keys optionally wrapped in "module." and/or "backbone." (stripped
// as DINO's load_pretrained_weights does), DINO's full training checkpoint (choose "teacher" or
// "student" with [WithKey]), or the released SelectiveCL checkpoint (keys under "vit_model.",
// the file's other entries belong to the rest of that model and are not read). The architecture
// comes from the weights (see [Config]); entries under [IgnoredPrefixes] are skipped; every
// other key must exist in the model with the same shape, and every parameter must be present.
// float16 weights are cast to float32. Errors name the file, the keys and the shapes.
func Load(path string, opts ...LoadOption) (*ViT, error) {
	f, err := nn.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("dino: %w", err)
	}
	defer func() {
		for _, t := range f.Tensors {
			t.Free()
		}
	}()
	return LoadFile(f, opts...)
}

// LoadFile is [Load] from a checkpoint already read with nn.ReadFile (so one file holding several
// models is read once); the weights are copied, the file's tensors stay the caller's.
func LoadFile(f *nn.File, opts ...LoadOption) (*ViT, error) {
	o := loadOptions{device: torch.CPU}
	for _, fn := range opts {
		fn(&o)
	}
	path := f.Path
	sd, err := selectStateDict(f, o.key)
	if err != nil {
		return nil, err
	}
	cfg, err := InferConfig(sd, o.heads)
	if err != nil {
		return nil, inFile(path, err)
	}
	m, err := alloc(cfg, []torch.Option{o.device})
	if err != nil {
		return nil, inFile(path, err)
	}
	ignore := func(k string) bool {
		for _, p := range IgnoredPrefixes {
			if strings.HasPrefix(k, p) {
				return true
			}
		}
		return false
	}
	if err := nn.Load(m, sd, path, nn.LoadOptions{Ignore: ignore}); err != nil {
		m.Free()
		return nil, fmt.Errorf("dino: %w", err)
	}
	return m, nil
}

// inFile names path in err, a "dino: ..." error.
func inFile(path string, err error) error {
	return fmt.Errorf("dino: %s: %s", path, strings.TrimPrefix(err.Error(), "dino: "))
}

// selectStateDict picks the DINO state dict out of a checkpoint file and strips DINO's wrapper
// prefixes.
func selectStateDict(f *nn.File, key string) (map[string]*torch.Tensor, error) {
	prefix := ""
	switch {
	case key != "":
		prefix = key + "."
	case hasPrefix(f.Names, SelectiveCLPrefix+"."):
		prefix = SelectiveCLPrefix + "."
	}
	sd := map[string]*torch.Tensor{}
	for _, name := range f.Names {
		if !strings.HasPrefix(name, prefix) {
			continue
		}
		k := strings.TrimPrefix(name, prefix)
		for stripped := true; stripped; {
			stripped = false
			for _, p := range stripPrefixes {
				if strings.HasPrefix(k, p) {
					k, stripped = strings.TrimPrefix(k, p), true
				}
			}
		}
		if other, dup := sd[k]; dup && other != f.Tensors[name] {
			return nil, fmt.Errorf("dino: %s: two entries load into %q (wrapper prefixes %v stripped)", f.Path, k, stripPrefixes)
		}
		sd[k] = f.Tensors[name]
	}
	if len(sd) == 0 {
		return nil, fmt.Errorf("dino: %s: no entries under %q", f.Path, key)
	}
	if _, ok := sd["patch_embed.proj.weight"]; !ok {
		return nil, notDINO(f, prefix)
	}
	return sd, nil
}

func hasPrefix(names []string, p string) bool {
	for _, n := range names {
		if strings.HasPrefix(n, p) {
			return true
		}
	}
	return false
}

// notDINO explains why a file holds no DINO ViT: a CLIP file, a checkpoint whose backbone is
// nested under a key to choose, or something else.
func notDINO(f *nn.File, prefix string) error {
	var nested []string
	seen := map[string]bool{}
	for _, n := range f.Names {
		if i := strings.Index(n, ".patch_embed.proj.weight"); i > 0 {
			top := strings.SplitN(n, ".", 2)[0]
			if !seen[top] {
				seen[top] = true
				nested = append(nested, top)
			}
		}
	}
	sort.Strings(nested)
	msg := fmt.Sprintf("dino: %s is not a DINO ViT state dict: no key %spatch_embed.proj.weight", f.Path, prefix)
	switch {
	case len(nested) > 0 && prefix == "":
		return fmt.Errorf("%s; the file holds DINO backbones under %s: choose one with dino.WithKey", msg, strings.Join(nested, ", "))
	case hasPrefix(f.Names, "visual.") || hasPrefix(f.Names, "token_embedding."):
		return fmt.Errorf("%s; its keys (%s) are those of a CLIP model", msg, sample(f.Names))
	default:
		return fmt.Errorf("%s; its keys start %s", msg, sample(f.Names))
	}
}

// sample lists the first few names.
func sample(names []string) string {
	const n = 4
	if len(names) <= n {
		return strings.Join(names, ", ")
	}
	return strings.Join(names[:n], ", ") + ", ..."
}

// InferConfig reads the architecture from a DINO state dict (keys without wrapper prefixes).
// heads sets the head count (0: EmbedDim/64, see [Config]).
func InferConfig(sd map[string]*torch.Tensor, heads int64) (Config, error) {
	shape := func(k string, dims int) ([]int64, error) {
		t, ok := sd[k]
		if !ok {
			return nil, fmt.Errorf("no key %s", k)
		}
		s := t.Shape()
		if len(s) != dims {
			return nil, fmt.Errorf("%s has shape %v, expected %d dimensions", k, s, dims)
		}
		return s, nil
	}
	var cfg Config
	err := torch.Try(func() {
		pe, err := shape("patch_embed.proj.weight", 4)
		if err != nil {
			torch.Fail("config", "%v", err)
		}
		if pe[2] != pe[3] {
			torch.Fail("config", "patch_embed.proj.weight has shape %v: the patch is not square", pe)
		}
		cfg = Config{EmbedDim: pe[0], InChans: pe[1], PatchSize: pe[2], Eps: 1e-6, Heads: heads}
		if heads == 0 {
			cfg.Heads = max(cfg.EmbedDim/64, 1)
		}
		for k := range sd {
			if rest, ok := strings.CutPrefix(k, "blocks."); ok {
				i, err := strconv.ParseInt(strings.SplitN(rest, ".", 2)[0], 10, 64)
				if err == nil && i+1 > cfg.Depth {
					cfg.Depth = i + 1
				}
			}
		}
		if cfg.Depth == 0 {
			torch.Fail("config", "no blocks.N.* keys")
		}
		pos, err := shape("pos_embed", 3)
		if err != nil {
			torch.Fail("config", "%v", err)
		}
		g := int64(math.Round(math.Sqrt(float64(pos[1] - 1))))
		if g*g != pos[1]-1 || g == 0 {
			torch.Fail("config", "pos_embed has shape %v: %d patch positions do not form a square grid", pos, pos[1]-1)
		}
		cfg.ImgSize = g * cfg.PatchSize
		fc1, err := shape("blocks.0.mlp.fc1.weight", 2)
		if err != nil {
			torch.Fail("config", "%v", err)
		}
		cfg.MLPRatio = float64(fc1[0]) / float64(cfg.EmbedDim)
		_, cfg.QKVBias = sd["blocks.0.attn.qkv.bias"]
	})
	if err != nil {
		var te *torch.Error
		if errors.As(err, &te) && te.Op == "config" {
			return Config{}, errors.New("dino: " + te.Msg)
		}
		return Config{}, err
	}
	if err := cfg.Validate(); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// WriteRandom writes a ViT of architecture cfg with random weights ([New] with a generator
// seeded with seed) to path as a torch.save state dict in DINO's published format: the keys and
// order of dino_deitsmall16_pretrain.pth, float32, which DINO's code and [Load] read.
func WriteRandom(path string, cfg Config, seed uint64) error {
	g, err := torch.NewGenerator(seed, torch.CPU)
	if err != nil {
		return fmt.Errorf("dino: %w", err)
	}
	m, err := New(cfg, g)
	if err != nil {
		return err
	}
	defer m.Free()
	if err := nn.WriteFile(path, m.NamedTensors()); err != nil {
		return fmt.Errorf("dino: write %s: %w", path, err)
	}
	return nil
}

// Free releases the model's weights now; the model must not be used afterwards.
func (m *ViT) Free() {
	for _, n := range m.NamedTensors() {
		n.Tensor.Free()
	}
	if m.compute != nil {
		m.compute.Free()
	}
}

// SetComputeDType makes Forward and Features run the backbone in dt (torch.BFloat16 or
// torch.Float16) on a converted copy of the weights, casting the float32 input images to dt and
// the outputs (keys, attention) back to float32; the saliency is computed from the float32 cast
// of the attention. torch.Float32 (the default) drops the copy. The float32 weights stay the
// model's (NamedTensors, checkpoints). This is a speed option, not parity: the features differ
// from float32 by the rounding of dt.
func (m *ViT) SetComputeDType(dt torch.DType) error {
	if m.compute != nil {
		m.compute.Free()
		m.compute = nil
	}
	switch dt {
	case torch.Float32:
		return nil
	case torch.BFloat16, torch.Float16:
	default:
		return fmt.Errorf("dino: compute dtype %s: want float32, bfloat16 or float16", dt)
	}
	c, err := alloc(m.Cfg, []torch.Option{dt, m.Device()})
	if err != nil {
		return err
	}
	if err := nn.Load(c, nn.StateDict(m), "dino weights", nn.LoadOptions{}); err != nil {
		c.Free()
		return fmt.Errorf("dino: converting the weights to %s: %w", dt, err)
	}
	m.compute = c
	return nil
}

// ComputeDType is the dtype the backbone runs in (see SetComputeDType).
func (m *ViT) ComputeDType() torch.DType {
	if m.compute != nil {
		return m.compute.ClsToken.DType()
	}
	return torch.Float32
}
