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
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/affgd/affgd/data"
	"github.com/affgd/affgd/discovery"
	"github.com/affgd/affgd/evaluate"
	"github.com/affgd/affgd/internal/atomicfile"
	"github.com/affgd/affgd/internal/runlock"
	"github.com/affgd/affgd/report"
	"github.com/affgd/affgd/torch"
	"github.com/affgd/affgd/torch/optim"
	"github.com/affgd/affgd/train"
)

// runFiles are the files a run writes in its out_dir (their stale temporaries are removed when a
// run starts).
var runFiles = []string{LastFile, BestFile, StateFile, LogFile, PlotFile, ConfigFile}

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
	PartShare         *float64           `json:"part_level_share,omitempty"` // part/(part+object); absent without part discovery
	PScoreHist        *PScoreHist        `json:"pscore_hist,omitempty"`      // the samples' best reliability p
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
	PScore      []int              `json:"pscore_hist,omitempty"` // PScoreBins counts
	Unclustered int                `json:"unclustered"`
}

// PScoreBins is the number of equal bins of [0, 1] in the logged p-score histogram.
const PScoreBins = 10

// PScoreHist is one epoch's histogram of every clustered sample's best reliability p (the maximum
// over its clusters, which part discovery compares with α; METHOD §4.7e): Counts[i] samples had p
// in [Edges[i], Edges[i+1]) (the last bin includes 1). Unclustered samples (fewer than kmeans_k
// candidates, or prototypes: object) have no p and are counted apart.
type PScoreHist struct {
	Edges       []float64 `json:"edges"`
	Counts      []int     `json:"counts"`
	Unclustered int       `json:"unclustered"`
}

// addPScoreCounts adds one step's histogram (PScoreBins counts) and unclustered samples.
func (s *epochSums) addPScoreCounts(counts []int, unclustered int) {
	if s.PScore == nil {
		s.PScore = make([]int, PScoreBins)
	}
	for i, n := range counts {
		s.PScore[i] += n
	}
	s.Unclustered += unclustered
}

// pscoreHist is the epoch's histogram, nil before any sample went through part discovery.
func (s epochSums) pscoreHist() *PScoreHist {
	if s.PScore == nil {
		return nil
	}
	h := &PScoreHist{Counts: slices.Clone(s.PScore), Unclustered: s.Unclustered}
	for i := range PScoreBins + 1 {
		h.Edges = append(h.Edges, float64(i)/PScoreBins)
	}
	return h
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
	if cfg.Deterministic {
		// cuBLAS reads its workspace setting at its first use: set before any CUDA work.
		if os.Getenv(torch.DeterministicEnv) == "" {
			os.Setenv(torch.DeterministicEnv, torch.DeterministicEnvValue)
		}
		torch.SetDeterministic(true)
		defer torch.SetDeterministic(false)
	}
	if cfg.Threads > 0 {
		if err := torch.SetNumThreads(cfg.Threads); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(cfg.OutDir, 0o755); err != nil {
		return fmt.Errorf("out_dir: %w", err)
	}
	// One run per folder, for the whole run: the lock goes with the process however it ends.
	lock, err := runlock.Acquire(cfg.OutDir)
	if err != nil {
		var held *runlock.HeldError
		if errors.As(err, &held) {
			who := "another process"
			if held.PID > 0 {
				who = fmt.Sprintf("pid %d", held.PID)
			}
			return fmt.Errorf("out_dir %s is in use by another affgd train (%s): two runs cannot share a folder; wait for it to end, or choose another out_dir", cfg.OutDir, who)
		}
		return fmt.Errorf("out_dir %s: %w", cfg.OutDir, err)
	}
	defer lock.Release()
	// Temporaries of our atomic writes that a killed run left behind.
	if _, err := atomicfile.RemoveStale(cfg.OutDir, runFiles...); err != nil {
		return fmt.Errorf("out_dir %s: %w", cfg.OutDir, err)
	}
	statePath := filepath.Join(cfg.OutDir, StateFile)
	if err := checkResume(cfg, resume, statePath); err != nil {
		return err
	}
	if err := checkReportDir(cfg); err != nil {
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
	notice, err := m.SetPrecision(train.Precision{TF32: cfg.TF32, BackboneDType: cfg.BackboneDType}, dev)
	if err != nil {
		return fmt.Errorf("backbone_dtype: %w", err)
	}
	if notice != "" {
		ui.Log("tf32: " + notice)
	}
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
		// The log and the plot of the finished epochs, in case a kill left them behind the state.
		if len(p.History) > 0 {
			if err := writeLog(cfg.OutDir, p.History); err != nil {
				return err
			}
		}
	} else if err := writeFileAtomic(filepath.Join(cfg.OutDir, ConfigFile), cfg.YAML()); err != nil {
		return err
	}
	disc := cfg.DiscoveryOptions()

	r := &runner{cfg: cfg, m: m, opt: opt, sched: sched, dev: dev, disc: disc, ui: ui, statePath: statePath, trainSet: trainSet, testSet: testSet}
	// The batches' copies to a GPU run on a stream of their own, so batch i+1's copy overlaps
	// step i; on the CPU the copy stream is synchronous (the batch's tensors themselves).
	if r.copies, err = newCopyStream(dev); err != nil {
		ui.Log(fmt.Sprintf("data: no copy stream on %s (%v): each batch is copied to the device before its step, and the host waits for it", dev, err))
	}
	for ; p.Epoch < cfg.Epochs; p.Epoch++ {
		if err := r.epoch(ctx, &p); err != nil {
			return err
		}
		p.NextStep, p.Sums, p.Elapsed = 0, epochSums{}, 0
	}
	return nil
}

// resumeMayChange are the keys a resumed run may change: they only concern the machine, where the
// run lives, how often it saves, and how long it runs.
var resumeMayChange = []string{"out_dir", "device", "threads", "workers", "prefetch", "epochs", "test_limit", "state_every_minutes", "report", "eval_batch_size", "deterministic"}

// checkResume refuses to overwrite a run unless resuming, and to resume a run with another
// configuration than its config.yaml's or its state.pt's (the keys of resumeMayChange may differ).
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
	configPath := filepath.Join(cfg.OutDir, ConfigFile)
	saved, err := LoadConfig(configPath)
	if err != nil {
		return fmt.Errorf("--resume: %w", err)
	}
	if d := resumeDiff(saved, cfg); len(d) > 0 {
		return fmt.Errorf("--resume: the configuration differs from the saved run's %s in %s (only %s may change)",
			configPath, strings.Join(d, "; "), strings.Join(resumeMayChange, ", "))
	}
	// The state must be this run's too (not one copied in from another run).
	raw, err := train.ReadStateConfig(statePath)
	if err != nil {
		return fmt.Errorf("--resume: %w", err)
	}
	inState, err := ParseConfig(raw)
	if err != nil {
		return fmt.Errorf("--resume: %s: its configuration is unreadable: %w", statePath, err)
	}
	if d := resumeDiff(inState, cfg); len(d) > 0 {
		return fmt.Errorf("--resume: %s was saved by a run with another configuration than %s: %s (was it copied from another run?)",
			statePath, configPath, strings.Join(d, "; "))
	}
	return nil
}

// resumeDiff describes the keys outside resumeMayChange whose values differ: "lr 0.005 there,
// 0.001 now".
func resumeDiff(saved, now Config) []string {
	var a, b map[string]any
	_ = yaml.Unmarshal(saved.YAML(), &a)
	_ = yaml.Unmarshal(now.YAML(), &b)
	var out []string
	for _, k := range saved.Diff(now) {
		if !slices.Contains(resumeMayChange, k) {
			out = append(out, fmt.Sprintf("%s %v there, %v now", k, a[k], b[k]))
		}
	}
	return out
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
	copies    *torch.CopyStream // nil: blocking copies (no copy stream could be made)
	pinNoted  bool              // the loader's PinNotice was logged
}

// staged is a loader batch with its copy on the device (queued, on a GPU, on the copy stream).
type staged struct {
	b                *data.Batch
	u                *torch.Upload // nil for blocking copies
	exo, ego, labels *torch.Tensor // on the device
}

// stage queues the copy of b to the device. It runs outside any scope: release frees it.
func (r *runner) stage(b *data.Batch) (*staged, error) {
	s := &staged{b: b}
	err := torch.Try(func() {
		if r.copies == nil {
			s.exo, s.ego, s.labels = b.Exo.To(r.dev), b.Ego.To(r.dev), b.Label.To(r.dev)
			return
		}
		s.u = b.Upload(r.copies)
		s.exo, s.ego, s.labels = s.u.Tensors[0], s.u.Tensors[1], s.u.Tensors[2]
	})
	if err != nil {
		s.release()
		return nil, err
	}
	return s, nil
}

// release frees the batch and its device copy (the loader reuses the batch's buffer once the
// copy completed); safe on nil and twice.
func (s *staged) release() {
	if s == nil {
		return
	}
	s.exo.Free()
	s.ego.Free()
	s.labels.Free()
	s.u.Release()
	s.b.Release()
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
		Pin: !r.dev.IsCPU(),
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
	lastSave, first := time.Now(), p.NextStep
	var wait, firstWait time.Duration // time the steps waited for the loader's batches
	fetched, late := 0, 0             // batches taken; of them, copies still running at their step (GPU)
	var copyMS float64                // device time of the batches' copies (GPU)
	// fetch takes the next batch from the loader and queues its copy to the device.
	fetch := func() (*staged, error) {
		t0 := time.Now()
		b, err := loader.Next()
		if fetched == 0 {
			firstWait = time.Since(t0) // the loader's start: nothing could be prefetched yet
		} else {
			wait += time.Since(t0) // the loop waits for the batch (the loader builds it meanwhile)
		}
		fetched++
		if err != nil {
			return nil, err
		}
		if n := loader.PinNotice(); n != "" && !r.pinNoted {
			r.ui.Log("data: " + n)
			r.pinNoted = true
		}
		s, err := r.stage(b)
		if err != nil {
			return nil, fmt.Errorf("copying a batch to %s: %w", r.dev, err)
		}
		return s, nil
	}
	// Batch i+1 is taken and its copy queued before step i is queued, so on a GPU the copy runs
	// on the copy stream during step i's kernels.
	var ahead *staged
	var nextErr error
	if p.NextStep < steps {
		ahead, nextErr = fetch()
	}
	defer func() { ahead.release() }()
	for ; p.NextStep < steps; p.NextStep++ {
		// Every state_every_minutes, the state before this step, so that a hard kill loses at most
		// that much training.
		if cfg.StateEvery > 0 && p.NextStep > first && time.Since(lastSave).Minutes() >= cfg.StateEvery {
			at := *p
			at.Elapsed += time.Since(start).Seconds()
			if err := r.saveState(&at); err != nil {
				return err
			}
			lastSave = time.Now()
		}
		if ctx.Err() != nil {
			p.Elapsed += time.Since(start).Seconds()
			if err := r.saveState(p); err != nil {
				return fmt.Errorf("interrupted, and the state could not be saved: %w", err)
			}
			return ErrInterrupted
		}
		cur, err := ahead, nextErr
		ahead, nextErr = nil, nil
		if err == io.EOF {
			break
		}
		if oe, ok := torch.AsOutOfMemory(err); ok { // the batch's copy to the device
			return r.outOfMemory(p, oe)
		}
		if err != nil {
			return err
		}
		if p.NextStep+1 < steps {
			ahead, nextErr = fetch()
		}
		if cur.u != nil && !cur.u.Done.Done() {
			late++
		}
		st, err := r.step(cur, p, steps)
		if cur.u != nil && r.copies.Async() {
			if ms, err := cur.u.Done.ElapsedMS(); err == nil { // complete once the step read its figures
				copyMS += ms
			}
		}
		cur.release()
		torch.ReleaseHostMemory()
		if err != nil {
			if oe, ok := torch.AsOutOfMemory(err); ok {
				return r.outOfMemory(p, oe)
			}
			return fmt.Errorf("epoch %d step %d: %w", p.Epoch+1, p.NextStep+1, err)
		}
		r.ui.Step(st)
	}
	// The epoch's batches are done: the loader's buffers (pinned on a GPU) are freed before the
	// evaluation, not kept through it.
	ahead.release()
	ahead = nil
	loader.Close()
	r.sched.Step()
	if n := p.NextStep - first; n > 1 {
		r.ui.Log(fmt.Sprintf("data: the first step waited %.1f ms for its batch, the %d others %.1f ms per step on average (workers %d)",
			1000*firstWait.Seconds(), fetched-1, 1000*wait.Seconds()/float64(fetched-1), cfg.Workers))
		if r.copies != nil && r.copies.Async() {
			r.ui.Log(fmt.Sprintf("data: copies to %s on the copy stream: %.2f ms of device time per batch; %d of %d steps were queued before their batch's copy had completed (their stream waited for it)",
				r.dev, copyMS/float64(n), late, n))
		}
	}

	l := EpochLog{Epoch: p.Epoch + 1, LR: lrs, Steps: p.Sums.Steps, Losses: map[string]float64{},
		PartLevel: p.Sums.PartLevel, ObjectLevel: p.Sums.ObjectLevel, EmptyPixelSamples: p.Sums.EmptyPixel, EmptyProtoRows: p.Sums.EmptyProto,
		PScoreHist: p.Sums.pscoreHist()}
	if n := p.Sums.PartLevel + p.Sums.ObjectLevel; n > 0 {
		share := float64(p.Sums.PartLevel) / float64(n)
		l.PartShare = &share
	}
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
	rep, err := r.startReport() // nil unless cfg.Report
	if err != nil {
		return err
	}
	sum, err := evaluate.Run(r.m, r.testSet, evaluate.Options{Size: cfg.CropSize, Limit: cfg.TestLimit, Workers: cfg.Workers, Device: r.dev, Progress: r.ui.EvalProgress,
		BatchSize: cfg.EvalBatchSize, KeepMaps: rep != nil, PerImage: rep.add})
	torch.ReleaseHostMemory()
	if err != nil {
		rep.discard()
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
			rep.discard()
			return err
		}
	}
	if err := rep.finish(r, l); err != nil {
		return err
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
func (r *runner) step(sb *staged, p *progress, steps int) (StepStats, error) {
	b := sb.b
	st := StepStats{Epoch: p.Epoch, Step: p.NextStep, Steps: steps, Losses: map[string]float64{}}
	if stepFault != nil {
		if err := stepFault(p.Epoch, p.NextStep); err != nil {
			return st, err
		}
	}
	err := torch.WithScope(func(_ *torch.Scope) {
		gen, err := torch.NewGenerator(stepSeed(r.cfg.Seed, p.Epoch, p.NextStep), r.dev)
		torch.Raise(err)
		labels := make([]int64, len(b.Samples))
		for i, smp := range b.Samples {
			labels[i] = int64(smp.Label)
		}
		if sb.u != nil {
			sb.u.Wait() // the compute stream waits for the batch's copies (the host does not)
		}
		batch := train.Batch{Exo: sb.exo, Ego: sb.ego, Label: sb.labels, Labels: labels}
		// The step (train.Model.Step, as debug step and bench step run it); its figures come
		// back in one read.
		_, fig, err := r.m.Step(batch, r.opt, train.Options{Epoch: p.Epoch, Discovery: r.disc, Gen: gen, Tau: r.cfg.Temperature, Gamma2: r.cfg.Gamma2, Weights: &r.cfg.LossWeights},
			train.StepOptions{PScoreBins: PScoreBins})
		torch.Raise(err)
		for i, name := range []string{LossCEEgo, LossCEExo, LossPix, LossProto} {
			if !math.IsNaN(fig.Terms[i]) { // NaN: a term of weight 0, not computed and not logged
				st.Losses[name] = fig.Terms[i]
			}
		}
		st.Losses[LossTotal] = fig.Loss
		s := &p.Sums
		s.CorrectEgo += fig.CorrectEgo
		s.CorrectExo += fig.CorrectExo
		s.Samples += fig.Samples
		if fig.Discovered { // part discovery ran (the prototypical loss is on)
			s.PartLevel += fig.PartLevel
			s.ObjectLevel += fig.Samples - fig.PartLevel
			s.addPScoreCounts(fig.PScore, fig.Unclustered)
		}
		s.EmptyPixel += fig.EmptyPixel
		s.EmptyProto += fig.EmptyProto
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

// newCopyStream makes the run's copy stream (a variable so that tests can make it fail, which a
// CPU cannot).
var newCopyStream = torch.NewCopyStream

// stepFault, when set (by tests), runs before each training step; an error it returns is the
// step's, as if libtorch had raised it (a CUDA out-of-memory error cannot be provoked on a machine
// without a GPU).
var stepFault func(epoch, step int) error

// outOfMemory is the one-line error of a training step that ran out of device memory. Nothing of
// the step was applied and nothing on disk was touched: last.pth and state.pt are those of the
// last finished epoch (or of an interruption), from which --resume continues.
func (r *runner) outOfMemory(p *progress, oe *torch.OutOfMemoryError) error {
	saved := "no checkpoint was written yet"
	if _, err := os.Stat(r.statePath); err == nil {
		saved = fmt.Sprintf("%s and %s in %s are intact: --resume continues from them", LastFile, StateFile, r.cfg.OutDir)
	}
	return fmt.Errorf("epoch %d step %d: out of memory on %s with batch_size %d (num_exo %d, crop_size %d): %s requested, %s free of %s; "+
		"lower batch_size or crop_size (a new run), or free the device; %s",
		p.Epoch+1, p.NextStep+1, r.dev, r.cfg.BatchSize, r.cfg.NumExo, r.cfg.CropSize,
		torch.FormatBytes(oe.Requested), torch.FormatBytes(oe.Free), torch.FormatBytes(oe.Cap), saved)
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
		if l.PScoreHist != nil {
			pt.Discovery = &report.DiscoveryPoint{PartShare: math.NaN(), PScore: l.PScoreHist.Counts}
			if l.PartShare != nil {
				pt.Discovery.PartShare = *l.PartShare
			}
		}
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
