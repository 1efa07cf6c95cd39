package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/affgd/affgd/models/clip"
	"github.com/affgd/affgd/models/dino"
	"github.com/affgd/affgd/torch"
)

// memFigures is the peak memory of a benchmarked phase: on CUDA the caching allocator's peak
// allocated and reserved bytes (torch.CUDAMemoryStats, the figures torch.cuda.max_memory_* give
// on the Python side); on the CPU the process's peak resident set (VmHWM), which covers the
// whole process since its start (the models included), the only meaningful host figure.
type memFigures struct {
	cuda                     bool
	peakAllocated, peakResvd int64
	peakRSS                  int64
	err                      error
}

// reset starts a phase: the CUDA peaks are set to the current use.
func (m *memFigures) reset(dev torch.Device) {
	m.cuda = !dev.IsCPU()
	if m.cuda {
		m.err = torch.ResetPeakMemory(dev)
	}
}

// read ends a phase.
func (m *memFigures) read(dev torch.Device) {
	m.cuda = !dev.IsCPU()
	if m.cuda && m.err == nil {
		s, err := torch.CUDAMemoryStats(dev)
		m.peakAllocated, m.peakResvd, m.err = s.PeakAllocated, s.PeakReserved, err
	}
	m.peakRSS = peakRSS()
}

func (m memFigures) String() string {
	if m.cuda {
		if m.err != nil {
			return "n/a (" + m.err.Error() + ")"
		}
		return fmt.Sprintf("%s allocated, %s reserved", torch.FormatBytes(m.peakAllocated), torch.FormatBytes(m.peakResvd))
	}
	if m.peakRSS <= 0 {
		return "n/a"
	}
	return fmt.Sprintf("%s peak RSS of the process", torch.FormatBytes(m.peakRSS))
}

// peakRSS returns the process's peak resident set size in bytes (VmHWM), -1 when unknown.
func peakRSS() int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return -1
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err == nil {
				return kb << 10
			}
		}
	}
	return -1
}

// releasedResult is tests/bench/released_step.py's JSON.
type releasedResult struct {
	Step               float64  `json:"step"`
	Infer              float64  `json:"infer"`
	PeakAllocated      *int64   `json:"peak_allocated"`
	PeakReserved       *int64   `json:"peak_reserved"`
	InferPeakAllocated *int64   `json:"infer_peak_allocated"`
	PeakRSS            int64    `json:"peak_rss"`
	Patches            []string `json:"patches"`
	Torch              string   `json:"torch"`
	Loss               float64  `json:"loss"`
}

// runReleased runs tests/bench/released_step.py with the published-format weights affgd writes.
func runReleased(py, ref string, dev torch.Device, threads int, args ...string) (*releasedResult, error) {
	tmp, err := os.MkdirTemp("", "affgd-bench-released")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	dp, cp := filepath.Join(tmp, "dino_deitsmall16_pretrain.pth"), filepath.Join(tmp, "ViT-B-16.pt")
	if err := dino.WriteRandom(dp, dino.ViTS16(), 1); err != nil {
		return nil, err
	}
	if err := clip.WriteRandom(cp, clip.ViTB16(), 2, clip.FormatTorchScript); err != nil {
		return nil, err
	}
	script := filepath.Join("tests", "bench", "released_step.py")
	cmd := exec.Command(py, append([]string{script, "--ref", ref, "--device", dev.String(), "--threads", fmt.Sprint(threads),
		"--dino", dp, "--clip", cp}, args...)...)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("bench: running the released code (%s %s): %v", py, script, err)
	}
	var r releasedResult
	if err := json.Unmarshal(out, &r); err != nil {
		return nil, fmt.Errorf("bench: reading the released side's output: %v", err)
	}
	return &r, nil
}

func (r *releasedResult) mem(cuda bool, infer bool) string {
	p := r.PeakAllocated
	if infer {
		p = r.InferPeakAllocated
	}
	if cuda {
		if p == nil {
			return "n/a"
		}
		return torch.FormatBytes(*p) + " allocated"
	}
	return torch.FormatBytes(r.PeakRSS) + " peak RSS of the process"
}

// benchStepReleased prints affgd's step next to the released code's on the same device.
func benchStepReleased(c *cli.Context, py, ref string, dev torch.Device, threads int, bsz, e int64, epoch, iters, classes int,
	goTimes map[string]float64, goMem memFigures) error {
	r, err := runReleased(py, ref, dev, threads, "--batch", fmt.Sprint(bsz), "--exo", fmt.Sprint(e), "--epoch", fmt.Sprint(epoch),
		"--iters", fmt.Sprint(iters), "--infer-images", "0")
	if err != nil {
		return err
	}
	ms := func(t float64) string {
		return time.Duration(t * float64(time.Second)).Round(time.Millisecond).String()
	}
	fmt.Printf("libtorch %s / torch %s, device %s, %d thread(s), B=%d E=%d at 224×224, epoch %d, Seen head (%d classes), median of %d, TF32 off, affgd deterministic %v, affgd cache_text %v\n",
		torch.Version(), r.Torch, dev, threads, bsz, e, epoch, classes, iters, torch.Deterministic(), c.Bool("cache-text"))
	fmt.Printf("released code: %s, patched at run time: %s\n", ref, strings.Join(r.Patches, "; "))
	fmt.Printf("%-34s %14s %14s %12s\n", "whole step (fwd, 4 losses, bwd, SGD)", "affgd", "released", "affgd/released")
	fmt.Printf("%-34s %14s %14s %12.3f\n", "time", ms(goTimes["step"]), ms(r.Step), goTimes["step"]/r.Step)
	fmt.Printf("%-34s %14s\n", "affgd: backbones / rest", ms(goTimes["backbones"])+" / "+ms(goTimes["rest"]))
	fmt.Printf("peak memory  affgd: %s\n", goMem)
	fmt.Printf("             released: %s\n", r.mem(!dev.IsCPU(), false))
	return nil
}
