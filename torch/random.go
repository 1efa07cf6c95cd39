package torch

/*
#include "affgd_torch.h"
*/
import "C"

import "runtime"

// Generator is a seeded random-number generator on one device. A CPU generator seeded with s
// draws the same numbers as PyTorch's global CPU generator after torch.manual_seed(s). A nil
// *Generator stands for libtorch's global generator.
type Generator struct {
	g   C.at_generator
	dev Device
}

// NewGenerator returns a generator on device d seeded with seed.
func NewGenerator(seed uint64, d Device) (*Generator, error) {
	var g C.at_generator
	if err := errFrom("generator", C.at_generator_new(C.uint64_t(seed), C.int(d.Index()), &g)); err != nil {
		return nil, err
	}
	gen := &Generator{g: g, dev: d}
	runtime.AddCleanup(gen, func(g C.at_generator) { C.at_generator_free(g) }, g)
	return gen, nil
}

// Device is the device the generator draws for (the CPU for nil, libtorch's global CPU
// generator).
func (g *Generator) Device() Device {
	if g == nil {
		return CPU
	}
	return g.dev
}

func (g *Generator) handle() C.at_generator {
	if g == nil {
		return nil
	}
	return g.g
}

// Seed re-seeds the generator.
func (g *Generator) Seed(seed uint64) {
	defer runtime.KeepAlive(g)
	check("manual_seed", C.at_generator_seed(g.handle(), C.uint64_t(seed)))
}

// State returns the generator's state as a uint8 tensor (to save and restore a run).
func (g *Generator) State() *Tensor {
	var out C.at_tensor
	defer runtime.KeepAlive(g)
	check("get_state", C.at_generator_get_state(g.handle(), &out))
	return wrap(out)
}

// SetState restores a state returned by [Generator.State].
func (g *Generator) SetState(s *Tensor) {
	defer runtime.KeepAlive(s)
	defer runtime.KeepAlive(g)
	check("set_state", C.at_generator_set_state(g.handle(), hdl(s)))
}

// Rand returns uniform [0,1) samples (float32 on the CPU unless opts say otherwise).
func Rand(shape []int64, g *Generator, opts ...Option) *Tensor {
	o := makeOptions(Float32, opts)
	p, n := cInt64s(shape)
	var out C.at_tensor
	defer runtime.KeepAlive(g)
	check("rand", C.at_rand(p, n, C.int(o.dtype), C.int(o.device.Index()), g.handle(), &out))
	return wrap(out)
}

// Randn returns standard normal samples.
func Randn(shape []int64, g *Generator, opts ...Option) *Tensor {
	o := makeOptions(Float32, opts)
	p, n := cInt64s(shape)
	var out C.at_tensor
	defer runtime.KeepAlive(g)
	check("randn", C.at_randn(p, n, C.int(o.dtype), C.int(o.device.Index()), g.handle(), &out))
	return wrap(out)
}

// Randint returns integers uniform in [low, high) (int64 unless opts say otherwise).
func Randint(low, high int64, shape []int64, g *Generator, opts ...Option) *Tensor {
	o := makeOptions(Int64, opts)
	p, n := cInt64s(shape)
	var out C.at_tensor
	defer runtime.KeepAlive(g)
	check("randint", C.at_randint(C.int64_t(low), C.int64_t(high), p, n, C.int(o.dtype), C.int(o.device.Index()), g.handle(), &out))
	return wrap(out)
}

// Randperm returns a random permutation of 0..n-1 (int64 unless opts say otherwise).
func Randperm(n int64, g *Generator, opts ...Option) *Tensor {
	o := makeOptions(Int64, opts)
	var out C.at_tensor
	defer runtime.KeepAlive(g)
	check("randperm", C.at_randperm(C.int64_t(n), C.int(o.dtype), C.int(o.device.Index()), g.handle(), &out))
	return wrap(out)
}

// Uniform_ fills t with samples uniform in [from, to) and returns t.
func (t *Tensor) Uniform_(from, to float64, g *Generator) *Tensor {
	defer runtime.KeepAlive(t)
	defer runtime.KeepAlive(g)
	check("uniform_", C.at_uniform_(hdl(t), C.double(from), C.double(to), g.handle()))
	return t
}

// Normal_ fills t with normal samples and returns t.
func (t *Tensor) Normal_(mean, std float64, g *Generator) *Tensor {
	defer runtime.KeepAlive(t)
	defer runtime.KeepAlive(g)
	check("normal_", C.at_normal_(hdl(t), C.double(mean), C.double(std), g.handle()))
	return t
}

// Bernoulli draws 0/1 with the probabilities in t.
func (t *Tensor) Bernoulli(g *Generator) *Tensor {
	var out C.at_tensor
	defer runtime.KeepAlive(t)
	defer runtime.KeepAlive(g)
	check("bernoulli", C.at_bernoulli(hdl(t), g.handle(), &out))
	return wrap(out)
}
