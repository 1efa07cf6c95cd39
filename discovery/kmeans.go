package discovery

import (
	"github.com/affgd/affgd/torch"
)

// K-means settings of the released code (METHOD.md §5): KMeans(n_clusters=3, mode='euclidean',
// max_iter=300) with the package's default tolerance.
const (
	KMeansMaxIter = 300
	KMeansTol     = 1e-4
)

// KMeans clusters the rows of points (N, C) with Lloyd's algorithm exactly as fast_pytorch_kmeans
// 0.2.2 does in 'euclidean' mode (METHOD.md §5), starting from the centroids points[init[k]]
// (len(init) clusters; indices may repeat), and returns the final (len(init), C) centroids, not
// normalised.
//
// Each iteration assigns every point to the centroid of largest similarity
// 2·x·c − ‖x‖² − ‖c‖² (ties → lowest index); the new centroid is the mean of its points, or the
// zero vector for an empty cluster (the package's NaN mean turned into 0); error = Σ(new − old)²;
// the centroids become the new ones, and the loop stops once error ≤ tol (compared in the points'
// dtype, as the package's tensor comparison does) or after maxIter iterations. maxIter = 0
// returns the initial centroids.
//
// The package draws init itself with torch.randint(0, N, (k,)) on the points' device;
// [Discover] reproduces that draw. On a GPU the package computes the similarities in row chunks
// sized to free memory; each row's values follow the same formula, so only BLAS rounding can
// differ from this single product. It runs without gradient recording and under [torch.Try].
func KMeans(points *torch.Tensor, init []int64, maxIter int, tol float64) *torch.Tensor {
	const op = "discovery.KMeans"
	if points == nil {
		torch.Fail(op, "nil points")
	}
	if points.Dim() != 2 || !points.DType().IsFloat() {
		torch.Fail(op, "points of shape %v and dtype %v: want a floating (N, C) tensor", points.Shape(), points.DType())
	}
	if len(init) == 0 {
		torch.Fail(op, "no initial centroid indices")
	}
	if maxIter < 0 {
		torch.Fail(op, "maxIter %d < 0", maxIter)
	}
	n := points.Size(0)
	for _, i := range init {
		if i < 0 || i >= n {
			torch.Fail(op, "initial centroid index %d out of range for %d points", i, n)
		}
	}
	var out *torch.Tensor
	torch.NoGrad(func() {
		out = kmeans(points, torch.FromSliceOn(init, points.Device(), int64(len(init))), maxIter, tol)
	})
	return out
}

// kmeans is [KMeans] with the initial indices as an int64 tensor on the points' device. The
// returned centroids belong to the caller's scope; everything else is freed.
func kmeans(x, init *torch.Tensor, maxIter int, tol float64) *torch.Tensor {
	s := torch.NewScope()
	defer s.Close()

	k := init.Numel()
	c := x.IndexSelect(0, init)
	// Per point and cluster: the package recomputes 2·x and ‖x‖² every iteration; they do not
	// change, and computing them once gives the same values.
	x2 := x.MulScalar(2)
	xx := x.PowScalar(2).SumDims([]int64{1}, false).Unsqueeze(1)
	clusters := torch.Arange(0, float64(k), 1, torch.Int64, x.Device()).Unsqueeze(1)

	for range maxIter {
		next, done := lloydStep(x, x2, xx, clusters, c, tol)
		c.Free()
		c = next
		if done {
			break
		}
	}
	return s.Keep(c)
}

// lloydStep is one iteration of [KMeans]: the new centroids (kept in the caller's scope) and
// whether the error reached tol.
func lloydStep(x, x2, xx, clusters, c *torch.Tensor, tol float64) (next *torch.Tensor, done bool) {
	s := torch.NewScope()
	defer s.Close()

	cc := c.PowScalar(2).SumDims([]int64{1}, false).Unsqueeze(0)
	sim := x2.Mm(c.Transpose(0, 1)).Sub(xx).Sub(cc)
	_, closest := sim.MaxDim(-1, false)
	mask := closest.Unsqueeze(0).Eq(clusters).ToDType(x.DType()) // (k, N) one-hot by cluster
	mean := mask.Mm(x).Div(mask.SumDims([]int64{-1}, false).Unsqueeze(1))
	// torch.nan_to_num_: an empty cluster's 0/0 mean becomes the zero vector. (±inf, which only
	// non-finite points could produce, is not clamped to ±FLT_MAX here.)
	mean = mean.MaskedFill(mean.IsNaN(), 0)
	errSq := mean.Sub(c).PowScalar(2).Sum()
	// The package sets centroids·(1−lr) + mean·lr with lr = 1: numerically the mean.
	return s.Keep(mean), errSq.LeScalar(tol).Item() != 0
}

// kmeansFirstCheck is the iteration after which the batched K-means first reads whether every
// sample has converged (one device→host read); each later check comes after twice as many
// iterations (20, 40, 80, 160; the loop ends after 300 in any case). Iterations after a sample's
// convergence leave its centroids as they are, so the schedule changes only the time spent: at
// most 4 reads, and one when every sample converges within 20 iterations.
const kmeansFirstCheck = 20

// kmeansBatch is [KMeans] for nc point sets at once: points (nc, N, C), padded with zero rows
// whose valid (nc, N) float weight is 0, and init (nc, K) int64 indices into each set's valid
// points. Each set runs the iterations of [KMeans] on its own points: the products multiply the
// same rows (a padded point adds an exact zero to its cluster's sum and count), a set keeps its
// centroids from the iteration its error reaches tol on, and convergence is read from the device
// on the kmeansFirstCheck schedule. It returns the (nc, K, C) centroids in the caller's
// scope.
func kmeansBatch(x, valid, init *torch.Tensor, maxIter int, tol float64) *torch.Tensor {
	s := torch.NewScope()
	defer s.Close()

	nc, C, k := x.Size(0), x.Size(2), init.Size(1)
	c := x.Gather(1, init.Unsqueeze(2).Expand(nc, k, C))
	x2 := x.MulScalar(2)
	xx := x.PowScalar(2).SumDims([]int64{2}, false).Unsqueeze(2) // (nc, N, 1)
	clusters := torch.Arange(0, float64(k), 1, torch.Int64, x.Device()).Reshape(1, k, 1)
	w := valid.Unsqueeze(1) // (nc, 1, N)
	active := torch.Ones([]int64{nc, 1, 1}, torch.Bool, x.Device())
	check := kmeansFirstCheck
	for it := range maxIter {
		var next, still *torch.Tensor
		if fusedKMeans {
			next, still = torch.KMeansStep(x, x2, xx, clusters, w, c, active, tol)
		} else {
			next, still = lloydStepBatch(x, x2, xx, clusters, w, c, active, tol)
		}
		c.Free()
		active.Free()
		c, active = next, still
		if it+1 == check {
			if active.Any().Item() == 0 {
				break
			}
			check *= 2
		}
	}
	return s.Keep(c)
}

// fusedKMeans makes each iteration of kmeansBatch one shim call ([torch.KMeansStep], the ops of
// lloydStepBatch in their order, bitwise the same); lloydStepBatch stays for the tests that
// compare the two.
var fusedKMeans = true

// lloydStepBatch is one iteration of kmeansBatch, one shim call per op: the next centroids and
// the sets still active, in the caller's scope.
func lloydStepBatch(x, x2, xx, clusters, w, c, active *torch.Tensor, tol float64) (next, still *torch.Tensor) {
	is := torch.NewScope()
	defer is.Close()
	cc := c.PowScalar(2).SumDims([]int64{2}, false).Unsqueeze(1) // (nc, 1, K)
	sim := x2.Bmm(c.Transpose(1, 2)).Sub(xx).Sub(cc)             // (nc, N, K)
	_, closest := sim.MaxDim(-1, false)
	mask := closest.Unsqueeze(1).Eq(clusters).ToDType(x.DType()).Mul(w) // (nc, K, N)
	mean := mask.Bmm(x).Div(mask.SumDims([]int64{2}, false).Unsqueeze(2))
	mean = mean.MaskedFill(mean.IsNaN(), 0)
	errSq := mean.Sub(c).PowScalar(2).SumDims([]int64{1, 2}, true) // (nc, 1, 1)
	next = torch.Where(active, mean, c)
	still = active.LogicalAnd(errSq.LeScalar(tol).LogicalNot())
	is.Keep(next, still)
	return next, still
}
