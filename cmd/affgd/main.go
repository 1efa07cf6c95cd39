// Command affgd trains, evaluates and runs affordance-grounding models (Selective Contrastive
// Learning for Weakly Supervised Affordance Grounding, ICCV 2025) on libtorch.
package main

import (
	"fmt"
	"os"

	"github.com/urfave/cli/v2"
)

func main() {
	app := &cli.App{
		Name:  "affgd",
		Usage: "weakly supervised affordance grounding (Selective Contrastive Learning) on libtorch",
		Commands: []*cli.Command{
			infoCommand(),
			synthCommand(),
			trainCommand(),
			sweepCommand(),
			analyzeCommand(),
			evalCommand(),
			predictCommand(),
			benchCommand(),
			debugCommand(),
		},
	}
	if err := app.Run(os.Args); err != nil {
		fmt.Fprintln(os.Stderr, "affgd:", err)
		os.Exit(1)
	}
}
