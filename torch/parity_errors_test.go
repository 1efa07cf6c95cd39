package torch_test

// Bad inputs: each must come back from torch.Try as a *torch.Error whose message names the
// problem (never a crash, never a silent wrong result), and leave no tensor behind.

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/affgd/affgd/torch"
)

func ones(shape ...int64) *tensor { return torch.Ones(shape) }

// must panics with err (a *torch.Error) so that Try reports it, for the functions of the API that
// return an error instead of panicking.
func must(err error) {
	if err != nil {
		panic(err)
	}
}

type errorCase struct {
	name string
	fn   func()
	want string // a substring of the error message
}

func errorCases() []errorCase {
	// A CUDA device that cannot be used here: cuda:0 without CUDA, one past the last with it.
	cuda := torch.CUDA(torch.CUDADeviceCount())
	cudaMsg := fmt.Sprintf("CUDA device cuda:%d requested", cuda.Index())
	i64 := func(v ...int64) *tensor { return torch.FromSlice(v) }
	return []errorCase{
		// ---- shapes ----
		{"matmul shapes", func() { ones(2, 3).Matmul(ones(4, 5)) }, "mat1 and mat2 shapes cannot be multiplied (2x3 and 4x5)"},
		{"matmul 1-d lengths", func() { ones(3).Matmul(ones(4)) }, "inconsistent tensor size"},
		{"matmul batch dims", func() { ones(2, 3, 4).Matmul(ones(3, 4, 5)) }, "must match the size of tensor b (3) at non-singleton dimension 0"},
		{"mm 1-d", func() { ones(3).Mm(ones(3, 2)) }, "self must be a matrix"},
		{"mm shapes", func() { ones(2, 3).Mm(ones(2, 3)) }, "cannot be multiplied (2x3 and 2x3)"},
		{"bmm shapes", func() { ones(2, 3, 4).Bmm(ones(2, 5, 6)) }, "Expected size for first two dimensions of batch2 tensor to be: [2, 4] but got: [2, 5]"},
		{"bmm 2-d", func() { ones(3, 4).Bmm(ones(4, 5)) }, "batch1 must be a 3D tensor"},
		{"linear shapes", func() { torch.Linear(ones(2, 3), ones(4, 5), nil) }, "cannot be multiplied (2x3 and 5x4)"},
		{"linear bias", func() { torch.Linear(ones(2, 3), ones(4, 3), ones(5)) }, "The expanded size of the tensor (4) must match the existing size (5)"},
		{"conv2d channels", func() { torch.Conv2d(ones(1, 4, 5, 5), ones(2, 3, 3, 3), nil, torch.Conv2dOptions{}) },
			"expected input[1, 4, 5, 5] to have 3 channels, but got 4 channels instead"},
		{"conv2d 3-d input", func() { torch.Conv2d(ones(3, 5, 5), ones(2, 3, 3, 3), nil, torch.Conv2dOptions{}) },
			"conv2d expects a 4-d input (N, C, H, W), got shape [3, 5, 5]"},
		{"conv2d kernel too large", func() { torch.Conv2d(ones(1, 3, 2, 2), ones(2, 3, 3, 3), nil, torch.Conv2dOptions{}) },
			"Kernel size can't be greater than actual input size"},
		{"conv2d groups", func() {
			torch.Conv2d(ones(1, 4, 5, 5), ones(3, 2, 3, 3), nil, torch.Conv2dOptions{Groups: 2})
		}, "Given groups=2, expected weight to be divisible by 2 at dimension 0"},
		{"conv2d bias", func() { torch.Conv2d(ones(1, 3, 5, 5), ones(2, 3, 3, 3), ones(3), torch.Conv2dOptions{}) },
			"expected bias to be 1-dimensional with 2 elements"},
		{"conv2d stride", func() {
			torch.Conv2d(ones(1, 3, 5, 5), ones(2, 3, 3, 3), nil, torch.Conv2dOptions{Stride: [2]int64{-1, 1}})
		}, "non-positive stride is not supported"},
		{"cat sizes", func() { torch.Cat([]*tensor{ones(2, 3), ones(3, 4)}, 0) },
			"Sizes of tensors must match except in dimension 0. Expected size 3 but got size 4 for tensor number 1"},
		{"cat ranks", func() { torch.Cat([]*tensor{ones(2, 3), ones(3)}, 0) }, "Tensors must have same number of dimensions"},
		{"cat dim", func() { torch.Cat([]*tensor{ones(2), ones(2)}, 3) }, "Dimension out of range"},
		{"cat empty", func() { torch.Cat(nil, 0) }, "expected a non-empty list of Tensors"},
		{"stack sizes", func() { torch.Stack([]*tensor{ones(2, 3), ones(3, 2)}, 0) }, "stack expects each tensor to be equal size"},
		{"add broadcast", func() { ones(3).Add(ones(4)) }, "The size of tensor a (3) must match the size of tensor b (4)"},
		{"view strides", func() { ones(2, 3).Transpose(0, 1).View(6) }, "view size is not compatible with input tensor's size and stride"},
		{"reshape numel", func() { ones(2, 3).Reshape(4, -1) }, "shape '[4, -1]' is invalid for input of size 6"},
		{"expand", func() { ones(3).Expand(4) }, "The expanded size of the tensor (4) must match the existing size (3)"},
		{"permute", func() { ones(2, 3).Permute(0) }, "input.dim() = 2 is not equal to len(dims) = 1"},
		{"transpose dim", func() { ones(2, 3).Transpose(0, 2) }, "Dimension out of range (expected to be in range of [-2, 1], but got 2)"},
		{"sum dim", func() { ones(2, 3).SumDims([]int64{5}, false) }, "Dimension out of range"},
		{"narrow", func() { ones(4).Narrow(0, 2, 5) }, "start (2) + length (5) exceeds dimension size (4)"},
		{"slice step", func() { ones(4).Slice(0, 0, 4, 0) }, "slice step must be positive"},
		{"chunk zero", func() { ones(4).Chunk(0, 0) }, "chunk expects `chunks` to be greater than 0"},
		{"split zero", func() { ones(4).Split(0, 0) }, "split_size can only be 0 if dimension size is 0"},
		{"topk k", func() { ones(3).Topk(5, 0, true, true) }, "selected index k out of range"},
		{"size dim", func() { ones(2, 3).Size(5) }, "dimension 5 out of range for a 2-d tensor"},
		{"layer_norm shape", func() { torch.LayerNorm(ones(2, 3), []int64{4}, nil, nil, 1e-5) },
			"Given normalized_shape=[4], expected input with shape [*, 4], but got input of size[2, 3]"},
		{"batch_norm one value per channel", func() {
			torch.BatchNorm(torch.Randn([]int64{1, 3}, nil), nil, nil, torch.Zeros([]int64{3}), torch.Ones([]int64{3}), true, 0.1, 1e-5)
		}, "Expected more than 1 value per channel when training, got input size [1, 3]"},
		{"batch_norm stats", func() {
			torch.BatchNorm(ones(4, 3), nil, nil, torch.Zeros([]int64{2}), torch.Ones([]int64{2}), true, 0.1, 1e-5)
		}, "running_mean should contain 3 elements not 2"},
		{"avg_pool2d kernel", func() { torch.AvgPool2d(ones(1, 1, 2, 2), torch.AvgPool2dOptions{Kernel: [2]int64{3, 3}}) },
			"Output size is too small"},
		{"max_pool2d padding", func() { torch.MaxPool2d(ones(1, 1, 5, 5), [2]int64{2, 2}, [2]int64{}, [2]int64{3, 3}, false) },
			"pad should be at most half of effective kernel size"},
		{"interpolate size and scale", func() {
			torch.Interpolate(ones(1, 1, 4, 4), torch.InterpolateOptions{Size: [2]int64{2, 2}, Scale: [2]float64{2, 2}})
		}, "give either a size or a scale factor, not both"},
		{"interpolate 3-d", func() {
			torch.Interpolate(ones(1, 4, 4), torch.InterpolateOptions{Scale: [2]float64{2, 2}})
		}, "expects a 4-d input (N, C, H, W), got shape [1 4 4]"},
		{"interpolate nearest antialias", func() {
			torch.Interpolate(ones(1, 1, 4, 4), torch.InterpolateOptions{Size: [2]int64{2, 2}, Antialias: true})
		}, "nearest interpolation takes neither antialias nor align_corners"},
		{"interpolate zero size", func() { torch.Interpolate(ones(1, 1, 4, 4), torch.InterpolateOptions{Size: [2]int64{0, 3}}) },
			"interpolate output size must be positive, got 0x3"},
		{"interpolate mode", func() {
			torch.Interpolate(ones(1, 1, 4, 4), torch.InterpolateOptions{Size: [2]int64{2, 2}, Mode: torch.InterpMode(7)})
		}, "unknown interpolation mode 7"},
		{"cross_entropy target", func() { torch.CrossEntropy(ones(2, 3), i64(0, 7), torch.ReduceMean) }, "Target 7 is out of bounds"},
		{"cross_entropy weight", func() {
			torch.CrossEntropyWith(ones(2, 3), i64(0, 1), ones(2), torch.ReduceMean, -100, 0)
		}, "weight tensor should be defined either for all 3 classes or no classes"},
		{"cross_entropy reduction", func() { torch.CrossEntropy(ones(2, 3), i64(0, 1), torch.Reduction(7)) }, "unknown reduction 7"},
		{"sdpa mask and causal", func() {
			torch.ScaledDotProductAttention(ones(1, 3, 4), ones(1, 3, 4), ones(1, 3, 4), ones(3, 3), true, 0)
		}, "give either a mask or is_causal, not both"},
		{"sdpa 1-d", func() { torch.ScaledDotProductAttention(ones(4), ones(3, 4), ones(3, 4), nil, false, 0) },
			"expects q, k and v of at least 2 dimensions"},
		{"einsum operands", func() { torch.Einsum("ij,jk->ik", ones(2, 3)) }, "fewer operands were provided than specified in the equation"},
		{"einsum sizes", func() { torch.Einsum("ij,jk->ik", ones(2, 3), ones(4, 5)) }, "subscript j has size 4 for operand 1 which does not broadcast with previously seen size 3"},
		{"cdist columns", func() { torch.Cdist(ones(2, 3), ones(2, 4), 2) }, "X1 and X2 must have the same number of columns"},

		// ---- dtypes ----
		{"index_select float index", func() { ones(3, 4).IndexSelect(0, torch.FromSlice([]float32{0})) },
			"Expected dtype int32 or int64 for index"},
		{"gather float index", func() { ones(3, 4).Gather(1, torch.FromSlice([]float32{0}, 1, 1)) }, "Expected dtype int32/int64 for index"},
		{"scatter float index", func() { ones(3, 4).Scatter(1, torch.FromSlice([]float32{0}, 1, 1), ones(1, 1)) },
			"scatter(): Expected dtype int32/int64 for index"},
		{"index float index", func() { ones(3).Index(torch.FromSlice([]float32{0})) },
			"tensors used as indices must be long, int, byte or bool tensors"},
		{"masked_fill float mask", func() { ones(3).MaskedFill(ones(3), 0) }, "masked_fill_ only supports boolean masks"},
		{"masked_select float mask", func() { ones(3).MaskedSelect(ones(3)) }, "masked_select: expected BoolTensor for mask"},
		{"where float condition", func() { torch.Where(ones(3), ones(3), ones(3)) }, "where expected condition to be a boolean tensor"},
		{"matmul dtypes", func() { ones(2, 2).Matmul(torch.Ones([]int64{2, 2}, torch.Float64)) }, "expected m1 and m2 to have the same dtype"},
		{"bitwise_not float", func() { ones(3).BitwiseNot() }, "\"bitwise_not_cpu\" not implemented for 'Float'"},
		{"cross_entropy float target", func() { torch.CrossEntropy(ones(2, 3), torch.FromSlice([]float32{0, 1}), torch.ReduceMean) },
			"expected scalar type Long but found Float"},
		{"requires_grad on int64", func() { torch.Ones([]int64{3}, torch.Int64).SetRequiresGrad(true) },
			"Only Tensors of floating point and complex dtype can require gradients"},
		{"randn int64", func() { torch.Randn([]int64{2}, nil, torch.Int64) }, "\"normal_kernel_cpu\" not implemented for 'Long'"},
		{"unknown dtype", func() { torch.Zeros([]int64{2}, torch.DType(42)) }, "unknown dtype code 42"},
		{"arange fractional step in int64", func() { torch.Arange(0, 1, 0.25, torch.Int64) },
			"arange: step 0.25 truncates to 0 in the integral dtype Long; ask for a floating-point dtype"},
		{"arange zero step", func() { torch.Arange(0, 5, 0) }, "step must be nonzero"},
		{"integer division by zero", func() { i64(4, 5).FloorDivide(i64(1, 0)) }, "ZeroDivisionError"},
		{"integer remainder by zero", func() { i64(4, 5).RemainderScalar(0) }, "ZeroDivisionError"},
		{"item of many", func() { ones(3).Item() }, "item() needs a tensor with one element, got shape [3]"},
		{"subtract bool", func() { torch.FromSlice([]bool{true}).RSubScalar(1) }, "Subtraction, the `-` operator, with a bool tensor is not supported"},

		// ---- indices out of range ----
		{"select index", func() { ones(3, 4).Select(0, 5) }, "select(): index 5 out of range for tensor of size [3, 4] at dimension 0"},
		{"select negative index", func() { ones(3, 4).Select(1, -5) }, "select(): index -5 out of range for tensor of size [3, 4] at dimension 1"},
		{"select dim", func() { ones(3, 4).Select(2, 0) }, "Dimension out of range"},
		{"index_select index", func() { ones(3, 4).IndexSelect(0, i64(1, 5)) }, "index out of range in self"},
		{"gather index", func() { ones(3, 4).Gather(1, torch.FromSlice([]int64{7}, 1, 1)) }, "index 7 is out of bounds for dimension 1 with size 4"},
		{"gather negative index", func() { ones(3, 4).Gather(1, torch.FromSlice([]int64{-5}, 1, 1)) },
			"index -5 is out of bounds for dimension 1 with size 4"},
		{"scatter index", func() { ones(3, 4).Scatter(1, torch.FromSlice([]int64{9}, 1, 1), ones(1, 1)) },
			"index 9 is out of bounds for dimension 1 with size 4"},
		{"scatter_add index", func() { ones(3, 4).ScatterAdd(0, torch.FromSlice([]int64{3}, 1, 1), ones(1, 1)) },
			"index 3 is out of bounds for dimension 0 with size 3"},
		{"index index", func() { ones(3).Index(i64(5)) }, "index 5 is out of bounds for dimension 0 with size 3"},
		{"index mask shape", func() { ones(3).Index(torch.FromSlice([]bool{true, false})) },
			"The shape of the mask [2] at index 0 does not match the shape of the indexed tensor [3] at index 0"},
		{"index too many", func() { ones(3).Index(i64(0), i64(0)) }, "too many indices for tensor of dimension 1"},
		{"index_put index", func() { ones(3).IndexPut_([]*tensor{i64(5)}, ones(1), false) },
			"index 5 is out of bounds for dimension 0 with size 3"},
		{"index_put accumulate index", func() { ones(3).IndexPut_([]*tensor{i64(-4)}, ones(1), true) },
			"index -4 is out of bounds for dimension 0 with size 3"},

		// ---- devices ----
		{"zeros on CUDA", func() { torch.Zeros([]int64{2}, cuda) }, cudaMsg},
		{"rand on CUDA", func() { torch.Rand([]int64{2}, nil, cuda) }, cudaMsg},
		{"FromSliceOn CUDA", func() { torch.FromSliceOn([]float32{1, 2}, cuda) }, cudaMsg},
		{"To CUDA", func() { ones(2).To(cuda) }, cudaMsg},
		{"generator on CUDA", func() {
			_, err := torch.NewGenerator(0, cuda)
			must(err)
		}, cudaMsg},
		{"synchronize CUDA", func() { must(torch.Synchronize(cuda)) }, cudaMsg},

		// ---- lifetime ----
		{"use after Free", func() {
			x := ones(3)
			x.Free()
			x.AddScalar(1)
		}, "tensor used after it was released (freed explicitly, or its scope was closed)"},
		{"argument after Free", func() {
			x := ones(3)
			x.Free()
			ones(3).Add(x)
		}, "tensor used after it was released"},
		{"shape after Free", func() {
			x := ones(3)
			x.Free()
			x.Free() // idempotent
			x.Shape()
		}, "tensor used after it was released"},
		{"list element after Free", func() {
			x := ones(3)
			x.Free()
			torch.Cat([]*tensor{ones(3), x}, 0)
		}, "tensor used after it was released"},
		{"use after scope close", func() {
			s := torch.NewScope()
			x := ones(3)
			s.Close()
			x.Sum()
		}, "tensor used after it was released"},
		{"data after scope close", func() {
			var x *tensor
			if err := torch.WithScope(func(*torch.Scope) { x = ones(3) }); err != nil {
				panic(err)
			}
			x.Float32s()
		}, "tensor used after it was released"},
		{"grad after scope close", func() {
			s := torch.NewScope()
			x := ones(3).SetRequiresGrad(true)
			x.MulScalar(2).Sum().Backward()
			s.Close()
			x.Grad()
		}, "tensor used after it was released"},

		// ---- nil tensors ----
		{"nil receiver", func() {
			var x *tensor
			x.AddScalar(1)
		}, "nil tensor"},
		{"nil argument", func() { ones(3).Add(nil) }, "nil tensor"},
		{"nil shape", func() {
			var x *tensor
			x.Shape()
		}, "nil tensor"},
		{"nil data", func() {
			var x *tensor
			x.Float32s()
		}, "nil tensor"},
		{"nil in list", func() { torch.Cat([]*tensor{ones(2), nil}, 0) }, "nil tensor"},
		{"nil index", func() { ones(3).IndexSelect(0, nil) }, "nil tensor"},
		{"nil linear weight", func() { torch.Linear(ones(2, 3), nil, nil) }, "nil tensor"},
		{"nil where", func() { torch.Where(torch.FromSlice([]bool{true}), nil, ones(1)) }, "nil tensor"},
		{"nil backward gradient holder", func() {
			var x *tensor
			x.Backward()
		}, "nil tensor"},
		{"nil generator", func() {
			var g *torch.Generator
			g.Seed(1)
		}, "nil generator"},

		// ---- FromSlice and FromBytes ----
		{"FromSlice short", func() { torch.FromSlice([]float32{1, 2, 3}, 2, 2) }, "data holds 12 bytes but shape [2, 2] of Float needs 16"},
		{"FromSlice long", func() { torch.FromSlice([]int64{1, 2, 3, 4, 5}, 2, 2) }, "data holds 40 bytes but shape [2, 2] of Long needs 32"},
		{"FromSlice negative", func() { torch.FromSlice([]float32{1, 2}, -1, 2) }, "negative dimension -1"},
		{"FromBytes length", func() { torch.FromBytes(make([]byte, 7), torch.Float32, []int64{2}, torch.CPU) },
			"data holds 7 bytes but shape [2] of Float needs 8"},

		// ---- autograd ----
		{"backward non-scalar", func() { ones(3).SetRequiresGrad(true).MulScalar(2).Backward() },
			"backward without a gradient needs a scalar, got shape [3]"},
		{"backward without graph", func() { ones(3).Sum().Backward() }, "element 0 of tensors does not require grad and does not have a grad_fn"},
		{"backward twice", func() {
			loss := ones(3).SetRequiresGrad(true).Exp().Sum()
			loss.Backward()
			loss.Backward()
		}, "Trying to backward through the graph a second time"},
		{"backward gradient shape", func() { ones(3).SetRequiresGrad(true).MulScalar(2).BackwardWith(ones(2), false) },
			"invalid gradient at index 0 - got [2] but expected shape compatible with [3]"},
		{"in place on a leaf", func() { ones(3).SetRequiresGrad(true).AddScalar_(1) },
			"a leaf Variable that requires grad is being used in an in-place operation"},
		{"in place on a saved result", func() {
			y := ones(3).SetRequiresGrad(true).Exp()
			y.MulScalar_(2)
			y.Sum().Backward()
		}, "one of the variables needed for gradient computation has been modified by an inplace operation"},
		{"requires_grad of a non-leaf", func() { ones(3).SetRequiresGrad(true).MulScalar(2).SetRequiresGrad(false) },
			"you can only change requires_grad flags of leaf variables"},

		// ---- random numbers and the rest ----
		{"dropout probability", func() { torch.Dropout(ones(3), 1.5, true, nil) }, "dropout probability must be in [0, 1], got 1.5"},
		{"randint range", func() { torch.Randint(5, 5, []int64{3}, nil) }, "random_ expects 'from' to be less than 'to', but got from=5 >= to=5"},
		{"randperm negative", func() { torch.Randperm(-1, nil) }, "negative dimension -1"},
		{"bernoulli probability", func() { torch.FromSlice([]float32{1.5}).Bernoulli(nil) }, "Expected p_in >= 0 && p_in <= 1"},
		{"linspace steps", func() { torch.Linspace(0, 1, -1) }, "number of steps must be non-negative"},
		{"zeros negative", func() { torch.Zeros([]int64{-1}) }, "Dimension size must be non-negative"},
		{"generator state", func() {
			g, err := torch.NewGenerator(0, torch.CPU)
			must(err)
			g.SetState(torch.Zeros([]int64{3}, torch.Uint8))
		}, "Expected a CPUGeneratorImplState of size 5056 but found the input RNG state size to be 3"},
		{"thread count", func() { must(torch.SetNumThreads(0)) }, "thread count must be positive, got 0"},
	}
}

func TestErrorsBadInputs(t *testing.T) {
	for _, c := range errorCases() {
		t.Run(strings.ReplaceAll(c.name, " ", "_"), func(t *testing.T) {
			s := torch.NewScope()
			before := torch.LiveTensors()
			err := torch.Try(c.fn)
			s.Close()
			if after := torch.LiveTensors(); after > before {
				t.Errorf("%d tensor handle(s) left after the scope closed", after-before)
			}
			if err == nil {
				t.Fatalf("no error; want one containing %q", c.want)
			}
			var te *torch.Error
			if !errors.As(err, &te) {
				t.Fatalf("error %v is a %T, want a *torch.Error", err, err)
			}
			if te.Op == "" {
				t.Errorf("error %q names no operation", err)
			}
			msg := err.Error()
			if !strings.Contains(msg, c.want) {
				t.Errorf("error %q does not contain %q", msg, c.want)
			}
			if strings.Contains(msg, "Exception raised from") || strings.Contains(msg, "frame #") {
				t.Errorf("error carries a C++ backtrace: %q", msg)
			}
		})
	}
}

// TestErrorsRecovery checks that a failed op leaves the library usable: the scope still closes
// and the next op on the same thread works.
func TestErrorsRecovery(t *testing.T) {
	err := torch.WithScope(func(s *torch.Scope) {
		x := ones(2, 3)
		if err := torch.Try(func() { x.Matmul(x) }); err == nil {
			t.Error("matmul of 2x3 by 2x3 gave no error")
		}
		if got := x.Matmul(x.Transpose(0, 1)).Sum().Item(); got != 12 {
			t.Errorf("after an error, sum(x xᵀ) = %v, want 12", got)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestErrorsOtherPanics checks that Try returns only *torch.Error and lets other panics through.
func TestErrorsOtherPanics(t *testing.T) {
	defer func() {
		if r := recover(); r != "not a torch error" {
			t.Fatalf("recovered %v, want the original panic", r)
		}
	}()
	_ = torch.Try(func() { panic("not a torch error") })
	t.Fatal("Try swallowed a panic that is not a *torch.Error")
}

// TestErrorsDeviceChecks covers the device helpers that return plain errors.
func TestErrorsDeviceChecks(t *testing.T) {
	if _, err := torch.ParseDevice("gpu"); err == nil || !strings.Contains(err.Error(), `unknown device "gpu"`) {
		t.Errorf("ParseDevice(gpu): %v", err)
	}
	cuda := torch.CUDA(torch.CUDADeviceCount())
	if err := torch.CheckDevice(cuda); err == nil || !strings.Contains(err.Error(), "device "+cuda.String()+" requested") {
		t.Errorf("CheckDevice(%s): %v", cuda, err)
	}
	if err := torch.CheckDevice(torch.CPU); err != nil {
		t.Errorf("CheckDevice(cpu): %v", err)
	}
}
