package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/affgd/affgd/sweep"
	"github.com/affgd/affgd/torch"
	"github.com/affgd/affgd/trainer"
)

// setFlag collects repeated --set values without splitting them on commas (the values are).
type setFlag []string

func (s *setFlag) Set(v string) error { *s = append(*s, v); return nil }
func (s *setFlag) String() string     { return strings.Join(*s, " ") }

func sweepCommand() *cli.Command {
	return &cli.Command{
		Name:      "sweep",
		Usage:     "train every point of a grid of config values, each as its own resumable `affgd train`, and tabulate the results",
		UsageText: "affgd sweep --config base.yaml --set alpha=0.4,0.5,0.6 [--set kmeans_k=2,3,4] [--devices cuda:0,cuda:1 | --parallel N] --out DIR",
		Description: "Runs the points missing in DIR (a point with a saved state is resumed, a finished one skipped), --parallel at a\n" +
			"time or one per --devices entry, each writing DIR/runs/POINT/ (train.log holds its output). A failed point is\n" +
			"reported and the others go on. Writes DIR/sweep.csv, DIR/sweep.md and DIR/sweep.png. Ctrl-C stops every run\n" +
			"after its current step with its state saved; the same command continues. --print-slurm prints a Slurm job\n" +
			"array running the same points instead.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "config", Required: true, Usage: "the base training config (YAML, docs/CONFIG.md)"},
			&cli.GenericFlag{Name: "set", Value: &setFlag{}, Usage: "KEY=V1,V2,...: a swept key and its values (repeat for a grid); loss weights as loss_weights.pixel"},
			&cli.StringFlag{Name: "out", Required: true, Usage: "the sweep folder"},
			&cli.StringFlag{Name: "devices", Usage: "comma-separated devices, one run on each at a time (e.g. cuda:0,cuda:1); default: the config's device"},
			&cli.IntFlag{Name: "parallel", Value: 1, Usage: "runs at a time on the config's device (without --devices)"},
			&cli.BoolFlag{Name: "print-slurm", Usage: "prepare DIR and print a Slurm job-array script (one task per point) instead of running"},
			&cli.BoolFlag{Name: "collect", Usage: "only write sweep.csv/md/png from what DIR holds"},
		},
		Action: runSweep,
	}
}

func runSweep(c *cli.Context) error {
	base, err := trainer.LoadConfig(c.String("config"))
	if err != nil {
		return err
	}
	var axes []sweep.Axis
	for _, s := range *c.Generic("set").(*setFlag) {
		a, err := sweep.ParseAxis(s)
		if err != nil {
			return err
		}
		axes = append(axes, a)
	}
	plan, err := sweep.NewPlan(base, axes, c.String("out"))
	if err != nil {
		return err
	}
	var slots []string
	switch {
	case c.IsSet("devices") && c.IsSet("parallel"):
		return fmt.Errorf("--devices and --parallel: give one (--devices runs one point per device)")
	case c.IsSet("devices"):
		for _, d := range strings.Split(c.String("devices"), ",") {
			d = strings.TrimSpace(d)
			if _, err := torch.ParseDevice(d); err != nil {
				return fmt.Errorf("--devices %q: %w", d, err)
			}
			slots = append(slots, d)
		}
	default:
		n := c.Int("parallel")
		if n < 1 {
			return fmt.Errorf("--parallel %d: want ≥ 1", n)
		}
		for range n {
			slots = append(slots, "")
		}
	}
	if err := plan.Prepare(); err != nil {
		return err
	}
	bin, err := os.Executable()
	if err != nil {
		return fmt.Errorf("finding the affgd binary to run: %w", err)
	}
	if c.Bool("print-slurm") {
		fmt.Print(plan.Slurm(bin))
		return nil
	}
	if !c.Bool("collect") {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		finished := make(chan struct{})
		defer close(finished)
		go func() {
			select {
			case <-ctx.Done():
				select {
				case <-finished: // the deferred stop after the sweep, not a signal
					return
				default:
				}
				fmt.Fprintln(os.Stderr, "\naffgd: stopping every run after its current step, their states saved (Ctrl-C again ends the sweep at once)")
				stop() // a second signal ends the sweep at once; its runs still stop after their step
			case <-finished:
			}
		}()
		fmt.Printf("sweep: %d points in %s, %d at a time\n", len(plan.Points), plan.Dir, len(slots))
		outcomes := sweep.Run(ctx, plan, sweep.RunOptions{Bin: bin, Slots: slots, Progress: func(l string) { fmt.Println(l) }})
		if _, err := plan.WriteResults(); err != nil {
			return err
		}
		var failed, stopped []string
		for _, o := range outcomes {
			switch o.Status {
			case sweep.Failed:
				failed = append(failed, o.Point.Label(plan.Axes))
			case sweep.Interrupted:
				stopped = append(stopped, o.Point.Label(plan.Axes))
			}
		}
		fmt.Printf("results: %s, %s, %s\n", filepath.Join(plan.Dir, sweep.CSVFile), filepath.Join(plan.Dir, sweep.TableFile), filepath.Join(plan.Dir, sweep.PlotFile))
		if len(stopped) > 0 {
			fmt.Fprintf(os.Stderr, "affgd: sweep interrupted, %d points unfinished (%s); the same command continues them\n", len(stopped), strings.Join(stopped, "; "))
			os.Exit(130)
		}
		if len(failed) > 0 {
			return fmt.Errorf("sweep: %d of %d points failed (%s); their logs are in %s/POINT/%s", len(failed), len(plan.Points),
				strings.Join(failed, "; "), filepath.Join(plan.Dir, sweep.RunsDir), sweep.LogName)
		}
		return nil
	}
	if _, err := plan.WriteResults(); err != nil {
		return err
	}
	fmt.Printf("results: %s, %s, %s\n", filepath.Join(plan.Dir, sweep.CSVFile), filepath.Join(plan.Dir, sweep.TableFile), filepath.Join(plan.Dir, sweep.PlotFile))
	return nil
}
