package optim

// StepLR multiplies every group's learning rate by Gamma once every StepSize calls of Step, as
// torch.optim.lr_scheduler.StepLR stepped once per epoch. Like PyTorch's chainable form, it
// multiplies the current rate (so rounding matches PyTorch's after many decays).
type StepLR struct {
	Opt       *SGD
	StepSize  int
	Gamma     float64
	LastEpoch int // number of Step calls so far
}

// NewStepLR returns a schedule for o.
func NewStepLR(o *SGD, stepSize int, gamma float64) *StepLR {
	return &StepLR{Opt: o, StepSize: stepSize, Gamma: gamma}
}

// Step advances one epoch and decays the rates when a multiple of StepSize is reached.
func (s *StepLR) Step() {
	s.LastEpoch++
	if s.StepSize > 0 && s.LastEpoch%s.StepSize == 0 {
		for i := range s.Opt.Groups {
			s.Opt.Groups[i].LR *= s.Gamma
		}
	}
}

// LRs returns the current learning rate of every group.
func (s *StepLR) LRs() []float64 {
	out := make([]float64, len(s.Opt.Groups))
	for i, g := range s.Opt.Groups {
		out[i] = g.LR
	}
	return out
}
