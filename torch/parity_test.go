package torch_test

// Op-by-op parity with PyTorch. tests/ops/gen_ops.py runs every op of this package's API in
// PyTorch on fixed random inputs and records the inputs, the outputs and the gradients of
// sum_i sum(output_i * w_i) for fixed random weights w_i; TestParityOps runs the same op through
// the Go API and compares. See gen_ops.py for the file format.

import (
	"github.com/affgd/affgd/internal/testdev"
	"github.com/affgd/affgd/internal/testref"
	"slices"

	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/affgd/affgd/torch"
)

type tensor = torch.Tensor

// ---- tolerances ----
//
// A tolerance of 0 means bitwise equality of the raw bytes. Otherwise two floating-point values
// a (ours) and b (PyTorch's) match when |a-b| <= tol*max(1,|b|); NaN matches NaN and an infinity
// only itself. Integer and boolean tensors are always compared bitwise.
//
// The shim calls the same libtorch kernels PyTorch does, so in practice nearly every result is
// bitwise identical. The tolerance is nevertheless 1e-6 wherever the result is floating-point
// arithmetic that is not a single correctly rounded IEEE operation (transcendental functions,
// sums and other reductions, matrix products, normalisations, every backward pass that adds
// contributions): those results may legitimately change in the last bits with the number of
// intra-op threads, the vector width of the CPU, or the blocking of the BLAS, and the test must
// not fail for that. Bitwise equality is required for creation, random draws, shape and index
// ops, comparisons, integer and boolean ops, and single IEEE operations (+ - * /, sqrt, neg,
// abs, floor, clamp...), whose result is uniquely defined.
const (
	bitwise = 0.0
	rel6    = 1e-6
)

type opFn func(in []*tensor, p params) []*tensor

type parityCase struct {
	fn   opFn
	tol  float64 // outputs
	gtol float64 // gradients
}

// exact: outputs and gradients bitwise (data movement only, forward and backward).
func exact(fn opFn) parityCase { return parityCase{fn, bitwise, bitwise} }

// exactFwd: outputs bitwise, gradients within 1e-6 (the backward sums contributions, e.g. the
// gradient of a broadcast, of repeated indices, or of an elementwise product).
func exactFwd(fn opFn) parityCase { return parityCase{fn, bitwise, rel6} }

// approx: floating-point math, outputs and gradients within 1e-6.
func approx(fn opFn) parityCase { return parityCase{fn, rel6, rel6} }

func out(ts ...*tensor) []*tensor { return ts }

// ---- params ----

type params map[string]any

func (p params) get(k string) any {
	v, ok := p[k]
	if !ok {
		torch.Fail("params", "parameter %q missing", k)
	}
	return v
}

// has reports whether k is present and not null.
func (p params) has(k string) bool { return p[k] != nil }

// F returns a number; null is NaN (an absent clamp bound) and "inf"/"-inf" are infinities.
func (p params) F(k string) float64 { return num(k, p.get(k)) }

func num(k string, v any) float64 {
	switch v := v.(type) {
	case nil:
		return math.NaN()
	case float64:
		return v
	case bool:
		if v {
			return 1
		}
		return 0
	case string:
		switch v {
		case "inf":
			return math.Inf(1)
		case "-inf":
			return math.Inf(-1)
		}
	}
	torch.Fail("params", "parameter %q = %v is not a number", k, v)
	return 0
}

func (p params) I(k string) int64 {
	f := p.F(k)
	if f != math.Trunc(f) {
		torch.Fail("params", "parameter %q = %v is not an integer", k, f)
	}
	return int64(f)
}

func (p params) U(k string) uint64 { return uint64(p.I(k)) }

func (p params) B(k string) bool {
	b, ok := p.get(k).(bool)
	if !ok {
		torch.Fail("params", "parameter %q is not a bool", k)
	}
	return b
}

func (p params) S(k string) string {
	s, ok := p.get(k).(string)
	if !ok {
		torch.Fail("params", "parameter %q is not a string", k)
	}
	return s
}

func (p params) Fs(k string) []float64 {
	l, ok := p.get(k).([]any)
	if !ok {
		torch.Fail("params", "parameter %q is not a list", k)
	}
	out := make([]float64, len(l))
	for i, v := range l {
		out[i] = num(k, v)
	}
	return out
}

func (p params) Is(k string) []int64 {
	fs := p.Fs(k)
	out := make([]int64, len(fs))
	for i, f := range fs {
		out[i] = int64(f)
	}
	return out
}

func (p params) pair(k string) [2]int64 {
	v := p.Is(k)
	if len(v) != 2 {
		torch.Fail("params", "parameter %q has %d values, want 2", k, len(v))
	}
	return [2]int64{v[0], v[1]}
}

func (p params) reduction(k string) torch.Reduction {
	switch p.S(k) {
	case "none":
		return torch.ReduceNone
	case "mean":
		return torch.ReduceMean
	case "sum":
		return torch.ReduceSum
	}
	torch.Fail("params", "unknown reduction %q", p.S(k))
	return 0
}

// gen returns a CPU generator seeded with params["seed"].
func gen(p params) *torch.Generator {
	g, err := torch.NewGenerator(p.U("seed"), torch.CPU)
	if err != nil {
		torch.Fail("generator", "%v", err)
	}
	return g
}

func manualSeed(p params) {
	if err := torch.ManualSeed(p.U("seed")); err != nil {
		torch.Fail("manual_seed", "%v", err)
	}
}

// ---- the table ----

type caseTable map[string]parityCase

func (c caseTable) add(name string, pc parityCase) {
	if _, dup := c[name]; dup {
		panic("duplicate parity case " + name)
	}
	c[name] = pc
}

// cudaSkip lists the cases that cannot be compared with the CPU reference when the inputs are
// on CUDA, with the reason (TestParityOps skips them there, and only there). Every case of
// randomCases is added to it too: CUDA generators draw from another stream (Philox) than the CPU
// reference (mt19937).
var cudaSkip = map[string]string{
	"gelu_special":        "gelu of ±Inf: the CPU and CUDA kernels disagree (Inf vs NaN)",
	"topk_unsorted":       "the order of an unsorted topk is implementation-defined",
	"matmul_i64":          "CUDA has no integer matmul",
	"to_float32_bfloat16": "float32→bfloat16 conversion of special values differs between the CPU and CUDA kernels",
	"to_float32_float16":  "float32→float16 conversion of special values differs between the CPU and CUDA kernels",
	"to_float32_int64":    "the case builds a CPU tensor inside",
	"to_float32_int8":     "the case builds a CPU tensor inside",
}

func parityCases() caseTable {
	c := caseTable{}
	creationCases(c)
	factCases(c)
	before := map[string]bool{}
	for k := range c {
		before[k] = true
	}
	randomCases(c)
	for k := range c {
		if !before[k] {
			cudaSkip[k] = "random draws: CUDA generators use another stream than the CPU reference"
		}
	}
	shapeCases(c)
	elementwiseCases(c)
	reductionCases(c)
	linalgCases(c)
	nnCases(c)
	autogradCases(c)
	return c
}

func creationCases(c caseTable) {
	c.add("zeros_f32", exact(func(in []*tensor, p params) []*tensor { return out(torch.Zeros(p.Is("shape"))) }))
	c.add("zeros_i64", exact(func(in []*tensor, p params) []*tensor { return out(torch.Zeros(p.Is("shape"), torch.Int64)) }))
	c.add("zeros_0d", exact(func(in []*tensor, p params) []*tensor { return out(torch.Zeros(p.Is("shape"))) }))
	c.add("zeros_empty", exact(func(in []*tensor, p params) []*tensor { return out(torch.Zeros(p.Is("shape"))) }))
	c.add("ones_f64", exact(func(in []*tensor, p params) []*tensor { return out(torch.Ones(p.Is("shape"), torch.Float64)) }))
	c.add("ones_bool", exact(func(in []*tensor, p params) []*tensor { return out(torch.Ones(p.Is("shape"), torch.Bool)) }))
	c.add("full_f32", exact(func(in []*tensor, p params) []*tensor { return out(torch.Full(p.Is("shape"), p.F("v"))) }))
	c.add("full_i64", exact(func(in []*tensor, p params) []*tensor {
		return out(torch.Full(p.Is("shape"), p.F("v"), torch.Int64))
	}))
	c.add("full_bool", exact(func(in []*tensor, p params) []*tensor {
		return out(torch.Full(p.Is("shape"), p.F("v"), torch.Bool))
	}))
	c.add("scalar_f32", exact(func(in []*tensor, p params) []*tensor { return out(torch.Scalar(p.F("v"))) }))
	arange := func(opts ...torch.Option) parityCase {
		return exact(func(in []*tensor, p params) []*tensor {
			return out(torch.Arange(p.F("start"), p.F("end"), p.F("step"), opts...))
		})
	}
	c.add("arange_i64", arange())
	c.add("arange_i64_neg", arange())
	c.add("arange_f32", arange(torch.Float32))
	c.add("arange_f64", arange(torch.Float64))
	c.add("arange_infer_f32", arange())
	c.add("arange_infer_f32_start", arange())
	c.add("arange_infer_f32_neg", arange())
	linspace := func(opts ...torch.Option) parityCase {
		return exact(func(in []*tensor, p params) []*tensor {
			return out(torch.Linspace(p.F("start"), p.F("end"), p.I("steps"), opts...))
		})
	}
	c.add("linspace_f32", linspace())
	c.add("linspace_one", linspace())
	c.add("linspace_f64", linspace(torch.Float64))
	eye := func(opts ...torch.Option) parityCase {
		return exact(func(in []*tensor, p params) []*tensor { return out(torch.Eye(p.I("n"), p.I("m"), opts...)) })
	}
	c.add("eye_3", eye())
	c.add("eye_3x5", eye())
	c.add("eye_i64", eye(torch.Int64))
	c.add("empty_fill", exact(func(in []*tensor, p params) []*tensor {
		return out(torch.Empty(p.Is("shape")).Fill_(p.F("v")))
	}))
	c.add("from_data", exact(func(in []*tensor, p params) []*tensor {
		return out(torch.FromSlice(in[0].Float32s(), in[0].Shape()...))
	}))
}

func factCases(c caseTable) {
	c.add("facts", exact(func(in []*tensor, p params) []*tensor {
		y := in[0].Transpose(0, 2)
		f := []int64{int64(y.Dim()), y.Numel(), 0, y.Size(-1), y.Size(0)}
		if y.IsContiguous() {
			f[2] = 1
		}
		return out(torch.FromSlice(append(f, y.Strides()...)))
	}))
	c.add("accessors", exact(func(in []*tensor, p params) []*tensor {
		x, i, b := in[0], in[1], in[2]
		return out(torch.FromSlice(x.Float64s(), x.Shape()...), torch.FromSlice(i.Int64s()), torch.FromSlice(b.Bools()),
			torch.FromSlice(torch.Data[int32](x), x.Shape()...), torch.FromSlice([]float64{x.Select(0, 0).Select(0, 1).Item()}),
			torch.FromSlice([]int64{i.Select(0, 2).ItemInt()}), torch.FromSlice([]float64{i.Select(0, 1).Item()}))
	}))
}

func randomCases(c caseTable) {
	for _, s := range []int{0, 1234} {
		sfx := fmt.Sprintf("_s%d", s)
		c.add("rand"+sfx, exact(func(in []*tensor, p params) []*tensor {
			g := gen(p)
			return out(torch.Rand([]int64{3, 5}, g), torch.Rand([]int64{17}, g), torch.Rand([]int64{4}, g, torch.Float64))
		}))
		c.add("randn"+sfx, exact(func(in []*tensor, p params) []*tensor {
			g := gen(p)
			return out(torch.Randn([]int64{5}, g), torch.Randn([]int64{4, 8}, g), torch.Randn([]int64{3}, g, torch.Float64),
				torch.Randn([]int64{19}, g), torch.Randn([]int64{20}, g, torch.Float64))
		}))
		c.add("randint"+sfx, exact(func(in []*tensor, p params) []*tensor {
			g := gen(p)
			return out(torch.Randint(0, 10, []int64{4, 5}, g), torch.Randint(-3, 3, []int64{7}, g),
				torch.Randint(0, 1<<40, []int64{3}, g))
		}))
		c.add("randperm"+sfx, exact(func(in []*tensor, p params) []*tensor {
			g := gen(p)
			return out(torch.Randperm(10, g), torch.Randperm(100, g))
		}))
		c.add("uniform"+sfx, exact(func(in []*tensor, p params) []*tensor {
			g := gen(p)
			return out(torch.Empty([]int64{3, 4}).Uniform_(-2, 3, g), torch.Empty([]int64{5}).Uniform_(0, 1, g),
				torch.Empty([]int64{3}, torch.Float64).Uniform_(-1, 1, g))
		}))
		c.add("normal"+sfx, exact(func(in []*tensor, p params) []*tensor {
			g := gen(p)
			return out(torch.Empty([]int64{20}).Normal_(1.5, 0.5, g), torch.Empty([]int64{5}).Normal_(0, 1, g),
				torch.Empty([]int64{2, 9}).Normal_(-1, 2, g))
		}))
		c.add("bernoulli"+sfx, exact(func(in []*tensor, p params) []*tensor { return out(in[0].Bernoulli(gen(p))) }))
		c.add("rand_sequence"+sfx, exact(func(in []*tensor, p params) []*tensor {
			g := gen(p)
			return out(torch.Randn([]int64{3}, g), torch.Rand([]int64{2}, g), torch.Randint(0, 5, []int64{4}, g),
				torch.Randperm(6, g), torch.Randn([]int64{17}, g))
		}))
		c.add("rand_global"+sfx, exact(func(in []*tensor, p params) []*tensor {
			manualSeed(p)
			return out(torch.Rand([]int64{6}, nil), torch.Randn([]int64{3}, nil))
		}))
		// The reference is F.dropout after torch.manual_seed(seed): a fresh generator seeded alike
		// must draw the same mask. The output is x times the scaled mask (a single product).
		c.add("dropout"+sfx, exact(func(in []*tensor, p params) []*tensor {
			return out(torch.Dropout(in[0], p.F("p"), true, gen(p)))
		}))
		c.add("dropout_global"+sfx, exact(func(in []*tensor, p params) []*tensor {
			manualSeed(p)
			return out(torch.Dropout(in[0], p.F("p"), true, nil))
		}))
		c.add("dropout_transposed"+sfx, exact(func(in []*tensor, p params) []*tensor {
			return out(torch.Dropout(in[0].Transpose(0, 1), p.F("p"), true, gen(p)))
		}))
		c.add("generator_state"+sfx, exact(func(in []*tensor, p params) []*tensor { return out(gen(p).State()) }))
	}
	c.add("generator_set_state", exact(func(in []*tensor, p params) []*tensor {
		g := gen(p)
		torch.Rand([]int64{5}, g)
		st := g.State()
		x := torch.Rand([]int64{5}, g)
		g.SetState(st)
		y := torch.Rand([]int64{5}, g)
		return out(st, x, y)
	}))
	c.add("generator_reseed", exact(func(in []*tensor, p params) []*tensor {
		g, err := torch.NewGenerator(7, torch.CPU)
		if err != nil {
			torch.Fail("generator", "%v", err)
		}
		torch.Rand([]int64{3}, g)
		g.Seed(p.U("seed"))
		return out(torch.Rand([]int64{4}, g))
	}))
	dropout := func(training bool) parityCase {
		return exact(func(in []*tensor, p params) []*tensor { return out(torch.Dropout(in[0], p.F("p"), training, nil)) })
	}
	c.add("dropout_eval", dropout(false))
	c.add("dropout_p0", dropout(true))
	c.add("dropout_p1", dropout(true))
}

func shapeCases(c caseTable) {
	reshape := exact(func(in []*tensor, p params) []*tensor { return out(in[0].Reshape(p.Is("shape")...)) })
	c.add("reshape", reshape)
	c.add("reshape_copy", exact(func(in []*tensor, p params) []*tensor {
		return out(in[0].Transpose(0, 1).Reshape(p.Is("shape")...))
	}))
	view := exact(func(in []*tensor, p params) []*tensor { return out(in[0].View(p.Is("shape")...)) })
	c.add("view", view)
	c.add("view_flat", view)
	permute := exact(func(in []*tensor, p params) []*tensor { return out(in[0].Permute(p.Is("dims")...)) })
	c.add("permute", permute)
	c.add("permute_neg", permute)
	transpose := exact(func(in []*tensor, p params) []*tensor { return out(in[0].Transpose(p.I("d0"), p.I("d1"))) })
	c.add("transpose", transpose)
	c.add("transpose_neg", transpose)
	flatten := exact(func(in []*tensor, p params) []*tensor { return out(in[0].Flatten(p.I("start"), p.I("end"))) })
	c.add("flatten", flatten)
	c.add("flatten_all", flatten)
	unsqueeze := exact(func(in []*tensor, p params) []*tensor { return out(in[0].Unsqueeze(p.I("dim"))) })
	c.add("unsqueeze", unsqueeze)
	c.add("unsqueeze_neg", unsqueeze)
	squeeze := exact(func(in []*tensor, p params) []*tensor { return out(in[0].Squeeze(p.I("dim"))) })
	c.add("squeeze_dim", squeeze)
	c.add("squeeze_noop", squeeze)
	c.add("squeeze_all", exact(func(in []*tensor, p params) []*tensor { return out(in[0].SqueezeAll()) }))
	// Gradients of expand, repeat and repeat_interleave sum the copies.
	expand := exactFwd(func(in []*tensor, p params) []*tensor { return out(in[0].Expand(p.Is("shape")...)) })
	c.add("expand", expand)
	c.add("expand_keep", expand)
	c.add("repeat", exactFwd(func(in []*tensor, p params) []*tensor { return out(in[0].Repeat(p.Is("reps")...)) }))
	ri := exactFwd(func(in []*tensor, p params) []*tensor { return out(in[0].RepeatInterleave(p.I("n"), p.I("dim"))) })
	c.add("repeat_interleave", ri)
	c.add("repeat_interleave_0", ri)
	cat := exact(func(in []*tensor, p params) []*tensor { return out(torch.Cat(in, p.I("dim"))) })
	for _, n := range []string{"cat_dim1", "cat_neg", "cat_dim0", "cat_i64", "cat_one"} {
		c.add(n, cat)
	}
	stack := exact(func(in []*tensor, p params) []*tensor { return out(torch.Stack(in, p.I("dim"))) })
	for _, n := range []string{"stack_0", "stack_last", "stack_neg"} {
		c.add(n, stack)
	}
	chunk := exact(func(in []*tensor, p params) []*tensor { return in[0].Chunk(p.I("chunks"), p.I("dim")) })
	c.add("chunk", chunk)
	c.add("chunk_fewer", chunk)
	split := exact(func(in []*tensor, p params) []*tensor { return in[0].Split(p.I("size"), p.I("dim")) })
	c.add("split", split)
	c.add("split_dim1", split)
	narrow := exact(func(in []*tensor, p params) []*tensor {
		return out(in[0].Narrow(p.I("dim"), p.I("start"), p.I("len")))
	})
	c.add("narrow", narrow)
	c.add("narrow_neg", narrow)
	slice := exact(func(in []*tensor, p params) []*tensor {
		return out(in[0].Slice(p.I("dim"), p.I("start"), p.I("end"), p.I("step")))
	})
	for _, n := range []string{"slice_step", "slice_neg_start", "slice_step3"} {
		c.add(n, slice)
	}
	sel := exact(func(in []*tensor, p params) []*tensor { return out(in[0].Select(p.I("dim"), p.I("index"))) })
	c.add("select", sel)
	c.add("select_neg", sel)
	// index_select and gather take repeated indices: their gradients add.
	is := exactFwd(func(in []*tensor, p params) []*tensor { return out(in[0].IndexSelect(p.I("dim"), in[1])) })
	c.add("index_select", is)
	c.add("index_select_i32", is)
	gather := exactFwd(func(in []*tensor, p params) []*tensor { return out(in[0].Gather(p.I("dim"), in[1])) })
	c.add("gather", gather)
	c.add("gather_dim0", gather)
	scatter := exact(func(in []*tensor, p params) []*tensor { return out(in[0].Scatter(p.I("dim"), in[1], in[2])) })
	c.add("scatter", scatter)
	c.add("scatter_dim1", scatter)
	scatterAdd := approx(func(in []*tensor, p params) []*tensor { return out(in[0].ScatterAdd(p.I("dim"), in[1], in[2])) })
	c.add("scatter_add", scatterAdd)
	c.add("scatter_add_i64", scatterAdd)

	// Advanced indexing; nil stands for ':'. Repeated indices add up in the backward pass.
	c.add("index_int", exactFwd(func(in []*tensor, p params) []*tensor { return out(in[0].Index(in[1])) }))
	c.add("index_two", exactFwd(func(in []*tensor, p params) []*tensor { return out(in[0].Index(in[1], in[2])) }))
	c.add("index_colon", exactFwd(func(in []*tensor, p params) []*tensor { return out(in[0].Index(nil, in[1])) }))
	c.add("index_separated", exactFwd(func(in []*tensor, p params) []*tensor {
		return out(in[0].Index(in[1], nil, in[2]))
	}))
	c.add("index_colon_last", exactFwd(func(in []*tensor, p params) []*tensor {
		return out(in[0].Index(nil, nil, in[1]))
	}))
	c.add("index_bool", exact(func(in []*tensor, p params) []*tensor { return out(in[0].Index(in[1])) }))
	c.add("index_bool_colon", exact(func(in []*tensor, p params) []*tensor { return out(in[0].Index(nil, in[1])) }))
	c.add("index_bool_full", exact(func(in []*tensor, p params) []*tensor { return out(in[0].Index(in[1])) }))
	c.add("index_i64_data", exact(func(in []*tensor, p params) []*tensor { return out(in[0].Index(in[1])) }))
	put := func(accumulate bool, colon bool) opFn {
		return func(in []*tensor, p params) []*tensor {
			y := in[0].Clone()
			idx := in[1 : len(in)-1]
			if colon {
				idx = append([]*tensor{nil}, idx...)
			}
			return out(y.IndexPut_(idx, in[len(in)-1], accumulate))
		}
	}
	c.add("index_put", exact(put(false, true)))
	// a broadcast value: its gradient sums over the positions it was written to
	c.add("index_put_bcast", exactFwd(put(false, false)))
	c.add("index_put_bool", exactFwd(put(false, false)))
	c.add("index_put_bool_rows", exact(put(false, false)))
	c.add("index_put_fn", exact(put(false, false)))
	c.add("index_put_acc", approx(put(true, true)))
	c.add("index_put_acc_pairs", approx(put(true, false)))
	c.add("index_put_acc_i64", exact(put(true, false)))
	c.add("index_put_acc_bool", approx(put(true, false)))

	c.add("masked_select", exact(func(in []*tensor, p params) []*tensor { return out(in[0].MaskedSelect(in[1])) }))
	c.add("masked_select_bcast", exactFwd(func(in []*tensor, p params) []*tensor { return out(in[0].MaskedSelect(in[1])) }))
	mf := exact(func(in []*tensor, p params) []*tensor { return out(in[0].MaskedFill(in[1], p.F("v"))) })
	c.add("masked_fill", mf)
	c.add("masked_fill_bcast", mf)
	c.add("masked_fill_i64", mf)
	c.add("masked_fill_inplace", exact(func(in []*tensor, p params) []*tensor {
		return out(in[0].MulScalar(1).MaskedFill_(in[1], p.F("v")))
	}))
	where := exactFwd(func(in []*tensor, p params) []*tensor { return out(torch.Where(in[0], in[1], in[2])) })
	c.add("where", where)
	c.add("where_bcast", where)
	c.add("where_i64", where)
	nz := exact(func(in []*tensor, p params) []*tensor { return out(in[0].Nonzero()) })
	c.add("nonzero", nz)
	c.add("nonzero_bool", nz)
	c.add("nonzero_1d", nz)
	tril := exact(func(in []*tensor, p params) []*tensor { return out(in[0].Tril(p.I("d"))) })
	triu := exact(func(in []*tensor, p params) []*tensor { return out(in[0].Triu(p.I("d"))) })
	for _, d := range []string{"0", "1", "m1"} {
		c.add("tril_"+d, tril)
		c.add("triu_"+d, triu)
	}
	c.add("tril_batched", tril)
	c.add("triu_i64", triu)
	flip := exact(func(in []*tensor, p params) []*tensor { return out(in[0].Flip(p.Is("dims")...)) })
	c.add("flip", flip)
	c.add("flip_neg", flip)
	c.add("contiguous", exact(func(in []*tensor, p params) []*tensor { return out(in[0].Transpose(0, 2).Contiguous()) }))
	c.add("contiguous_noop", exact(func(in []*tensor, p params) []*tensor { return out(in[0].Contiguous()) }))
	c.add("clone", exact(func(in []*tensor, p params) []*tensor { return out(in[0].Clone()) }))
	c.add("detach", exact(func(in []*tensor, p params) []*tensor { return out(in[0].Detach()) }))
	c.add("alias", exact(func(in []*tensor, p params) []*tensor { return out(in[0].Alias()) }))
	copyInto := func(in []*tensor, p params) []*tensor { return out(in[0].MulScalar(1).Copy_(in[1])) }
	c.add("copy_bcast", exactFwd(copyInto))
	c.add("copy_i64_to_f32", exact(copyInto))
	c.add("copy_f32_to_i64", exact(func(in []*tensor, p params) []*tensor { return out(in[0].Clone().Copy_(in[1])) }))
	conv := exact(func(in []*tensor, p params) []*tensor {
		to := parseDType(p.S("to"))
		x := in[0]
		if !to.IsFloat() && to != torch.Bool && x.DType().IsFloat() {
			// float -> int of inf/NaN is undefined in C++: the reference replaces them by 0 first
			finite := x.IsInf().LogicalOr(x.IsNaN()).LogicalNot()
			x = torch.Where(finite, x, torch.Zeros(x.Shape(), x.DType())).Clamp(-100, 100)
		}
		return out(x, x.ToDType(to))
	})
	for _, n := range []string{"float32_float64", "float32_int64", "float32_float16", "float32_bfloat16", "float32_bool",
		"int64_float32", "bool_float32", "float64_float32", "int64_int32", "int64_uint8", "float32_int8"} {
		c.add("to_"+n, conv)
	}
	c.add("to_cpu", exact(func(in []*tensor, p params) []*tensor { return out(in[0].To(torch.CPU)) }))
}

func elementwiseCases(c caseTable) {
	type unary = func(*tensor) *tensor
	// Single correctly rounded IEEE operations (or none at all) are compared bitwise.
	ieee := map[string]unary{
		"neg": (*tensor).Neg, "sqrt": (*tensor).Sqrt, "abs": (*tensor).Abs, "relu": (*tensor).Relu,
		"floor": (*tensor).Floor, "ceil": (*tensor).Ceil, "round": (*tensor).Round, "sign": (*tensor).Sign,
		"reciprocal": (*tensor).Reciprocal, "square": (*tensor).Square,
	}
	// Transcendental functions come from vectorised libm-like code: 1e-6.
	transcendental := map[string]unary{
		"exp": (*tensor).Exp, "log": (*tensor).Log, "rsqrt": (*tensor).Rsqrt, "sigmoid": (*tensor).Sigmoid,
		"tanh": (*tensor).Tanh, "sin": (*tensor).Sin, "cos": (*tensor).Cos,
	}
	for name, f := range ieee {
		fn := func(in []*tensor, p params) []*tensor { return out(f(in[0])) }
		c.add(name, exactFwd(fn))
		c.add(name+"_special", exact(fn))
	}
	for name, f := range transcendental {
		fn := func(in []*tensor, p params) []*tensor { return out(f(in[0])) }
		c.add(name, approx(fn))
		c.add(name+"_special", approx(fn))
	}
	for _, name := range []string{"neg", "abs", "sign", "square"} {
		f := ieee[name]
		c.add(name+"_i64", exact(func(in []*tensor, p params) []*tensor { return out(f(in[0])) }))
	}
	for name, f := range map[string]unary{
		"logical_not": (*tensor).LogicalNot, "logical_not_bool": (*tensor).LogicalNot, "isnan": (*tensor).IsNaN,
		"isinf": (*tensor).IsInf, "bitwise_not_i64": (*tensor).BitwiseNot, "bitwise_not_bool": (*tensor).BitwiseNot,
	} {
		c.add(name, exact(func(in []*tensor, p params) []*tensor { return out(f(in[0])) }))
	}
	for name, f := range map[string]unary{
		"relu_": (*tensor).Relu_, "neg_": (*tensor).Neg_, "exp_": (*tensor).Exp_, "zero_": (*tensor).Zero_,
		"sigmoid_": (*tensor).Sigmoid_, "sqrt_": (*tensor).Sqrt_, "abs_": (*tensor).Abs_,
	} {
		pc := exactFwd(func(in []*tensor, p params) []*tensor { return out(f(in[0].MulScalar(1))) })
		if name == "exp_" || name == "sigmoid_" {
			pc.tol = rel6
		}
		c.add("inplace_"+name, pc)
	}

	type binary = func(*tensor, *tensor) *tensor
	// + - * / are single IEEE operations; their gradients sum over the broadcast dimension.
	for name, f := range map[string]binary{"add": (*tensor).Add, "sub": (*tensor).Sub, "mul": (*tensor).Mul, "div": (*tensor).Div} {
		c.add(name, exactFwd(func(in []*tensor, p params) []*tensor { return out(f(in[0], in[1])) }))
	}
	for name, f := range map[string]binary{
		"pow": (*tensor).Pow, "atan2": (*tensor).Atan2, "remainder": (*tensor).Remainder, "floor_divide": (*tensor).FloorDivide,
	} {
		c.add(name, approx(func(in []*tensor, p params) []*tensor { return out(f(in[0], in[1])) }))
	}
	for name, f := range map[string]binary{"maximum": (*tensor).Maximum, "minimum": (*tensor).Minimum} {
		c.add(name, exactFwd(func(in []*tensor, p params) []*tensor { return out(f(in[0], in[1])) }))
	}
	type scalarOp = func(*tensor, float64) *tensor
	cmp := map[string]binary{"eq": (*tensor).Eq, "ne": (*tensor).Ne, "gt": (*tensor).Gt, "ge": (*tensor).Ge,
		"lt": (*tensor).Lt, "le": (*tensor).Le}
	cmpScalar := map[string]scalarOp{"eq": (*tensor).EqScalar, "ne": (*tensor).NeScalar, "gt": (*tensor).GtScalar,
		"ge": (*tensor).GeScalar, "lt": (*tensor).LtScalar, "le": (*tensor).LeScalar}
	for name, f := range cmp {
		fs := cmpScalar[name]
		bin := exact(func(in []*tensor, p params) []*tensor { return out(f(in[0], in[1])) })
		c.add(name, bin)
		c.add(name+"_special", bin)
		sc := exact(func(in []*tensor, p params) []*tensor { return out(fs(in[0], p.F("s"))) })
		c.add(name+"_scalar", sc)
		c.add(name+"_scalar_i64", sc)
	}
	for name, f := range map[string]binary{"logical_and": (*tensor).LogicalAnd, "logical_or": (*tensor).LogicalOr,
		"logical_xor": (*tensor).LogicalXor} {
		bin := exact(func(in []*tensor, p params) []*tensor { return out(f(in[0], in[1])) })
		c.add(name, bin)
		c.add(name+"_float", bin)
	}
	for name, f := range map[string]binary{"add": (*tensor).Add, "sub": (*tensor).Sub, "mul": (*tensor).Mul,
		"div": (*tensor).Div, "remainder": (*tensor).Remainder, "floor_divide": (*tensor).FloorDivide,
		"maximum": (*tensor).Maximum, "minimum": (*tensor).Minimum, "eq": (*tensor).Eq, "pow": (*tensor).Pow} {
		c.add(name+"_i64", exact(func(in []*tensor, p params) []*tensor { return out(f(in[0], in[1])) }))
	}
	add := exactFwd(func(in []*tensor, p params) []*tensor { return out(in[0].Add(in[1])) })
	c.add("add_mixed", add)
	c.add("add_f32_f64", add)
	c.add("add_0d", add)
	c.add("mul_f64", exactFwd(func(in []*tensor, p params) []*tensor { return out(in[0].Mul(in[1])) }))
	for name, f := range map[string]binary{"add_": (*tensor).Add_, "sub_": (*tensor).Sub_, "mul_": (*tensor).Mul_,
		"div_": (*tensor).Div_} {
		c.add("inplace_"+name, exactFwd(func(in []*tensor, p params) []*tensor { return out(f(in[0].MulScalar(1), in[1])) }))
	}
	c.add("inplace_add_i64", exact(func(in []*tensor, p params) []*tensor { return out(in[0].Clone().Add_(in[1])) }))

	scalarIEEE := map[string]scalarOp{"add": (*tensor).AddScalar, "sub": (*tensor).SubScalar, "mul": (*tensor).MulScalar,
		"div": (*tensor).DivScalar, "div3": (*tensor).DivScalar, "rsub": (*tensor).RSubScalar,
		"clamp_min": (*tensor).ClampMin, "clamp_max": (*tensor).ClampMax}
	scalarMath := map[string]scalarOp{"pow2": (*tensor).PowScalar, "pow3": (*tensor).PowScalar,
		"pow_half": (*tensor).PowScalar, "pow_neg1": (*tensor).PowScalar, "remainder": (*tensor).RemainderScalar,
		"remainder_neg": (*tensor).RemainderScalar, "fmod": (*tensor).FmodScalar, "fmod_neg": (*tensor).FmodScalar}
	for name, f := range scalarIEEE {
		c.add(name+"_scalar", exactFwd(func(in []*tensor, p params) []*tensor { return out(f(in[0], p.F("s"))) }))
	}
	for name, f := range scalarMath {
		c.add(name+"_scalar", approx(func(in []*tensor, p params) []*tensor { return out(f(in[0], p.F("s"))) }))
	}
	for name, f := range map[string]scalarOp{"add": (*tensor).AddScalar, "sub": (*tensor).SubScalar,
		"mul": (*tensor).MulScalar, "mul_frac": (*tensor).MulScalar, "div": (*tensor).DivScalar,
		"pow2": (*tensor).PowScalar, "rsub": (*tensor).RSubScalar, "remainder": (*tensor).RemainderScalar,
		"fmod": (*tensor).FmodScalar, "clamp_min": (*tensor).ClampMin, "clamp_max": (*tensor).ClampMax,
		"add_frac": (*tensor).AddScalar} {
		c.add(name+"_scalar_i64", exact(func(in []*tensor, p params) []*tensor { return out(f(in[0], p.F("s"))) }))
	}
	for name, f := range map[string]scalarOp{"add_": (*tensor).AddScalar_, "mul_": (*tensor).MulScalar_,
		"fill_": (*tensor).Fill_, "clamp_min_": (*tensor).ClampMin_, "clamp_max_": (*tensor).ClampMax_} {
		c.add("inplace_"+name+"scalar", exactFwd(func(in []*tensor, p params) []*tensor {
			return out(f(in[0].MulScalar(1), p.F("s")))
		}))
	}
	c.add("inplace_add_scalar_i64", exact(func(in []*tensor, p params) []*tensor {
		return out(in[0].Clone().AddScalar_(p.F("s")))
	}))
	c.add("inplace_fill_i64", exact(func(in []*tensor, p params) []*tensor { return out(in[0].Clone().Fill_(p.F("s"))) }))
	c.add("mul_scalar_bool", exact(func(in []*tensor, p params) []*tensor { return out(in[0].MulScalar(p.F("s"))) }))
	c.add("add_scalar_bool", exact(func(in []*tensor, p params) []*tensor { return out(in[0].AddScalar(p.F("s"))) }))
	// a + alpha*b may be evaluated with a fused multiply-add: 1e-6.
	c.add("add_alpha", approx(func(in []*tensor, p params) []*tensor { return out(in[0].AddAlpha(in[1], p.F("alpha"))) }))
	c.add("add_alpha_i64", exact(func(in []*tensor, p params) []*tensor { return out(in[0].AddAlpha(in[1], p.F("alpha"))) }))
	c.add("add_alpha_inplace", approx(func(in []*tensor, p params) []*tensor {
		return out(in[0].MulScalar(1).AddAlpha_(in[1], p.F("alpha")))
	}))
	clamp := exactFwd(func(in []*tensor, p params) []*tensor { return out(in[0].Clamp(p.F("min"), p.F("max"))) })
	for _, n := range []string{"clamp_both", "clamp_min_only", "clamp_max_only", "clamp_special", "clamp_i64"} {
		c.add(n, clamp)
	}
	clampInPlace := exactFwd(func(in []*tensor, p params) []*tensor {
		return out(in[0].MulScalar(1).Clamp_(p.F("min"), p.F("max")))
	})
	c.add("clamp_inplace", clampInPlace)
	c.add("clamp_inplace_min", clampInPlace)
	c.add("gelu", approx(func(in []*tensor, p params) []*tensor { return out(in[0].Gelu()) }))
	c.add("gelu_special", approx(func(in []*tensor, p params) []*tensor { return out(in[0].Gelu()) }))
	c.add("gelu_tanh", approx(func(in []*tensor, p params) []*tensor { return out(in[0].GeluTanh()) }))
	softmax := approx(func(in []*tensor, p params) []*tensor { return out(in[0].Softmax(p.I("dim"))) })
	logSoftmax := approx(func(in []*tensor, p params) []*tensor { return out(in[0].LogSoftmax(p.I("dim"))) })
	for _, d := range []string{"0", "1", "m1", "big"} {
		c.add("softmax_"+d, softmax)
		c.add("log_softmax_"+d, logSoftmax)
	}
	c.add("softmax_inf", softmax)
}

func reductionCases(c caseTable) {
	// Reductions add many terms: 1e-6 (their order depends on threads and vector width).
	sumDims := approx(func(in []*tensor, p params) []*tensor { return out(in[0].SumDims(p.Is("dims"), p.B("keepdim"))) })
	c.add("sum_all", approx(func(in []*tensor, p params) []*tensor { return out(in[0].Sum()) }))
	c.add("sum_dim", sumDims)
	c.add("sum_dims_keep", sumDims)
	c.add("sum_neg", sumDims)
	c.add("sum_large", approx(func(in []*tensor, p params) []*tensor {
		return out(in[0].Sum(), in[0].SumDims([]int64{1}, false))
	}))
	c.add("sum_i64", exact(func(in []*tensor, p params) []*tensor {
		return out(in[0].Sum(), in[0].SumDims([]int64{1}, false))
	}))
	c.add("sum_bool", exact(func(in []*tensor, p params) []*tensor {
		return out(in[0].Sum(), in[0].SumDims([]int64{0}, false))
	}))
	meanDims := approx(func(in []*tensor, p params) []*tensor { return out(in[0].MeanDims(p.Is("dims"), p.B("keepdim"))) })
	c.add("mean_all", approx(func(in []*tensor, p params) []*tensor { return out(in[0].Mean()) }))
	c.add("mean_dim_keep", meanDims)
	c.add("mean_dims", meanDims)
	c.add("mean_f64", approx(func(in []*tensor, p params) []*tensor {
		return out(in[0].Mean(), in[0].MeanDims([]int64{1}, false))
	}))
	lse := approx(func(in []*tensor, p params) []*tensor { return out(in[0].LogSumExp(p.Is("dims"), p.B("keepdim"))) })
	c.add("logsumexp_all", approx(func(in []*tensor, p params) []*tensor { return out(in[0].LogSumExp(nil, false)) }))
	c.add("logsumexp_dim", lse)
	c.add("logsumexp_keep", lse)
	c.add("logsumexp_big", lse)
	for _, fn := range []string{"std", "var"} {
		f := (*tensor).Std
		if fn == "var" {
			f = (*tensor).Var
		}
		for _, tag := range []string{"unbiased", "biased"} {
			c.add(fn+"_all_"+tag, approx(func(in []*tensor, p params) []*tensor { return out(f(in[0], nil, p.B("unbiased"), false)) }))
			dims := approx(func(in []*tensor, p params) []*tensor {
				return out(f(in[0], p.Is("dims"), p.B("unbiased"), p.B("keepdim")))
			})
			c.add(fn+"_dim_"+tag, dims)
			c.add(fn+"_dims_keep_"+tag, dims)
		}
	}
	for _, pn := range []string{"1", "2", "inf"} {
		c.add("norm_p"+pn+"_all", approx(func(in []*tensor, p params) []*tensor { return out(in[0].Norm(p.F("p"), nil, false)) }))
		dims := approx(func(in []*tensor, p params) []*tensor {
			return out(in[0].Norm(p.F("p"), p.Is("dims"), p.B("keepdim")))
		})
		c.add("norm_p"+pn+"_dim", dims)
		c.add("norm_p"+pn+"_dims_keep", dims)
	}
	prod := approx(func(in []*tensor, p params) []*tensor { return out(in[0].Prod()) })
	for _, n := range []string{"prod_all", "prod_one_zero", "prod_two_zeros", "prod_i64"} {
		c.add(n, prod)
	}
	// max/min select an element; on ties the gradient is shared equally (a division).
	maxAll := exactFwd(func(in []*tensor, p params) []*tensor { return out(in[0].Max()) })
	minAll := exactFwd(func(in []*tensor, p params) []*tensor { return out(in[0].Min()) })
	c.add("max_all", maxAll)
	c.add("max_all_ties", maxAll)
	c.add("min_all", minAll)
	c.add("min_all_ties", minAll)
	c.add("max_i64", exact(func(in []*tensor, p params) []*tensor { return out(in[0].Max(), in[0].Min()) }))
	maxDim := exact(func(in []*tensor, p params) []*tensor {
		v, i := in[0].MaxDim(p.I("dim"), p.B("keepdim"))
		return out(v, i)
	})
	minDim := exact(func(in []*tensor, p params) []*tensor {
		v, i := in[0].MinDim(p.I("dim"), p.B("keepdim"))
		return out(v, i)
	})
	c.add("max_dim", maxDim)
	c.add("max_dim_ties", maxDim)
	c.add("min_dim_keep", minDim)
	c.add("min_dim_ties", minDim)
	c.add("argmax_all", exact(func(in []*tensor, p params) []*tensor { return out(in[0].Argmax()) }))
	c.add("argmin_all", exact(func(in []*tensor, p params) []*tensor { return out(in[0].Argmin()) }))
	c.add("argmax_dim", exact(func(in []*tensor, p params) []*tensor { return out(in[0].ArgmaxDim(p.I("dim"), p.B("keepdim"))) }))
	c.add("argmin_dim_keep", exact(func(in []*tensor, p params) []*tensor {
		return out(in[0].ArgminDim(p.I("dim"), p.B("keepdim")))
	}))
	c.add("argmax_ties", exact(func(in []*tensor, p params) []*tensor { return out(in[0].Argmax(), in[0].Argmin()) }))
	c.add("argmax_nan", exact(func(in []*tensor, p params) []*tensor {
		return out(in[0].Argmax(), in[0].Argmin(), in[0].Max(), in[0].Min())
	}))
	for _, tag := range []string{"bool", "float", "true", "false", "empty"} {
		c.add("any_"+tag, exact(func(in []*tensor, p params) []*tensor { return out(in[0].Any()) }))
		c.add("all_"+tag, exact(func(in []*tensor, p params) []*tensor { return out(in[0].All()) }))
	}
	cumsum := approx(func(in []*tensor, p params) []*tensor { return out(in[0].Cumsum(p.I("dim"))) })
	for _, n := range []string{"cumsum", "cumsum_neg", "cumsum_i64", "cumsum_bool"} {
		c.add(n, cumsum)
	}
	topk := exact(func(in []*tensor, p params) []*tensor {
		v, i := in[0].Topk(p.I("k"), p.I("dim"), p.B("largest"), p.B("sorted"))
		return out(v, i)
	})
	for _, n := range []string{"topk", "topk_smallest", "topk_unsorted", "topk_i64"} {
		c.add(n, topk)
	}
	sortFn := exact(func(in []*tensor, p params) []*tensor {
		v, i := in[0].Sort(p.I("dim"), p.B("descending"), p.B("stable"))
		return out(v, i)
	})
	for _, n := range []string{"sort_stable", "sort_stable_desc", "sort_dim0", "sort_long", "sort_unstable_distinct",
		"sort_nan", "sort_i64"} {
		c.add(n, sortFn)
	}
	unique := exact(func(in []*tensor, p params) []*tensor {
		v, i, n := in[0].Unique()
		return out(v, i, n)
	})
	c.add("unique_i64", unique)
	c.add("unique_f32", unique)
	c.add("unique_bool", unique)
}

func linalgCases(c caseTable) {
	einsum := approx(func(in []*tensor, p params) []*tensor { return out(torch.Einsum(p.S("eq"), in...)) })
	for _, n := range []string{"mm", "batch", "outer", "trace", "diag", "attn", "three", "sum", "ellipsis"} {
		c.add("einsum_"+n, einsum)
	}
	cdist := approx(func(in []*tensor, p params) []*tensor { return out(torch.Cdist(in[0], in[1], p.F("p"))) })
	for _, n := range []string{"p2", "p2_mm", "p1", "pinf"} {
		c.add("cdist_"+n, cdist)
	}
	normalize := approx(func(in []*tensor, p params) []*tensor {
		return out(in[0].Normalize(p.F("p"), p.I("dim"), p.F("eps")))
	})
	for _, n := range []string{"p2", "p1_neg", "dim0", "eps"} {
		c.add("normalize_"+n, normalize)
	}
	matmul := approx(func(in []*tensor, p params) []*tensor { return out(in[0].Matmul(in[1])) })
	for _, n := range []string{"1d_1d", "2d_1d", "1d_2d", "2d_2d", "batched", "broadcast", "3d_2d", "large", "i64"} {
		c.add("matmul_"+n, matmul)
	}
	c.add("mm", approx(func(in []*tensor, p params) []*tensor { return out(in[0].Mm(in[1])) }))
	c.add("mm_transposed", approx(func(in []*tensor, p params) []*tensor {
		return out(in[0].Transpose(0, 1).Mm(in[1].Transpose(0, 1)))
	}))
	c.add("bmm", approx(func(in []*tensor, p params) []*tensor { return out(in[0].Bmm(in[1])) }))
}

// opt returns in[i], or nil past the end (an optional trailing argument).
func opt(in []*tensor, i int) *tensor {
	if i < len(in) {
		return in[i]
	}
	return nil
}

func nnCases(c caseTable) {
	linear := approx(func(in []*tensor, p params) []*tensor { return out(torch.Linear(in[0], in[1], opt(in, 2))) })
	c.add("linear_bias", linear)
	c.add("linear_nobias", linear)
	c.add("linear_1d", linear)
	conv := approx(func(in []*tensor, p params) []*tensor {
		return out(torch.Conv2d(in[0], in[1], opt(in, 2), torch.Conv2dOptions{
			Stride: p.pair("stride"), Padding: p.pair("padding"), Dilation: p.pair("dilation"), Groups: p.I("groups"),
		}))
	})
	for _, n := range []string{"basic", "stride_pad", "dilation", "groups", "depthwise", "nobias", "asym", "1x1", "patch"} {
		c.add("conv2d_"+n, conv)
	}
	// Outputs: the normalised tensor, then the running mean and variance after the update.
	bn := approx(func(in []*tensor, p params) []*tensor {
		y := torch.BatchNorm(in[0], in[1], in[2], in[3], in[4], p.B("training"), p.F("momentum"), p.F("eps"))
		return out(y, in[3], in[4])
	})
	for _, n := range []string{"train", "train_m03", "train_2d", "eval"} {
		c.add("batch_norm_"+n, bn)
	}
	c.add("batch_norm_train_bare", approx(func(in []*tensor, p params) []*tensor {
		return out(torch.BatchNorm(in[0], nil, nil, nil, nil, p.B("training"), p.F("momentum"), p.F("eps")))
	}))
	ln := approx(func(in []*tensor, p params) []*tensor {
		return out(torch.LayerNorm(in[0], p.Is("shape"), opt(in, 1), opt(in, 2), p.F("eps")))
	})
	for _, n := range []string{"layer_norm", "layer_norm_eps6", "layer_norm_2dims", "layer_norm_noaffine"} {
		c.add(n, ln)
	}
	avg := approx(func(in []*tensor, p params) []*tensor {
		return out(torch.AvgPool2d(in[0], torch.AvgPool2dOptions{
			Kernel: p.pair("kernel"), Stride: p.pair("stride"), Padding: p.pair("padding"),
			CeilMode: p.B("ceil"), CountIncludePad: p.B("include"), DivisorOverride: p.I("divisor"),
		}))
	})
	for _, n := range []string{"", "_pad_incl", "_pad_excl", "_ceil", "_ceil_pad_excl", "_ceil_pad_incl", "_divisor"} {
		c.add("avg_pool2d"+n, avg)
	}
	adaptive := approx(func(in []*tensor, p params) []*tensor {
		s := p.pair("size")
		return out(torch.AdaptiveAvgPool2d(in[0], s[0], s[1]))
	})
	for _, n := range []string{"", "_1x1", "_same", "_up"} {
		c.add("adaptive_avg_pool2d"+n, adaptive)
	}
	// max pooling selects; the backward scatters the weights (overlapping windows add).
	maxPool := exactFwd(func(in []*tensor, p params) []*tensor {
		return out(torch.MaxPool2d(in[0], p.pair("kernel"), p.pair("stride"), p.pair("padding"), p.B("ceil")))
	})
	for _, n := range []string{"", "_stride_pad", "_ceil", "_asym", "_ties"} {
		c.add("max_pool2d"+n, maxPool)
	}

	interp := approx(func(in []*tensor, p params) []*tensor {
		o := torch.InterpolateOptions{Mode: torch.InterpMode(p.I("mode")), AlignCorners: p.B("align_corners"),
			Antialias: p.B("antialias")}
		if p.has("scale") {
			s := p.Fs("scale")
			o.Scale = [2]float64{s[0], s[1]}
		} else {
			o.Size = p.pair("size")
		}
		return out(torch.Interpolate(in[0], o))
	})
	for _, g := range []string{"up", "down", "mixed", "scale2", "scale_frac", "scale_down"} {
		c.add("interp_nearest_"+g, interp)
		for _, m := range []string{"bilinear", "bicubic"} {
			for _, sfx := range []string{"", "_ac", "_aa", "_ac_aa"} {
				c.add("interp_"+m+"_"+g+sfx, interp)
			}
		}
	}
	// DINO's interpolate_pos_encoding, step by step as in its Python code.
	dino := approx(func(in []*tensor, p params) []*tensor {
		pos := in[0]
		n, dim := pos.Size(1), pos.Size(2)
		s := int64(math.Sqrt(float64(n)))
		w0, h0 := p.F("w0"), p.F("h0")
		x := torch.Interpolate(pos.Reshape(1, s, s, dim).Permute(0, 3, 1, 2), torch.InterpolateOptions{
			Scale: [2]float64{w0 / math.Sqrt(float64(n)), h0 / math.Sqrt(float64(n))}, Mode: torch.Bicubic,
			Antialias: p.B("antialias"),
		})
		return out(x.Permute(0, 2, 3, 1).Reshape(1, -1, dim))
	})
	c.add("interp_dino", dino)
	c.add("interp_dino_rect", dino)
	c.add("interp_dino_aa", dino)

	ce := approx(func(in []*tensor, p params) []*tensor {
		return out(torch.CrossEntropyWith(in[0], in[1], opt(in, 2), p.reduction("reduction"), p.I("ignore_index"),
			p.F("smoothing")))
	})
	for _, r := range []string{"mean", "sum", "none"} {
		for _, k := range []string{"ce_", "ce_weight_", "ce_smooth_", "ce_ignore_", "ce_all_"} {
			c.add(k+r, ce)
		}
	}
	for _, n := range []string{"ce_ignore_custom", "ce_4d", "ce_4d_weight_smooth", "ce_probs"} {
		c.add(n, ce)
	}
	simple := approx(func(in []*tensor, p params) []*tensor {
		return out(torch.CrossEntropy(in[0], in[1], p.reduction("reduction")))
	})
	c.add("ce_simple", simple)
	c.add("ce_simple_none", simple)

	// Attention: on the CPU the shim runs PyTorch's own fused kernel, so the results are normally
	// bitwise equal; 1e-6 because the kernel's blocked sums (softmax, both products, and the
	// backward's) may change in the last bits with the thread count or vector width.
	sdpa := approx(func(in []*tensor, p params) []*tensor {
		q, k, v := in[0], in[1], in[2]
		if p.B("transpose") {
			q, k, v = q.Transpose(1, 2), k.Transpose(1, 2), v.Transpose(1, 2)
		}
		scale := 0.0
		if p.has("scale") {
			scale = p.F("scale")
		}
		return out(torch.ScaledDotProductAttention(q, k, v, opt(in, 3), p.B("causal"), scale))
	})
	for _, n := range []string{"", "_3d", "_scale", "_mask", "_mask_scale", "_bool_mask", "_causal", "_causal_scale",
		"_clip_text", "_clip_vision"} {
		c.add("sdpa"+n, sdpa)
	}
}

func autogradCases(c caseTable) {
	// In-place modification of intermediate results; the harness's loss goes through them.
	c.add("ag_inplace_clamp_min", exactFwd(func(in []*tensor, p params) []*tensor { return out(in[0].MulScalar(2).ClampMin_(0)) }))
	c.add("ag_inplace_relu", exactFwd(func(in []*tensor, p params) []*tensor { return out(in[0].MulScalar(2).Relu_()) }))
	c.add("ag_inplace_masked_fill", exactFwd(func(in []*tensor, p params) []*tensor {
		return out(in[0].MulScalar(2).MaskedFill_(in[1], 0))
	}))
	c.add("ag_inplace_view", exactFwd(func(in []*tensor, p params) []*tensor {
		y := in[0].MulScalar(2)
		y.Narrow(1, 1, 2).MulScalar_(3)
		return out(y)
	}))
	c.add("ag_inplace_chain", approx(func(in []*tensor, p params) []*tensor {
		y := in[0].MulScalar(2)
		y.Mul_(in[1])
		y.AddAlpha_(in[0], 0.5)
		return out(y.Relu_())
	}))
	c.add("ag_inplace_index_put", approx(func(in []*tensor, p params) []*tensor {
		y := in[0].MulScalar(3)
		y.IndexPut_([]*tensor{in[1]}, in[2], true)
		return out(y.Sigmoid())
	}))
	c.add("ag_two_branches", approx(func(in []*tensor, p params) []*tensor {
		x := in[0]
		return out(x.Sin().Add(x.Cos().Mul(x)).Add(x.Mul(x).SumDims([]int64{1}, true)))
	}))

	// Cases that run their own backward and return gradients.
	c.add("ag_backward_gradient", approx(func(in []*tensor, p params) []*tensor {
		x := in[0].SetRequiresGrad(true)
		x.Mul(x).MulScalar(3).BackwardWith(in[1], false)
		return out(x.Grad())
	}))
	c.add("ag_retain_twice", approx(func(in []*tensor, p params) []*tensor {
		x := in[0].SetRequiresGrad(true)
		loss := x.Sigmoid().Mul(in[1]).Sum()
		loss.BackwardWith(nil, true)
		g1 := x.Grad().Clone()
		loss.Backward()
		return out(g1, x.Grad())
	}))
	c.add("ag_retain_explicit", approx(func(in []*tensor, p params) []*tensor {
		x := in[0].SetRequiresGrad(true)
		y := x.Exp()
		y.BackwardWith(in[1], true)
		y.BackwardWith(in[2], false)
		return out(x.Grad())
	}))
	c.add("ag_accumulate", approx(func(in []*tensor, p params) []*tensor {
		x := in[0].SetRequiresGrad(true)
		x.Sum().Backward()
		x.Mul(x).Sum().Backward()
		return out(x.Grad())
	}))
	c.add("ag_detach", approx(func(in []*tensor, p params) []*tensor {
		x := in[0].SetRequiresGrad(true)
		x.Detach().Mul(x).Sum().Backward()
		return out(x.Grad())
	}))
	c.add("ag_no_grad", exact(func(in []*tensor, p params) []*tensor {
		x := in[0].SetRequiresGrad(true)
		var y *tensor
		torch.NoGrad(func() { y = x.MulScalar(2) })
		z := x.MulScalar(2)
		return out(y, torch.FromSlice([]bool{y.RequiresGrad(), z.RequiresGrad(), x.IsLeaf(), z.IsLeaf()}))
	}))
	c.add("ag_enable_grad", exact(func(in []*tensor, p params) []*tensor {
		x := in[0].SetRequiresGrad(true)
		var y, z *tensor
		torch.NoGrad(func() {
			torch.EnableGrad(func() { y = x.MulScalar(3) })
			z = x.MulScalar(3)
		})
		y.Sum().Backward()
		return out(x.Grad(), torch.FromSlice([]bool{y.RequiresGrad(), z.RequiresGrad()}))
	}))
	c.add("ag_zero_grad", approx(func(in []*tensor, p params) []*tensor {
		x := in[0].SetRequiresGrad(true)
		x.MulScalar(3).Sum().Backward()
		x.ZeroGrad()
		x.Mul(x).Sum().Backward()
		return out(x.Grad())
	}))
	c.add("ag_set_grad", approx(func(in []*tensor, p params) []*tensor {
		x := in[0].SetRequiresGrad(true)
		x.SetGrad(in[1].Clone())
		x.Mul(x).Sum().Backward()
		return out(x.Grad())
	}))
	c.add("ag_clone", approx(func(in []*tensor, p params) []*tensor {
		x := in[0].SetRequiresGrad(true)
		x.Clone().Mul(in[1]).Sum().Backward()
		return out(x.Grad())
	}))
}

// ---- the manifest ----

type tensorRef struct {
	DType  string  `json:"dtype"`
	Shape  []int64 `json:"shape"`
	Offset int64   `json:"offset"`
	NBytes int64   `json:"nbytes"`
}

type manifestCase struct {
	Inputs  []*tensorRef `json:"inputs"`
	Outputs []*tensorRef `json:"outputs"`
	Weights []*tensorRef `json:"weights"`
	Grads   []*tensorRef `json:"grads"`
	Params  params       `json:"params"`
	Strides [][]int64    `json:"strides"`
}

type refData struct {
	cases map[string]*manifestCase
	data  []byte
}

// testdataDir returns $AFFGD_TESTDATA, or <repo>/tests/testdata.
func testdataDir(t *testing.T) string {
	if d := os.Getenv("AFFGD_TESTDATA"); d != "" {
		return d
	}
	d, err := filepath.Abs(filepath.Join("..", "tests", "testdata"))
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func loadRefData(t *testing.T) *refData {
	t.Helper()
	dir := filepath.Join(testdataDir(t), "ops")
	mb, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
	if err != nil {
		t.Fatalf("reference data missing: run 'make testdata' (%v)", err)
	}
	data, err := os.ReadFile(filepath.Join(dir, "data.bin"))
	if err != nil {
		t.Fatalf("reference data missing: run 'make testdata' (%v)", err)
	}
	r := &refData{data: data}
	if err := json.Unmarshal(mb, &r.cases); err != nil {
		t.Fatalf("%s: %v", filepath.Join(dir, "manifest.json"), err)
	}
	if len(r.cases) == 0 {
		t.Fatalf("%s lists no cases", filepath.Join(dir, "manifest.json"))
	}
	if mb, err := os.ReadFile(filepath.Join(dir, "meta.json")); err == nil {
		var meta struct {
			Torch string `json:"torch"`
		}
		if json.Unmarshal(mb, &meta) == nil && !strings.HasPrefix(meta.Torch, torch.Version()) {
			t.Logf("note: reference data from PyTorch %s, shim built against libtorch %s", meta.Torch, torch.Version())
		}
	}
	return r
}

func parseDType(s string) torch.DType {
	for d := torch.Float32; d <= torch.Bool; d++ {
		if d.String() == s {
			return d
		}
	}
	torch.Fail("manifest", "unknown dtype %q", s)
	return 0
}

func (r *refData) bytes(ref *tensorRef) []byte {
	if ref.Offset < 0 || ref.NBytes < 0 || ref.Offset+ref.NBytes > int64(len(r.data)) {
		torch.Fail("manifest", "tensor at %d+%d lies outside data.bin (%d bytes)", ref.Offset, ref.NBytes, len(r.data))
	}
	return r.data[ref.Offset : ref.Offset+ref.NBytes]
}

func (r *refData) load(ref *tensorRef) *tensor {
	return torch.FromBytes(r.bytes(ref), parseDType(ref.DType), ref.Shape, torch.CPU)
}

// deviation is the largest |a-b|/max(1,|b|) seen in a comparison (0 when bitwise equal).
type deviation struct {
	what string
	dev  float64
}

// compare checks got against the reference; it returns the largest relative deviation.
func (r *refData) compare(what string, got *tensor, want *tensorRef, tol float64) (float64, error) {
	if got == nil {
		return 0, fmt.Errorf("%s: got no tensor", what)
	}
	if dt := got.DType().String(); dt != want.DType {
		return 0, fmt.Errorf("%s: dtype %s, want %s", what, dt, want.DType)
	}
	if s := got.Shape(); !slices.Equal(s, want.Shape) {
		return 0, fmt.Errorf("%s: shape %v, want %v", what, s, want.Shape)
	}
	gb, wb := got.Bytes(), r.bytes(want)
	if bytes.Equal(gb, wb) {
		return 0, nil
	}
	if len(gb) != len(wb) {
		return 0, fmt.Errorf("%s: %d bytes, want %d", what, len(gb), len(wb))
	}
	var a, b []float64
	switch want.DType {
	case "float32":
		a, b = decode32(gb), decode32(wb)
	case "float64":
		a, b = decode64(gb), decode64(wb)
	default:
		i := firstDiff(gb, wb)
		return 0, fmt.Errorf("%s (%s): not bitwise equal; first difference at byte %d", what, want.DType, i)
	}
	worst, at, bad := 0.0, -1, 0
	for i := range a {
		d := relDev(a[i], b[i])
		miss := d > tol || (tol == 0 && !sameBits(a[i], b[i], want.DType))
		if miss {
			bad++
		}
		if d > worst || (at < 0 && miss) {
			worst, at = d, i
		}
	}
	if bad > 0 {
		if tol == 0 {
			return worst, fmt.Errorf("%s: %d of %d elements not bitwise equal; element %d: got %.9g, want %.9g (rel. deviation %.3g)",
				what, bad, len(a), at, a[at], b[at], worst)
		}
		return worst, fmt.Errorf("%s: %d of %d elements off by more than %g; worst element %d: got %.9g, want %.9g (rel. deviation %.3g)",
			what, bad, len(a), tol, at, a[at], b[at], worst)
	}
	if worst == 0 {
		// equal values with different bits (0 and -0, or two NaN payloads) within a tolerance
		worst = math.SmallestNonzeroFloat64
	}
	return worst, nil
}

// relDev is |a-b|/max(1,|b|), with NaN matching NaN and infinities matching only themselves.
func relDev(a, b float64) float64 {
	switch {
	case math.IsNaN(a) || math.IsNaN(b):
		if math.IsNaN(a) && math.IsNaN(b) {
			return 0
		}
		return math.Inf(1)
	case a == b:
		return 0
	case math.IsInf(a, 0) || math.IsInf(b, 0):
		return math.Inf(1)
	}
	return math.Abs(a-b) / math.Max(1, math.Abs(b))
}

func sameBits(a, b float64, dtype string) bool {
	if dtype == "float32" {
		return math.Float32bits(float32(a)) == math.Float32bits(float32(b))
	}
	return math.Float64bits(a) == math.Float64bits(b)
}

func decode32(b []byte) []float64 {
	out := make([]float64, len(b)/4)
	for i := range out {
		out[i] = float64(math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:])))
	}
	return out
}

func decode64(b []byte) []float64 {
	out := make([]float64, len(b)/8)
	for i := range out {
		out[i] = math.Float64frombits(binary.LittleEndian.Uint64(b[8*i:]))
	}
	return out
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// testDevice is where the inputs of every case are placed: $AFFGD_TEST_DEVICE (scripts/cuda-check.sh
// sets cuda:0), default the CPU. Outputs are always compared with the CPU reference.
var testDevice = func() torch.Device {
	d, err := torch.ParseDevice(testref.Device())
	if err != nil {
		panic(err)
	}
	return d
}()

// deviceTol is the tolerance on the test device. On the CPU the shim runs PyTorch's own kernels
// and the tolerances above hold. On CUDA the kernels differ from the CPU reference (other
// summation orders, other transcendental implementations, atomics in scatter/index_put
// backward), so floating-point results are compared within 1e-5 relative, with TF32 off
// (TestMain); integer and boolean results stay bitwise.
func deviceTol(tol float64) float64 {
	if testDevice.IsCPU() {
		return tol
	}
	return max(tol, 1e-5)
}

// runParityCase runs one case in its own scope; it returns the largest deviation seen.
func runParityCase(r *refData, name string, pc parityCase, mc *manifestCase) (devs []deviation, errs []error) {
	s := torch.NewScope()
	defer s.Close()
	fail := func(err error) { errs = append(errs, err) }
	err := torch.Try(func() {
		in := make([]*tensor, len(mc.Inputs))
		for i, ref := range mc.Inputs {
			in[i] = r.load(ref).To(testDevice)
		}
		wantGrad := false
		if len(mc.Grads) > 0 {
			if len(mc.Grads) != len(in) {
				torch.Fail("manifest", "%d gradients for %d inputs", len(mc.Grads), len(in))
			}
			for i, g := range mc.Grads {
				if g != nil {
					in[i].SetRequiresGrad(true)
					wantGrad = true
				}
			}
		}
		outs := pc.fn(in, mc.Params)
		if len(outs) != len(mc.Outputs) {
			fail(fmt.Errorf("%d outputs, want %d", len(outs), len(mc.Outputs)))
			return
		}
		for i, o := range outs {
			what := fmt.Sprintf("output %d", i)
			d, err := r.compare(what, o, mc.Outputs[i], deviceTol(pc.tol))
			devs = append(devs, deviation{what, d})
			if err != nil {
				fail(err)
			}
			if mc.Strides != nil && err == nil {
				if st := o.Strides(); !slices.Equal(st, mc.Strides[i]) {
					fail(fmt.Errorf("%s: strides %v, want %v", what, st, mc.Strides[i]))
				}
			}
		}
		if !wantGrad {
			return
		}
		if len(mc.Weights) != len(outs) {
			torch.Fail("manifest", "%d weights for %d outputs", len(mc.Weights), len(outs))
		}
		var loss *tensor
		for i, w := range mc.Weights {
			if w == nil {
				continue
			}
			l := outs[i].Mul(r.load(w).To(outs[i].Device())).Sum()
			if loss == nil {
				loss = l
			} else {
				loss = loss.Add(l)
			}
		}
		if loss == nil {
			torch.Fail("manifest", "gradients without a weighted output")
		}
		loss.Backward()
		for i, g := range mc.Grads {
			if g == nil {
				continue
			}
			what := fmt.Sprintf("gradient of input %d", i)
			d, err := r.compare(what, in[i].Grad(), g, deviceTol(pc.gtol))
			devs = append(devs, deviation{what, d})
			if err != nil {
				fail(err)
			}
		}
	})
	if err != nil {
		fail(err)
	}
	return devs, errs
}

func TestParityOps(t *testing.T) {
	r := loadRefData(t)
	table := parityCases()

	var missing, extra []string
	for name := range r.cases {
		if _, ok := table[name]; !ok {
			missing = append(missing, name)
		}
	}
	for name := range table {
		if _, ok := r.cases[name]; !ok {
			extra = append(extra, name)
		}
	}
	sort.Strings(missing)
	sort.Strings(extra)
	if len(missing) > 0 {
		t.Errorf("%d manifest case(s) without a Go entry: %s", len(missing), strings.Join(missing, ", "))
	}
	if len(extra) > 0 {
		t.Errorf("%d Go case(s) missing from the manifest (regenerate the reference data?): %s", len(extra), strings.Join(extra, ", "))
	}

	names := make([]string, 0, len(r.cases))
	for name := range r.cases {
		if _, ok := table[name]; ok {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	var nonBitwise []string
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			if why, ok := cudaSkip[name]; ok && !testDevice.IsCPU() {
				t.Skip("on CUDA: " + why)
			}
			before := torch.LiveTensors()
			devs, errs := runParityCase(r, name, table[name], r.cases[name])
			for _, err := range errs {
				t.Error(err)
			}
			if after := torch.LiveTensors(); after > before {
				t.Errorf("%d tensor handle(s) outlived the case's scope", after-before)
			}
			for _, d := range devs {
				if d.dev > 0 {
					nonBitwise = append(nonBitwise, fmt.Sprintf("%s %s: %.3g", name, d.what, d.dev))
				}
			}
		})
	}
	t.Logf("%d cases; %d compared tensors not bitwise equal (all within tolerance unless reported)", len(names), len(nonBitwise))
	for _, s := range nonBitwise {
		t.Logf("  %s", s)
	}
}

// TestMain turns TF32 off so that CUDA runs compare full float32 arithmetic with the reference,
// and checks $AFFGD_TEST_DEVICE first (internal/testdev: an unusable device stops the suite with
// one line).
func TestMain(m *testing.M) {
	torch.SetAllowTF32(false, false)
	testdev.Main(m)
}
