package train

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"os"
	"slices"
	"strings"

	"github.com/affgd/affgd/torch"
	"github.com/affgd/affgd/torch/nn"
	"github.com/affgd/affgd/torch/optim"
	"github.com/affgd/affgd/torch/ptfile"
)

// State is what resuming a training run needs besides the weights [SaveState] writes: where the
// run stands, the random generators' states, the best figures so far, the log and the run's
// configuration.
type State struct {
	Epoch     int    // the epoch in progress (0-based)
	NextBatch int    // index within Epoch of the next batch to train on
	Step      int    // optimizer steps taken since the start of the run
	Seed      uint64 // the run's seed
	// Best holds the best validation figures so far by metric name (+Inf and NaN are kept).
	Best map[string]float64
	// RNG holds generator states by name, as [torch.Generator.State] returns them (the bytes of
	// its uint8 tensor); see [GeneratorState] and [RestoreGenerator].
	RNG map[string][]byte
	// Log is the run's log so far; Config is the run's configuration file (YAML) as given, so a
	// resume with another configuration can be refused ([State.CheckConfig]).
	Log, Config []byte
}

// stateFormat and stateVersion identify a file written by SaveState.
const (
	stateFormat  = "affgd-train-state"
	stateVersion = 1
)

// stateMeta is the "meta" entry of a state file (JSON in a uint8 tensor). Floating-point values
// are stored as float64 tensors instead, so that they come back bit for bit (JSON has no NaN or
// infinities).
type stateMeta struct {
	Format    string       `json:"format"`
	Version   int          `json:"version"`
	Epoch     int          `json:"epoch"`
	NextBatch int          `json:"next_batch"`
	Step      int          `json:"step"`
	Seed      uint64       `json:"seed"`
	Classes   int64        `json:"classes"`
	Groups    []groupNames `json:"groups"`
	Scheduler *schedMeta   `json:"scheduler,omitempty"`
}

type groupNames struct {
	Name   string   `json:"name"`
	Params []string `json:"params"`
}

type schedMeta struct {
	LastEpoch int `json:"last_epoch"`
	StepSize  int `json:"step_size"`
}

// Entry names and prefixes of a state file.
const (
	keyMeta     = "meta"
	keyConfig   = "config"
	keyLog      = "log"
	keyLR       = "lr"          // float64 (groups): every group's current learning rate
	keyGamma    = "sched.gamma" // float64 scalar, with a scheduler only
	preHead     = "head."
	preMomentum = "momentum."
	preBest     = "best."
	preRNG      = "rng."
)

// SaveState writes, atomically (see [SaveCheckpoint]) and in one torch.save file at path, what
// resuming needs besides the frozen backbones: the head's parameters and buffers ("head.<name>",
// the released names), opt's momentum buffers by parameter name ("momentum.<name>", for the
// parameters that have one), every group's learning rate ("lr"), the scheduler's position and
// s. sched may be nil (no scheduler). Every parameter of opt must be one of m's head.
//
// The file is a plain state dict that torch.load reads: meta is a uint8 tensor of JSON, config
// and log are uint8 tensors of the raw bytes, best.<metric> and rng.<name> tensors hold s.Best and
// s.RNG.
func SaveState(path string, m *Model, opt *optim.SGD, sched *optim.StepLR, s State) error {
	fail := func(err error) error { return fmt.Errorf("train: state %s not written: %w", path, err) }
	if m == nil || m.Head == nil || opt == nil {
		return fail(fmt.Errorf("a model with a head and an optimizer are required"))
	}
	if sched != nil && sched.Opt != opt {
		return fail(fmt.Errorf("the scheduler drives another optimizer"))
	}
	names, err := paramNames(m, opt)
	if err != nil {
		return fail(err)
	}
	meta := stateMeta{Format: stateFormat, Version: stateVersion, Epoch: s.Epoch, NextBatch: s.NextBatch,
		Step: s.Step, Seed: s.Seed, Classes: m.Head.K}
	lrs := make([]float64, len(opt.Groups))
	for gi, g := range opt.Groups {
		meta.Groups = append(meta.Groups, groupNames{Name: g.Name, Params: names[gi]})
		lrs[gi] = g.LR
	}
	raw := []ptfile.Entry{{Name: keyLR, Tensor: float64s(lrs, int64(len(lrs)))}}
	if sched != nil {
		meta.Scheduler = &schedMeta{LastEpoch: sched.LastEpoch, StepSize: sched.StepSize}
		raw = append(raw, ptfile.Entry{Name: keyGamma, Tensor: float64s([]float64{sched.Gamma})})
	}
	js, err := json.Marshal(meta)
	if err != nil {
		return fail(err)
	}
	raw = append(raw, ptfile.Entry{Name: keyMeta, Tensor: uint8s(js)},
		ptfile.Entry{Name: keyConfig, Tensor: uint8s(s.Config)}, ptfile.Entry{Name: keyLog, Tensor: uint8s(s.Log)})
	for _, k := range slices.Sorted(maps.Keys(s.Best)) {
		raw = append(raw, ptfile.Entry{Name: preBest + k, Tensor: float64s([]float64{s.Best[k]})})
	}
	for _, k := range slices.Sorted(maps.Keys(s.RNG)) {
		raw = append(raw, ptfile.Entry{Name: preRNG + k, Tensor: uint8s(s.RNG[k])})
	}
	var named []nn.Named
	named = append(named, nn.Prefixed(strings.TrimSuffix(preHead, "."), m.Head)...)
	for gi, bufs := range opt.MomentumBuffers() {
		for pi, b := range bufs {
			if b != nil {
				named = append(named, nn.Named{Name: preMomentum + names[gi][pi], Tensor: b})
			}
		}
	}
	return writeTensors(path, "state", named, raw)
}

// LoadState reads a file written by [SaveState] into m's head, opt (momentum buffers and
// learning rates) and sched (its position; may be nil when the file has none), and returns the
// run's State. Everything is checked before anything changes: the file must be a state file,
// the head must have the same classes and shapes, opt the same groups holding the same head
// parameters, sched the same step size and decay. Errors name the file and what differs.
// Comparing the configuration is left to the caller ([State.CheckConfig]).
func LoadState(path string, m *Model, opt *optim.SGD, sched *optim.StepLR) (State, error) {
	var s State
	err := load(path, m, opt, sched, &s)
	if err != nil {
		return State{}, fmt.Errorf("train: resume from %s: %w", path, err)
	}
	return s, nil
}

func load(path string, m *Model, opt *optim.SGD, sched *optim.StepLR, s *State) error {
	if m == nil || m.Head == nil || opt == nil {
		return fmt.Errorf("a model with a head and an optimizer are required")
	}
	if sched != nil && sched.Opt != opt {
		return fmt.Errorf("the scheduler drives another optimizer")
	}
	if _, err := os.Stat(path); err != nil {
		return err
	}
	entries, err := ptfile.Read(path)
	if err != nil {
		return fmt.Errorf("not a training state file: %w", err)
	}
	file := map[string]*ptfile.Tensor{}
	for _, e := range entries {
		file[e.Name] = e.Tensor
	}
	mt, ok := file[keyMeta]
	if !ok {
		return fmt.Errorf("not a training state file (no %q entry; a model checkpoint is loaded with train.Load, a state file is written by train.SaveState)", keyMeta)
	}
	var meta stateMeta
	if mt.DType != ptfile.Uint8 || len(mt.Shape) != 1 {
		return fmt.Errorf("entry %q is %s%v, want a uint8 vector of JSON", keyMeta, mt.DType, mt.Shape)
	}
	dec := json.NewDecoder(bytes.NewReader(mt.Data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&meta); err != nil || meta.Format != stateFormat {
		return fmt.Errorf("entry %q is not an affgd training state header (%v)", keyMeta, err)
	}
	if meta.Version != stateVersion {
		return fmt.Errorf("state format version %d; this affgd reads version %d", meta.Version, stateVersion)
	}
	if meta.Classes != m.Head.K {
		return fmt.Errorf("the state's head has %d classes, the model's %d (another split?)", meta.Classes, m.Head.K)
	}

	// Every entry must be known.
	used := map[string]bool{keyMeta: true, keyConfig: true, keyLog: true, keyLR: true}
	var unknown []string
	for _, e := range entries {
		n := e.Name
		if !used[n] && !strings.HasPrefix(n, preHead) && !strings.HasPrefix(n, preMomentum) && !strings.HasPrefix(n, preBest) &&
			!strings.HasPrefix(n, preRNG) && !(n == keyGamma && meta.Scheduler != nil) {
			unknown = append(unknown, n)
		}
	}
	if len(unknown) > 0 {
		return fmt.Errorf("unexpected entries %q", unknown)
	}

	// The optimizer: same groups, same parameters, by name.
	names, err := paramNames(m, opt)
	if err != nil {
		return err
	}
	if len(meta.Groups) != len(opt.Groups) {
		return fmt.Errorf("the state has %d optimizer parameter groups, the optimizer %d", len(meta.Groups), len(opt.Groups))
	}
	where := map[string][2]int{}
	for gi, g := range opt.Groups {
		saved := meta.Groups[gi]
		if saved.Name != g.Name || strings.Join(saved.Params, ",") != strings.Join(names[gi], ",") {
			return fmt.Errorf("optimizer group %d is %q with parameters %v in the state, %q with %v now", gi, saved.Name, saved.Params, g.Name, names[gi])
		}
		for pi, n := range names[gi] {
			where[n] = [2]int{gi, pi}
		}
	}
	lrs, err := readFloat64s(file, keyLR, int64(len(opt.Groups)))
	if err != nil {
		return err
	}
	var gamma []float64
	switch {
	case sched == nil && meta.Scheduler != nil:
		return fmt.Errorf("the state has a learning-rate scheduler position (step size %d) and no scheduler was given", meta.Scheduler.StepSize)
	case sched != nil && meta.Scheduler == nil:
		return fmt.Errorf("the state was saved without a learning-rate scheduler")
	case sched != nil:
		if gamma, err = readFloat64s(file, keyGamma, -1); err != nil {
			return err
		}
		if meta.Scheduler.StepSize != sched.StepSize || gamma[0] != sched.Gamma {
			return fmt.Errorf("the scheduler steps every %d epochs by %g in the state, every %d by %g now",
				meta.Scheduler.StepSize, gamma[0], sched.StepSize, sched.Gamma)
		}
	}

	// Host-side values.
	s.Epoch, s.NextBatch, s.Step, s.Seed = meta.Epoch, meta.NextBatch, meta.Step, meta.Seed
	if s.Config, err = readBytes(file, keyConfig); err != nil {
		return err
	}
	if s.Log, err = readBytes(file, keyLog); err != nil {
		return err
	}
	for _, e := range entries {
		switch {
		case strings.HasPrefix(e.Name, preBest):
			v, err := readFloat64s(file, e.Name, -1)
			if err != nil {
				return err
			}
			if s.Best == nil {
				s.Best = map[string]float64{}
			}
			s.Best[strings.TrimPrefix(e.Name, preBest)] = v[0]
		case strings.HasPrefix(e.Name, preRNG):
			b, err := readBytes(file, e.Name)
			if err != nil {
				return err
			}
			if s.RNG == nil {
				s.RNG = map[string][]byte{}
			}
			s.RNG[strings.TrimPrefix(e.Name, preRNG)] = b
		}
	}

	// Tensors: check the momentum buffers, then load the head (which checks every key and shape
	// before it copies anything), then set the optimizer. Nothing fails after the head is loaded.
	var bad error
	err = torch.WithScope(func(*torch.Scope) {
		bufs := make([][]*torch.Tensor, len(opt.Groups))
		for gi, g := range opt.Groups {
			bufs[gi] = make([]*torch.Tensor, len(g.Params))
		}
		head := map[string]*torch.Tensor{}
		for _, e := range entries {
			switch {
			case strings.HasPrefix(e.Name, preHead):
				head[strings.TrimPrefix(e.Name, preHead)] = fromFile(e)
			case strings.HasPrefix(e.Name, preMomentum):
				n := strings.TrimPrefix(e.Name, preMomentum)
				at, ok := where[n]
				if !ok {
					bad = fmt.Errorf("momentum buffer %q is for a parameter the optimizer does not have", n)
					return
				}
				p := opt.Groups[at[0]].Params[at[1]]
				if want := p.Shape(); !slices.Equal(want, e.Tensor.Shape) || e.Tensor.DType.String() != p.DType().String() {
					bad = fmt.Errorf("momentum buffer %q is %s%v, the parameter %s%v", n, e.Tensor.DType, e.Tensor.Shape, p.DType(), want)
					return
				}
				bufs[at[0]][at[1]] = fromFile(e) // SetMomentumBuffers moves it to the parameter's device
			}
		}
		if bad = nn.Load(m.Head, head, "the state's head", nn.LoadOptions{}); bad != nil {
			return
		}
		if bad = opt.SetMomentumBuffers(bufs); bad != nil {
			return
		}
		for gi := range opt.Groups {
			opt.Groups[gi].LR = lrs[gi]
		}
		if sched != nil {
			sched.LastEpoch = meta.Scheduler.LastEpoch
		}
	})
	if err != nil {
		return err
	}
	return bad
}

// ReadStateConfig returns the configuration a file written by [SaveState] was saved with
// ([State.Config]) without building or loading anything, so that a resume with another run's
// state can be refused before the model loads.
func ReadStateConfig(path string) ([]byte, error) {
	fail := func(err error) ([]byte, error) { return nil, fmt.Errorf("train: state %s: %w", path, err) }
	entries, err := ptfile.Read(path)
	if err != nil {
		return fail(fmt.Errorf("not a training state file: %w", err))
	}
	file := map[string]*ptfile.Tensor{}
	for _, e := range entries {
		file[e.Name] = e.Tensor
	}
	js, err := readBytes(file, keyMeta)
	if err != nil {
		return fail(fmt.Errorf("not a training state file: %w", err))
	}
	var meta struct {
		Format  string `json:"format"`
		Version int    `json:"version"`
	}
	if err := json.Unmarshal(js, &meta); err != nil || meta.Format != stateFormat {
		return fail(fmt.Errorf("entry %q is not an affgd training state header (%v)", keyMeta, err))
	}
	if meta.Version != stateVersion {
		return fail(fmt.Errorf("state format version %d; this affgd reads version %d", meta.Version, stateVersion))
	}
	cfg, err := readBytes(file, keyConfig)
	if err != nil {
		return fail(err)
	}
	return cfg, nil
}

// CheckConfig returns an error unless config is the configuration the state was saved with,
// byte for byte, naming the first line that differs.
func (s State) CheckConfig(config []byte) error {
	if bytes.Equal(s.Config, config) {
		return nil
	}
	a, b := strings.Split(string(s.Config), "\n"), strings.Split(string(config), "\n")
	for i := 0; i < len(a) && i < len(b); i++ {
		if a[i] != b[i] {
			return fmt.Errorf("train: the run was saved with another configuration: line %d is %q there, %q now", i+1, a[i], b[i])
		}
	}
	return fmt.Errorf("train: the run was saved with another configuration: %d lines there, %d now", len(a), len(b))
}

// GeneratorState returns g's state as the bytes [State.RNG] keeps.
func GeneratorState(g *torch.Generator) ([]byte, error) {
	var b []byte
	err := torch.WithScope(func(*torch.Scope) { b = g.State().Bytes() })
	return b, err
}

// RestoreGenerator sets g's state from bytes returned by [GeneratorState].
func RestoreGenerator(g *torch.Generator, state []byte) error {
	return torch.WithScope(func(*torch.Scope) {
		g.SetState(torch.FromBytes(state, torch.Uint8, []int64{int64(len(state))}, torch.CPU))
	})
}

// paramNames returns the head parameter name of every parameter of opt, by group.
func paramNames(m *Model, opt *optim.SGD) ([][]string, error) {
	byPtr := map[*torch.Tensor]string{}
	for _, n := range nn.Parameters(m.Head) {
		byPtr[n.Tensor] = n.Name
	}
	out := make([][]string, len(opt.Groups))
	for gi, g := range opt.Groups {
		for pi, p := range g.Params {
			n, ok := byPtr[p]
			if !ok {
				return nil, fmt.Errorf("optimizer group %d (%s) parameter %d is not a parameter of the model's head", gi, g.Name, pi)
			}
			out[gi] = append(out[gi], n)
		}
	}
	return out, nil
}

func fromFile(e ptfile.Entry) *torch.Tensor {
	dt, ok := torchDType(e.Tensor.DType)
	if !ok {
		torch.Fail("resume", "entry %q has unsupported dtype %s", e.Name, e.Tensor.DType)
	}
	return torch.FromBytes(e.Tensor.Data, dt, e.Tensor.Shape, torch.CPU)
}

func readBytes(file map[string]*ptfile.Tensor, key string) ([]byte, error) {
	t, ok := file[key]
	if !ok {
		return nil, fmt.Errorf("no %q entry", key)
	}
	if t.DType != ptfile.Uint8 || len(t.Shape) != 1 {
		return nil, fmt.Errorf("entry %q is %s%v, want a uint8 vector", key, t.DType, t.Shape)
	}
	return t.Data, nil
}

// readFloat64s reads a float64 entry of n elements (n < 0: a scalar).
func readFloat64s(file map[string]*ptfile.Tensor, key string, n int64) ([]float64, error) {
	t, ok := file[key]
	if !ok {
		return nil, fmt.Errorf("no %q entry", key)
	}
	want := []int64{}
	if n >= 0 {
		want = []int64{n}
	}
	if t.DType != ptfile.Float64 || !slices.Equal(t.Shape, want) {
		return nil, fmt.Errorf("entry %q is %s%v, want float64%v", key, t.DType, t.Shape, want)
	}
	out := make([]float64, len(t.Data)/8)
	for i := range out {
		out[i] = math.Float64frombits(binary.LittleEndian.Uint64(t.Data[8*i:]))
	}
	return out, nil
}

func float64s(v []float64, shape ...int64) *ptfile.Tensor {
	b := make([]byte, 8*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint64(b[8*i:], math.Float64bits(x))
	}
	return &ptfile.Tensor{DType: ptfile.Float64, Shape: append([]int64{}, shape...), Data: b}
}

func uint8s(b []byte) *ptfile.Tensor {
	return &ptfile.Tensor{DType: ptfile.Uint8, Shape: []int64{int64(len(b))}, Data: append([]byte{}, b...)}
}
