package main

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/affgd/affgd/torch"
)

func infoCommand() *cli.Command {
	return &cli.Command{
		Name:  "info",
		Usage: "print the libtorch version, devices and thread count, and run a small self-check",
		Action: func(c *cli.Context) error {
			fmt.Printf("libtorch   %s\n", torch.Version())
			fmt.Printf("threads    %d\n", torch.NumThreads())
			fmt.Printf("cuda       %v (%d device(s))\n", torch.CUDAIsAvailable(), torch.CUDADeviceCount())
			return torch.WithScope(func(s *torch.Scope) {
				// A least-squares fit by gradient descent: exercises ops, autograd and scopes.
				g, err := torch.NewGenerator(0, torch.CPU)
				if err != nil {
					torch.Raise(err)
				}
				x := torch.Randn([]int64{64, 3}, g)
				wTrue := torch.FromSlice([]float32{1.5, -2, 0.5}, 3, 1)
				y := x.Matmul(wTrue)
				w := torch.Zeros([]int64{3, 1}).SetRequiresGrad(true)
				for i := 0; i < 200; i++ {
					step := torch.NewScope()
					loss := x.Matmul(w).Sub(y).Square().Mean()
					loss.Backward()
					torch.NoGrad(func() { w.AddAlpha_(w.Grad(), -0.1) })
					w.ZeroGrad()
					step.Close()
				}
				fmt.Printf("self-check fitted w = %.4f (want [1.5 -2 0.5]), live tensors %d\n", w.Float32s(), torch.LiveTensors())
			})
		},
	}
}
