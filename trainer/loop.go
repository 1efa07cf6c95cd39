package trainer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/affgd/affgd/data"
	"github.com/affgd/affgd/discovery"
	"github.com/affgd/affgd/evaluate"
	"github.com/affgd/affgd/internal/atomicfile"
	"github.com/affgd/affgd/report"
	"github.com/affgd/affgd/torch"
	"github.com/affgd/affgd/torch/optim"
	"github.com/affgd/affgd/train"
)

// Files a run writes in its out_dir.
const (
	LastFile    = "last.pth"      // released-format state dict after the latest epoch
	BestFile    = "best.pth"      // the epoch with the lowest ree KLD so far (as the released script picks)
	StateFile   = "state.pt"      // what --resume needs: head, momentum buffers, position, history
	LogFile     = "metrics.jsonl" // one JSON object per finished epoch
	PlotFile    = "training.png"  // losses and KLD per epoch
	ConfigFile  = "config.yaml"   // the run's configuration
	LossCEEgo   = "L_ce_ego"
	LossCEExo   = "L_ce_exo"
	LossPix     = "L_pix"
	LossProto   = "L_proto"
	LossTotal   = "loss"
	headlineMap = "ree"
)

// LossNames are the logged losses in display order.
var LossNames = []string{LossCEEgo, LossCEExo, LossPix, LossProto, LossTotal}

// ErrInterrupted is returned when the context ends a run between two steps; the state needed to
// resume was saved first.
var ErrInterrupted = errors.New("training interrupted; the state is saved: run again with --resume to continue")

// StepStats are one training step's figures, for progress displays.
type StepStats struct {
	Epoch, Step, Steps int                // 0-based epoch and step; steps in the epoch
	Losses             map[string]float64 // this step's losses
	AccEgo, AccExo     float64            // running accuracies of the epoch, percent
}

// EpochLog is one line of the metrics log.
type EpochLog struct {
	Epoch             int                `json:"epoch"` // 1-based, as the released script prints it
	LR                []float64          `json:"lr"`    // per parameter group during the epoch
	Steps             int                `json:"steps"`
	Losses            map[string]float64 `json:"losses"`  // means over the epoch's steps
	AccEgo            float64            `json:"acc_ego"` // percent, weighted by batch size
	AccExo            float64            `json:"acc_exo"`
	PartLevel         int                `json:"part_level_samples"`   // samples with a reliable part (METHOD §4.7e)
	ObjectLevel       int                `json:"object_level_samples"` // samples that fell back to object level
	EmptyPixelSamples int                `json:"empty_pixel_samples"`  // METHOD §9.2, counted not trained on
	EmptyProtoRows    int                `json:"empty_proto_rows"`
	Eval              *report.Summary    `json:"eval,omitempty"`
	Best              bool               `json:"best"` // this epoch's ree KLD is the lowest so far
	Seconds           float64            `json:"seconds"`
}

// UI receives a run's progress. Every method is called from the training goroutine.
type UI interface {
	Log(msg string)
	EpochStart(epoch, epochs, steps, startStep int)
	Step(s StepStats)
	EvalStart(epoch, images int)
	EvalProgress(done, total int)
	EpochEnd(l EpochLog)
}

// progress is the resumable position of a run and the sums of the epoch in progress.
type progress struct {
	Epoch    int        `json:"epoch"`     // epoch in progress (0-based)
	NextStep int        `json:"next_step"` // first step of Epoch not yet done
	BestKLD  float64    `json:"best_kld"`  // lowest ree KLD so far (math.MaxFloat64 before the first evaluation)
	History  []EpochLog `json:"history"`   // finished epochs
	Sums     epochSums  `json:"sums"`      // of the epoch in progress
	Elapsed  float64    `json:"elapsed_s"` // seconds spent in the epoch in progress before an interruption
}

type epochSums struct {
	Steps       int                `json:"steps"`
	Losses      map[string]float64 `json:"losses"`
	Samples     int                `json:"samples"`
	CorrectEgo  int                `json:"correct_ego"`
	CorrectExo  int                `json:"correct_exo"`
	PartLevel   int                `json:"part_level"`
	ObjectLevel int                `json:"object_level"`
	EmptyPixel  int                `json:"empty_pixel"`
	EmptyProto  int                `json:"empty_proto"`
}

// Run trains as cfg says, writing checkpoints, the state, the log and the plot into cfg.OutDir.
// With resume it continues the run saved there (interrupted or finished with fewer epochs) to the
// same result an uninterrupted run would give. When ctx ends, Run saves the state after the step
// in progress and returns ErrInterrupted.
// testModelHook, set only by tests, sees the model before training starts (to inject faults).
var testModelHook func(*train.Model)

func Run(ctx context.Context, cfg Config, resume bool, ui UI) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	div, _ := data.ParseDivide(cfg.Divide)
	dev, _ := torch.ParseDevice(cfg.Device)
	if err := torch.CheckDevice(dev); err != nil {
		return fmt.Errorf("device %q: %w", cfg.Device, err)
	}
	if cfg.Threads > 0 {
		if err := torch.SetNumThreads(cfg.Threads); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(cfg.OutDir, 0o755); err != nil {
		return fmt.Errorf("out_dir: %w", err)
	}
	statePath := filepath.Join(cfg.OutDir, StateFile)
	if err := checkResume(cfg, resume, statePath); err != nil {
		return err
	}

	trainSet, err := data.OpenTrain(cfg.DataRoot, div)
	if err != nil {
		return err
	}
	testSet, err := data.OpenTest(cfg.DataRoot, div)
	if err != nil {
		return err
	}
	ui.Log(fmt.Sprintf("data: %d training items, %d test images (%s, %s)", len(trainSet.Items), len(testSet.Items), cfg.DataRoot, div))
	m, err := train.Load(train.Files{DINO: cfg.DINO, CLIP: cfg.CLIP, Head: cfg.Init, Seed: cfg.Seed, Vocab: cfg.Vocab, Divide: div, Device: dev})
	if err != nil {
		return err
	}
	m.CacheText = cfg.CacheText
	if testModelHook != nil {
		testModelHook(m)
	}
	groups := m.Head.ParamGroups(cfg.LR)
	for i := range groups {
		groups[i].Momentum, groups[i].WeightDecay = cfg.Momentum, cfg.WeightDecay
	}
	opt, err := optim.NewSGD(groups)
	if err != nil {
		return err
	}
	sched := optim.NewStepLR(opt, cfg.LRStep, cfg.LRGamma)

	p := progress{BestKLD: math.MaxFloat64}
	if resume {
		st, err := train.LoadState(statePath, m, opt, sched)
		if err != nil {
			return err
		}
		if err := json.Unmarshal(st.Log, &p); err != nil {
			return fmt.Errorf("%s: its run position is unreadable: %v", statePath, err)
		}
		ui.Log(fmt.Sprintf("resuming at epoch %d, step %d", p.Epoch+1, p.NextStep))
	} else if err := writeFileAtomic(filepath.Join(cfg.OutDir, ConfigFile), cfg.YAML()); err != nil {
		return err
	}
	disc := discovery.DefaultOptions()
	disc.Gamma1, disc.Alpha, disc.PerImageExo = cfg.Gamma1, cfg.Alpha, cfg.ExoMaps == ExoMapsPerImage

	r := &runner{cfg: cfg, m: m, opt: opt, sched: sched, dev: dev, disc: disc, ui: ui, statePath: statePath, trainSet: trainSet, testSet: testSet}
	for ; p.Epoch < cfg.Epochs; p.Epoch++ {
		if err := r.epoch(ctx, &p); err != nil {
			return err
		}
		p.NextStep, p.Sums, p.Elapsed = 0, epochSums{}, 0
	}
	return nil
}

// checkResume refuses to overwrite a run unless resuming, and to resume a run with another
// configuration (keys that only change the machine or the length of the run may differ).
func checkResume(cfg Config, resume bool, statePath string) error {
	_, err := os.Stat(statePath)
	exists := err == nil
	switch {
	case !resume && exists:
		return fmt.Errorf("%s holds a run already (%s): pass --resume to continue it, or choose another out_dir", cfg.OutDir, StateFile)
	case resume && !exists:
		return fmt.Errorf("--resume: no saved run in %s (want %s)", cfg.OutDir, statePath)
	case !resume:
		return nil
	}
	saved, err := LoadConfig(filepath.Join(cfg.OutDir, ConfigFile))
	if err != nil {
		return fmt.Errorf("--resume: %w", err)
	}
	a, b := saved, cfg
	for _, c := range []*Config{&a, &b} {
		c.Device, c.Threads, c.Workers, c.Prefetch, c.Epochs, c.TestLimit = "", 0, 0, 0, 0, 0
	}
	if d := a.Diff(b); len(d) > 0 {
		return fmt.Errorf("--resume: the configuration differs from the saved run's %s in %s (only device, threads, workers, prefetch, epochs and test_limit may change)",
			filepath.Join(cfg.OutDir, ConfigFile), strings.Join(d, ", "))
	}
	return nil
}

type runner struct {
	cfg       Config
	m         *train.Model
	opt       *optim.SGD
	sched     *optim.StepLR
	dev       torch.Device
	disc      discovery.Options
	ui        UI
	statePath string
	trainSet  *data.TrainSet
	testSet   *data.TestSet
}

// stepSeed derives the seed of one step's K-means draws from the run seed, so a resumed run draws
// what the uninterrupted one would.
func stepSeed(seed uint64, epoch, step int) uint64 {
	h := fnv.New64a()
	fmt.Fprintf(h, "affgd-kmeans/%d/%d/%d", seed, epoch, step)
	return h.Sum64() >> 1
}

func (r *runner) epoch(ctx context.Context, p *progress) error {
	cfg := r.cfg
	start := time.Now()
	lrs := r.sched.LRs()
	loader, err := data.NewTrainLoader(r.trainSet, data.LoaderOptions{
		BatchSize: cfg.BatchSize, E: cfg.NumExo, Resize: cfg.ResizeSize, Crop: cfg.CropSize,
		Workers: cfg.Workers, Prefetch: cfg.Prefetch, Seed: cfg.Seed, Epoch: p.Epoch, StartBatch: p.NextStep,
	})
	if err != nil {
		return err
	}
	defer loader.Close()
	steps := loader.Len()
	if cfg.MaxSteps > 0 && cfg.MaxSteps < steps {
		steps = cfg.MaxSteps
	}
	if p.Sums.Losses == nil {
		p.Sums.Losses = map[string]float64{}
	}
	r.ui.EpochStart(p.Epoch, cfg.Epochs, steps, p.NextStep)
	for ; p.NextStep < steps; p.NextStep++ {
		if ctx.Err() != nil {
			p.Elapsed += time.Since(start).Seconds()
			if err := r.saveState(p); err != nil {
				return fmt.Errorf("interrupted, and the state could not be saved: %w", err)
			}
			return ErrInterrupted
		}
		b, err := loader.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		st, err := r.step(b, p, steps)
		b.Release()
		if err != nil {
			return fmt.Errorf("epoch %d step %d: %w", p.Epoch+1, p.NextStep+1, err)
		}
		r.ui.Step(st)
	}
	r.sched.Step()

	l := EpochLog{Epoch: p.Epoch + 1, LR: lrs, Steps: p.Sums.Steps, Losses: map[string]float64{},
		PartLevel: p.Sums.PartLevel, ObjectLevel: p.Sums.ObjectLevel, EmptyPixelSamples: p.Sums.EmptyPixel, EmptyProtoRows: p.Sums.EmptyProto}
	for k, v := range p.Sums.Losses {
		l.Losses[k] = v / float64(max(p.Sums.Steps, 1))
	}
	if p.Sums.Samples > 0 {
		l.AccEgo = 100 * float64(p.Sums.CorrectEgo) / float64(p.Sums.Samples)
		l.AccExo = 100 * float64(p.Sums.CorrectExo) / float64(p.Sums.Samples)
	}
	n := len(r.testSet.Items)
	if cfg.TestLimit > 0 && cfg.TestLimit < n {
		n = cfg.TestLimit
	}
	r.ui.EvalStart(p.Epoch, n)
	sum, err := evaluate.Run(r.m, r.testSet, evaluate.Options{Size: cfg.CropSize, Limit: cfg.TestLimit, Workers: cfg.Workers, Device: r.dev, Progress: r.ui.EvalProgress})
	if err != nil {
		return err
	}
	l.Eval = &sum
	kld := sum.Overall[headlineMap].KLD
	if kld < p.BestKLD {
		p.BestKLD, l.Best = kld, true
	}
	l.Seconds = p.Elapsed + time.Since(start).Seconds()
	p.History = append(p.History, l)

	// Weights first, then the state that points past this epoch: a crash in between repeats the
	// epoch's end on resume instead of losing it.
	if err := train.SaveCheckpoint(filepath.Join(cfg.OutDir, LastFile), r.m); err != nil {
		return err
	}
	if l.Best {
		if err := train.SaveCheckpoint(filepath.Join(cfg.OutDir, BestFile), r.m); err != nil {
			return err
		}
	}
	next := *p
	next.Epoch, next.NextStep, next.Sums, next.Elapsed = p.Epoch+1, 0, epochSums{}, 0
	if err := r.saveState(&next); err != nil {
		return err
	}
	if err := writeLog(cfg.OutDir, p.History); err != nil {
		return err
	}
	r.ui.EpochEnd(l)
	return nil
}

// step runs one training step on a loader batch and adds its figures to the epoch's sums.
func (r *runner) step(b *data.Batch, p *progress, steps int) (StepStats, error) {
	st := StepStats{Epoch: p.Epoch, Step: p.NextStep, Steps: steps, Losses: map[string]float64{}}
	err := torch.WithScope(func(_ *torch.Scope) {
		gen, err := torch.NewGenerator(stepSeed(r.cfg.Seed, p.Epoch, p.NextStep), r.dev)
		torch.Raise(err)
		batch := train.Batch{Exo: b.Exo.To(r.dev), Ego: b.Ego.To(r.dev), Label: b.Label.To(r.dev)}
		res, err := r.m.Forward(batch, train.Options{Epoch: p.Epoch, Discovery: r.disc, Gen: gen, Tau: r.cfg.Temperature, Gamma2: r.cfg.Gamma2})
		torch.Raise(err)
		r.opt.ZeroGrad()
		loss := res.Loss.Item()
		if math.IsNaN(loss) || math.IsInf(loss, 0) {
			torch.Raise(fmt.Errorf("the loss is %v (L_ce_ego %v, L_ce_exo %v, L_pix %v, L_proto %v); the step was not applied",
				loss, res.LCeEgo.Item(), res.LCeExo.Item(), res.LPix.Item(), res.LProto.Item()))
		}
		res.Loss.Backward()
		r.opt.Step()

		for name, t := range map[string]*torch.Tensor{LossCEEgo: res.LCeEgo, LossCEExo: res.LCeExo, LossPix: res.LPix, LossProto: res.LProto} {
			st.Losses[name] = t.Item()
		}
		st.Losses[LossTotal] = loss
		labels := batch.Label
		predEgo := res.LogitsEgo.ArgmaxDim(1, false)
		predExo := res.LogitsExo.MeanDims([]int64{1}, false).ArgmaxDim(1, false)
		s := &p.Sums
		s.CorrectEgo += int(predEgo.Eq(labels).Sum().Item())
		s.CorrectExo += int(predExo.Eq(labels).Sum().Item())
		s.Samples += int(labels.Size(0))
		rel := int(res.Reliable.Sum().Item())
		s.PartLevel += rel
		s.ObjectLevel += int(labels.Size(0)) - rel
		s.EmptyPixel += res.EmptyPixelSamples
		s.EmptyProto += res.EmptyProtoRows
	})
	if err != nil {
		return st, err
	}
	s := &p.Sums
	s.Steps++
	for k, v := range st.Losses {
		s.Losses[k] += v
	}
	st.AccEgo = 100 * float64(s.CorrectEgo) / float64(s.Samples)
	st.AccExo = 100 * float64(s.CorrectExo) / float64(s.Samples)
	return st, nil
}

func (r *runner) saveState(p *progress) error {
	meta, err := json.Marshal(p)
	if err != nil {
		return err
	}
	return train.SaveState(r.statePath, r.m, r.opt, r.sched, train.State{Epoch: p.Epoch, NextBatch: p.NextStep, Seed: r.cfg.Seed, Log: meta, Config: r.cfg.YAML()})
}

// writeLog rewrites the metrics log from the history (so a resumed run's log has each epoch
// once) and redraws the plot.
func writeLog(dir string, history []EpochLog) error {
	var buf []byte
	var points []report.EpochPoint
	for _, l := range history {
		line, err := json.Marshal(l)
		if err != nil {
			return err
		}
		buf = append(append(buf, line...), '\n')
		pt := report.EpochPoint{Epoch: l.Epoch, Losses: l.Losses, KLD: map[string]float64{}}
		if l.Eval != nil {
			for name, f := range l.Eval.Overall {
				pt.KLD[name] = f.KLD
			}
		}
		points = append(points, pt)
	}
	if err := writeFileAtomic(filepath.Join(dir, LogFile), buf); err != nil {
		return err
	}
	return report.PlotTraining(filepath.Join(dir, PlotFile), points)
}

// writeFileAtomic writes b to path through a temporary file in the same folder and a rename.
func writeFileAtomic(path string, b []byte) error {
	if err := atomicfile.WriteBytes(path, b); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}
