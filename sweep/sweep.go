// Package sweep runs grids of trainings: every combination of the values given for some config
// keys (`affgd sweep --set alpha=0.4,0.5 --set kmeans_k=2,3`) as its own resumable `affgd train`
// process, a few at a time (one per device slot), and tabulates and plots their results. It can
// also write the same points as a Slurm job array, for grids larger than one machine.
//
// A sweep folder holds sweep.json (the grid: the base configuration and the axes), configs/
// (one training config per point), runs/ (one out_dir per point, with the point's train.log) and
// the results: sweep.csv, sweep.md and sweep.png.
package sweep

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/affgd/affgd/internal/atomicfile"
	"github.com/affgd/affgd/trainer"
)

// Files and folders of a sweep folder.
const (
	GridFile   = "sweep.json"
	CSVFile    = "sweep.csv"
	TableFile  = "sweep.md"
	PlotFile   = "sweep.png"
	ConfigsDir = "configs"
	RunsDir    = "runs"
	LogName    = "train.log" // in each point's out_dir: the train process's output
)

// machineKeys may differ between the points' configs and between reruns of a sweep: they change
// where and how fast a run computes, not what (trainer's --resume accepts them changed).
var machineKeys = []string{"device", "threads", "workers", "prefetch"}

// Axis is one swept key and its values, in the order given.
type Axis struct {
	Key    string   `json:"key"`
	Values []string `json:"values"`
}

// ParseAxis reads KEY=V1,V2,... (a --set flag). The key is a config key (loss_weights.pixel
// for a weight); an unknown key lists the valid ones.
func ParseAxis(s string) (Axis, error) {
	key, vals, ok := strings.Cut(s, "=")
	key = strings.TrimSpace(key)
	if !ok || key == "" || vals == "" {
		return Axis{}, fmt.Errorf("--set %q: want KEY=VALUE[,VALUE...], e.g. alpha=0.4,0.5", s)
	}
	if !slices.Contains(trainer.SettableKeys(), key) {
		return Axis{}, fmt.Errorf("--set %s: unknown key %q (valid keys: %s)", s, key, strings.Join(trainer.SettableKeys(), ", "))
	}
	switch key {
	case "out_dir":
		return Axis{}, fmt.Errorf("--set %s: out_dir is set by the sweep (DIR/%s/POINT)", s, RunsDir)
	case "device":
		return Axis{}, fmt.Errorf("--set %s: devices are slots, not a grid key: use --devices", s)
	}
	a := Axis{Key: key}
	for _, v := range strings.Split(vals, ",") {
		v = strings.TrimSpace(v)
		if v == "" {
			return Axis{}, fmt.Errorf("--set %s: an empty value", s)
		}
		if slices.Contains(a.Values, v) {
			return Axis{}, fmt.Errorf("--set %s: value %s given twice", s, v)
		}
		a.Values = append(a.Values, v)
	}
	return a, nil
}

// Point is one training of the grid.
type Point struct {
	Index  int
	Values []string // one per axis
	Name   string   // folder name: key=value pairs joined by ','
	Config trainer.Config
}

// Label is the point as the user wrote it: "alpha=0.4 kmeans_k=2".
func (p Point) Label(axes []Axis) string {
	parts := make([]string, len(axes))
	for i, a := range axes {
		parts[i] = a.Key + "=" + p.Values[i]
	}
	return strings.Join(parts, " ")
}

// Plan is a grid of points in a sweep folder.
type Plan struct {
	Dir    string
	Base   trainer.Config
	Axes   []Axis
	Points []Point // every combination, the first axis varying slowest
}

// NewPlan makes the grid of base over axes in dir. Every point's configuration is checked
// (trainer.Config.Validate) before anything runs; an error names the point.
func NewPlan(base trainer.Config, axes []Axis, dir string) (*Plan, error) {
	if len(axes) == 0 {
		return nil, errors.New("no --set: give at least one KEY=V1,V2,... to sweep")
	}
	for i, a := range axes {
		for _, b := range axes[:i] {
			if a.Key == b.Key {
				return nil, fmt.Errorf("--set %s given twice", a.Key)
			}
		}
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("--out %s: %w", dir, err)
	}
	// Paths absolute (from the working directory, as train reads them), so the points run from
	// any folder (a Slurm job's) and a moved working directory is not another grid.
	for _, f := range []*string{&base.DataRoot, &base.DINO, &base.CLIP, &base.Vocab, &base.Init} {
		if *f != "" {
			if *f, err = filepath.Abs(*f); err != nil {
				return nil, err
			}
		}
	}
	p := &Plan{Dir: abs, Base: base, Axes: axes}
	names := map[string]bool{}
	idx := make([]int, len(axes))
	for {
		pt := Point{Index: len(p.Points), Config: base}
		var parts []string
		for i, a := range axes {
			v := a.Values[idx[i]]
			pt.Values = append(pt.Values, v)
			if err := pt.Config.Set(a.Key, v); err != nil {
				return nil, fmt.Errorf("--set %s: %w", a.Key, err)
			}
			parts = append(parts, a.Key+"="+safeName(v))
		}
		pt.Name = strings.Join(parts, ",")
		if names[pt.Name] {
			pt.Name = fmt.Sprintf("%03d-%s", pt.Index, pt.Name)
		}
		names[pt.Name] = true
		pt.Config.OutDir = p.RunDir(pt)
		if err := pt.Config.Validate(); err != nil {
			return nil, fmt.Errorf("point %s: %w", pt.Label(axes), err)
		}
		p.Points = append(p.Points, pt)
		// Next combination, the last axis fastest.
		i := len(axes) - 1
		for ; i >= 0; i-- {
			if idx[i]++; idx[i] < len(axes[i].Values) {
				break
			}
			idx[i] = 0
		}
		if i < 0 {
			break
		}
	}
	return p, nil
}

// safeName keeps a value usable as part of a folder name.
func safeName(v string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("._+-", r) {
			return r
		}
		return '_'
	}, v)
}

// ConfigPath is the training config file of a point.
func (p *Plan) ConfigPath(pt Point) string { return filepath.Join(p.Dir, ConfigsDir, pt.Name+".yaml") }

// RunDir is a point's out_dir.
func (p *Plan) RunDir(pt Point) string { return filepath.Join(p.Dir, RunsDir, pt.Name) }

// Command is the train command of a point, without --resume: bin train --config CONFIG.
func (p *Plan) Command(bin string, pt Point) []string {
	return []string{bin, "train", "--config", p.ConfigPath(pt)}
}

// grid is sweep.json: what makes two sweeps the same grid.
type grid struct {
	Axes []Axis `json:"axes"`
	Base string `json:"base"` // the base configuration (YAML), machine keys cleared
}

func (p *Plan) grid() grid {
	b := p.Base
	b.OutDir, b.Device, b.Threads, b.Workers, b.Prefetch = "", "", 0, 0, 0
	return grid{Axes: p.Axes, Base: string(b.YAML())}
}

// Prepare creates the sweep folder with sweep.json and every point's config, or checks that an
// existing folder holds this grid: a folder of another grid is an error naming the keys that
// differ. device, threads, workers and prefetch may differ. Configs are written with the base
// configuration's device (Run rewrites a point's for its slot).
func (p *Plan) Prepare() error {
	if err := os.MkdirAll(filepath.Join(p.Dir, ConfigsDir), 0o755); err != nil {
		return fmt.Errorf("--out: %w", err)
	}
	want := p.grid()
	path := filepath.Join(p.Dir, GridFile)
	if raw, err := os.ReadFile(path); err == nil {
		var have grid
		if err := json.Unmarshal(raw, &have); err != nil {
			return fmt.Errorf("%s: unreadable (%v): not a sweep folder of this version; choose another --out", path, err)
		}
		if diff := gridDiff(have, want); len(diff) > 0 {
			return fmt.Errorf("%s holds a sweep of another grid (it differs in %s): choose another --out, or rerun with that sweep's --config and --set",
				p.Dir, strings.Join(diff, ", "))
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return err
	} else {
		raw, _ := json.MarshalIndent(want, "", "  ")
		if err := atomicfile.WriteBytes(path, append(raw, '\n')); err != nil {
			return err
		}
	}
	for _, pt := range p.Points {
		if err := p.writeConfig(pt, pt.Config.Device); err != nil {
			return err
		}
	}
	return nil
}

// gridDiff names the keys in which two grids differ: swept keys whose values (or presence)
// differ, and base-configuration keys.
func gridDiff(a, b grid) []string {
	var keys []string
	add := func(k string) {
		if !slices.Contains(keys, k) {
			keys = append(keys, k)
		}
	}
	vals := func(g grid) map[string][]string {
		m := map[string][]string{}
		for _, ax := range g.Axes {
			m[ax.Key] = ax.Values
		}
		return m
	}
	va, vb := vals(a), vals(b)
	for _, g := range [][]Axis{a.Axes, b.Axes} {
		for _, ax := range g {
			if !slices.Equal(va[ax.Key], vb[ax.Key]) {
				add("--set " + ax.Key)
			}
		}
	}
	if len(keys) == 0 && !slices.EqualFunc(a.Axes, b.Axes, func(x, y Axis) bool { return x.Key == y.Key }) {
		add("the order of --set")
	}
	ca, errA := trainer.ParseConfig([]byte(a.Base))
	cb, errB := trainer.ParseConfig([]byte(b.Base))
	if errA != nil || errB != nil {
		add("the base configuration (unreadable)")
		return keys
	}
	for _, k := range ca.Diff(cb) {
		if !slices.Contains(machineKeys, k) {
			add(k)
		}
	}
	return keys
}

// writeConfig writes a point's training config with the given device.
func (p *Plan) writeConfig(pt Point, device string) error {
	c := pt.Config
	c.Device = device
	return atomicfile.WriteBytes(p.ConfigPath(pt), c.YAML())
}
