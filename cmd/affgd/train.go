package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/urfave/cli/v2"
	"golang.org/x/term"

	"github.com/affgd/affgd/trainer"
)

// flagName is the command-line spelling of a config key (batch_size → batch-size).
func flagName(key string) string { return strings.ReplaceAll(key, "_", "-") }

func trainCommand() *cli.Command {
	flags := []cli.Flag{
		&cli.StringFlag{Name: "config", Usage: "YAML config file (keys in docs/CONFIG.md); flags below override it"},
		&cli.BoolFlag{Name: "resume", Usage: "continue the run saved in out_dir (interrupted, or extended with more epochs)"},
		&cli.BoolFlag{Name: "print-config", Usage: "print the effective configuration and exit"},
	}
	def := trainer.DefaultConfig()
	for _, k := range trainer.SettableKeys() { // loss_weights as --loss-weights.pixel etc.
		v, _ := def.Get(k)
		flags = append(flags, &cli.StringFlag{Name: flagName(k), Usage: fmt.Sprintf("config key %s (default %q)", k, v)})
	}
	return &cli.Command{
		Name:  "train",
		Usage: "train the head on AGD20K, HICO-IIF or a synthetic set, evaluating cam/ree/rem every epoch",
		Description: "Writes into out_dir: last.pth and best.pth (released-format state dicts), state.pt (for --resume),\n" +
			"metrics.jsonl (one line per epoch), training.png and config.yaml. Ctrl-C stops after the step in\n" +
			"progress and saves a resumable state, which is also saved every state_every_minutes (kill -9 loses at\n" +
			"most that much); --resume continues to the same result as an uninterrupted run. A run locks out_dir:\n" +
			"a second run on it fails, naming the first one's pid.",
		Flags:  flags,
		Action: runTrain,
	}
}

// configFromFlags reads --config over the defaults and applies every config flag that was set.
func configFromFlags(c *cli.Context) (trainer.Config, error) {
	cfg := trainer.DefaultConfig()
	var err error
	if p := c.String("config"); p != "" {
		if cfg, err = trainer.LoadConfig(p); err != nil {
			return cfg, err
		}
	}
	// One flag at a time, so that an error names the flag.
	for _, k := range trainer.SettableKeys() {
		if !c.IsSet(flagName(k)) {
			continue
		}
		v := c.String(flagName(k))
		if err := cfg.Set(k, v); err != nil {
			return cfg, fmt.Errorf("--%s %q: %w", flagName(k), v, err)
		}
	}
	return cfg, nil
}

func runTrain(c *cli.Context) error {
	cfg, err := configFromFlags(c)
	if err != nil {
		return err
	}
	if c.Bool("print-config") {
		if err := cfg.Validate(); err != nil {
			return err
		}
		fmt.Print(string(cfg.YAML()))
		return nil
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	finished := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
			select {
			case <-finished: // the deferred stop after the run, not a signal
				return
			default:
			}
			fmt.Fprintln(os.Stderr, "\naffgd: stopping after the current step (press Ctrl-C again to abort without saving)")
			stop() // a second signal kills at once
		case <-finished:
		}
	}()
	err = trainer.Run(ctx, cfg, c.Bool("resume"), newBarUI())
	close(finished)
	if errors.Is(err, trainer.ErrInterrupted) {
		fmt.Fprintf(os.Stderr, "affgd: interrupted; continue with: affgd train %s --resume\n", strings.Join(os.Args[2:], " "))
		os.Exit(130)
	}
	if err == nil {
		fmt.Fprintf(os.Stderr, "done: %s/{%s,%s,%s,%s}\n", cfg.OutDir, trainer.BestFile, trainer.LastFile, trainer.LogFile, trainer.PlotFile)
	}
	return err
}

// barUI draws a progress bar per epoch and per evaluation on stderr and prints each epoch's table.
// When stderr is not a terminal (a log file, a pipe) it prints plain lines instead: the first step
// of each epoch, about ten more per epoch, and the last, each with the running figures and an ETA.
type barUI struct {
	tty        bool
	bar        *progressbar.ProgressBar
	epoch      int
	epochStart time.Time
	startStep  int
}

func newBarUI() *barUI { return &barUI{tty: term.IsTerminal(int(os.Stderr.Fd()))} }

func (u *barUI) newBar(n int, desc string) {
	u.bar = progressbar.NewOptions(n,
		progressbar.OptionSetWriter(os.Stderr),
		progressbar.OptionSetDescription(desc),
		progressbar.OptionShowCount(),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionSetElapsedTime(true),
		progressbar.OptionSetWidth(20),
		progressbar.OptionThrottle(200*time.Millisecond),
		progressbar.OptionOnCompletion(func() { fmt.Fprintln(os.Stderr) }),
	)
}

func (u *barUI) Log(msg string) { fmt.Fprintln(os.Stderr, msg) }

func (u *barUI) EpochStart(epoch, epochs, steps, start int) {
	u.epoch, u.epochStart, u.startStep = epoch, time.Now(), start
	if !u.tty {
		fmt.Fprintf(os.Stderr, "epoch %d/%d: %d steps\n", epoch+1, epochs, steps)
		return
	}
	u.newBar(steps, fmt.Sprintf("epoch %d/%d", epoch+1, epochs))
	if start > 0 {
		_ = u.bar.Set(start)
	}
}

func (u *barUI) Step(s trainer.StepStats) {
	figures := fmt.Sprintf("loss %.3f (ce %.2f/%.2f pix %.2f proto %.2f) acc %.0f/%.0f%%",
		s.Losses[trainer.LossTotal], s.Losses[trainer.LossCEEgo], s.Losses[trainer.LossCEExo],
		s.Losses[trainer.LossPix], s.Losses[trainer.LossProto], s.AccEgo, s.AccExo)
	if u.tty {
		u.bar.Describe(fmt.Sprintf("epoch %d %s", s.Epoch+1, figures))
		_ = u.bar.Add(1)
		return
	}
	done := s.Step + 1
	every := max(1, s.Steps/10)
	if s.Step == u.startStep || done%every == 0 || done == s.Steps {
		elapsed := time.Since(u.epochStart)
		eta := time.Duration(float64(elapsed) / float64(done-u.startStep) * float64(s.Steps-done))
		fmt.Fprintf(os.Stderr, "epoch %d step %d/%d %s  eta %s\n", s.Epoch+1, done, s.Steps, figures, eta.Round(time.Second))
	}
}

func (u *barUI) EvalStart(epoch, images int) {
	if !u.tty {
		fmt.Fprintf(os.Stderr, "evaluating epoch %d on %d test images\n", epoch+1, images)
		return
	}
	u.newBar(images, fmt.Sprintf("eval epoch %d", epoch+1))
}

func (u *barUI) EvalProgress(done, total int) {
	if u.tty {
		_ = u.bar.Set(done)
	}
}

func (u *barUI) EpochEnd(l trainer.EpochLog) {
	best := ""
	if l.Best {
		best = "  (best ree KLD so far: saved best.pth)"
	}
	fmt.Fprintf(os.Stderr, "epoch %d: loss %.4f, acc ego/exo %.1f/%.1f%%, part-level samples %d/%d, %.0fs%s\n",
		l.Epoch, l.Losses[trainer.LossTotal], l.AccEgo, l.AccExo, l.PartLevel, l.PartLevel+l.ObjectLevel, l.Seconds, best)
	if l.Eval != nil {
		fmt.Fprint(os.Stderr, l.Eval.Table(false))
	}
}
