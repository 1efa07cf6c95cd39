package sweep

import (
	"fmt"
	"path/filepath"
	"strings"
)

// ShellQuote quotes s for a POSIX shell when it holds anything but safe characters.
func ShellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_./=,+-:@%") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// SlurmLine is the case line of array task i in [Plan.Slurm]'s script: the point's run folder
// and its train command.
func (p *Plan) SlurmLine(bin string, pt Point) string {
	args := p.Command(bin, pt)
	q := make([]string, len(args))
	for i, a := range args {
		q[i] = ShellQuote(a)
	}
	return fmt.Sprintf("  %d) run=%s; cmd=(%s) ;;", pt.Index, ShellQuote(p.RunDir(pt)), strings.Join(q, " "))
}

// Slurm returns a Slurm job-array script running the plan's points, one array task per point,
// each with the command Run uses (bin train --config CONFIG, plus --resume when the point has a
// saved state), so tasks can be resubmitted after a time limit or a failure and continue. A GPU
// per task is requested when the base configuration's device is CUDA. Prepare must have written
// the configs.
func (p *Plan) Slurm(bin string) string {
	var b strings.Builder
	labels := make([]string, len(p.Axes))
	for i, a := range p.Axes {
		labels[i] = a.Key
	}
	fmt.Fprintf(&b, "#!/bin/bash\n")
	fmt.Fprintf(&b, "# affgd sweep over %s: %d points, one array task each. Submit: sbatch THIS_FILE\n", strings.Join(labels, " × "), len(p.Points))
	fmt.Fprintf(&b, "# Resubmitting continues unfinished points (--resume when a state is saved); when the array is\n")
	fmt.Fprintf(&b, "# done, `affgd sweep` with the same --config, --set and --out writes sweep.csv, sweep.md and sweep.png.\n")
	fmt.Fprintf(&b, "#SBATCH --job-name=affgd-sweep\n")
	fmt.Fprintf(&b, "#SBATCH --array=0-%d\n", len(p.Points)-1)
	fmt.Fprintf(&b, "#SBATCH --output=%s\n", ShellQuote(filepath.Join(p.Dir, RunsDir, "slurm-%A_%a.out")))
	if strings.HasPrefix(p.Base.Device, "cuda") {
		fmt.Fprintf(&b, "#SBATCH --gres=gpu:1\n")
	}
	fmt.Fprintf(&b, "set -euo pipefail\n")
	fmt.Fprintf(&b, "case \"$SLURM_ARRAY_TASK_ID\" in\n")
	for _, pt := range p.Points {
		fmt.Fprintf(&b, "%s\n", p.SlurmLine(bin, pt))
	}
	fmt.Fprintf(&b, "  *) echo \"affgd sweep: no point $SLURM_ARRAY_TASK_ID (0-%d)\" >&2; exit 2 ;;\n", len(p.Points)-1)
	fmt.Fprintf(&b, "esac\n")
	fmt.Fprintf(&b, "if [ -f \"$run/%s\" ]; then cmd+=(--resume); fi\n", "state.pt")
	fmt.Fprintf(&b, "mkdir -p \"$run\"\n")
	fmt.Fprintf(&b, "exec \"${cmd[@]}\" >>\"$run/%s\" 2>&1\n", LogName)
	return b.String()
}
