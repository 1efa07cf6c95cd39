package torch_test

import (
	"testing"

	"github.com/affgd/affgd/torch"
)

// BenchmarkAddFree is the fixed cost of one small op through the binding: the op, its result's
// handle and cleanup registration, and the release.
func BenchmarkAddFree(b *testing.B) {
	x, y := torch.Ones([]int64{1}), torch.Ones([]int64{1})
	for i := 0; i < b.N; i++ {
		x.Add(y).Free()
	}
}

// BenchmarkAddScoped is the same op inside a scope, released when the scope closes every 1000 ops.
func BenchmarkAddScoped(b *testing.B) {
	x, y := torch.Ones([]int64{1}), torch.Ones([]int64{1})
	s := torch.NewScope()
	for i := 0; i < b.N; i++ {
		x.Add(y)
		if i%1000 == 999 {
			s.Close()
			s = torch.NewScope()
		}
	}
	s.Close()
}

// BenchmarkMatmul384 is a 384×384 matrix product.
func BenchmarkMatmul384(b *testing.B) {
	g, _ := torch.NewGenerator(0, torch.CPU)
	x, y := torch.Randn([]int64{384, 384}, g), torch.Randn([]int64{384, 384}, g)
	for i := 0; i < b.N; i++ {
		x.Matmul(y).Free()
	}
}
