package discovery

import (
	"fmt"
	"testing"

	"github.com/affgd/affgd/internal/testdev"
	"github.com/affgd/affgd/torch"
)

// TestFusedKMeansBitwise: kmeansBatch with each iteration fused (torch.KMeansStep, one shim call)
// gives exactly the centroids of its op-by-op iterations — max |diff| 0 — for several batch
// sizes, cluster counts, padded point sets, runs stopped by convergence and by maxIter; the ops, reads and uploads are counted alike and each iteration saves the
// calls of one op-by-op iteration but one. On the test device ($AFFGD_TEST_DEVICE).
func TestFusedKMeansBitwise(t *testing.T) {
	dev := testdev.Device(t)
	for _, c := range []struct {
		nc, n, C, k int64
		maxIter     int
		tol         float64
	}{
		{1, 30, 8, 3, KMeansMaxIter, KMeansTol},
		{5, 196, 384, 3, KMeansMaxIter, KMeansTol},
		{4, 50, 16, 5, KMeansMaxIter, KMeansTol},
		{3, 40, 4, 1, KMeansMaxIter, KMeansTol},
		{6, 120, 32, 3, 7, KMeansTol}, // stopped by maxIter
		{4, 60, 8, 3, 45, -1},         // never converges: the checks at 20 and 40, then maxIter
	} {
		t.Run(fmt.Sprintf("nc%d/N%d/C%d/K%d/iter%d/tol%g", c.nc, c.n, c.C, c.k, c.maxIter, c.tol), func(t *testing.T) {
			err := torch.NoGradScope(func(*torch.Scope) {
				g, _ := torch.NewGenerator(uint64(c.nc*c.n+c.k), torch.CPU)
				x := torch.Randn([]int64{c.nc, c.n, c.C}, g)
				// Set i keeps its first n − 7·i points (the rest are zero padding, weight 0).
				valid := torch.Arange(0, float64(c.n), 1).Unsqueeze(0).
					Lt(torch.Arange(0, float64(c.nc), 1).MulScalar(-7).AddScalar(float64(c.n)).Unsqueeze(1)).ToDType(torch.Float32)
				x = x.Mul(valid.Unsqueeze(2))
				init := torch.Randint(0, c.n-7*(c.nc-1), []int64{c.nc, c.k}, g)
				x, valid, init = x.To(dev), valid.To(dev), init.To(dev)
				run := func() (*torch.Tensor, torch.Counters) {
					before := torch.ReadCounters()
					out := kmeansBatch(x, valid, init, c.maxIter, c.tol)
					return out, torch.ReadCounters().Sub(before)
				}
				got, fused := run()
				fusedKMeans = false
				want, ops := run()
				fusedKMeans = true
				if n := got.Ne(want).ToDType(torch.Int64).Sum().ItemInt(); n != 0 {
					t.Errorf("%d of %d centroid values differ from the op-by-op loop's", n, want.Numel())
				}
				if fused.Ops != ops.Ops || fused.Reads != ops.Reads || fused.Uploads != ops.Uploads {
					t.Errorf("counters fused %v, op by op %v: ops, reads and uploads must agree", fused, ops)
				}
				// Each iteration saves the calls of one op-by-op iteration but one.
				nc, C, k := x.Size(0), x.Size(2), init.Size(1)
				c0 := x.Gather(1, init.Unsqueeze(2).Expand(nc, k, C))
				x2, xx := x.MulScalar(2), x.PowScalar(2).SumDims([]int64{2}, false).Unsqueeze(2)
				clusters := torch.Arange(0, float64(k), 1, torch.Int64, dev).Reshape(1, k, 1)
				active := torch.Ones([]int64{nc, 1, 1}, torch.Bool, dev)
				w := valid.Unsqueeze(1)
				before := torch.ReadCounters()
				lloydStepBatch(x, x2, xx, clusters, w, c0, active, KMeansTol)
				per := torch.ReadCounters().Sub(before).Calls - 1
				saved := ops.Calls - fused.Calls
				iters := saved / per
				if saved != per*iters || iters < 1 || iters > int64(c.maxIter) {
					t.Errorf("fused iterations saved %d calls (%v vs %v), want a multiple of %d", saved, fused, ops, per)
				}
				t.Logf("%d iterations: fused %v, op by op %v", iters, fused, ops)
			})
			if err != nil {
				t.Fatal(err)
			}
		})
	}
}
