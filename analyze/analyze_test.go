package analyze

import (
	"math"
	"slices"
	"testing"

	"github.com/affgd/affgd/torch"
)

// statsOf on hand-made maps: histogram bins, the share above γ2, raw mean and max, GT shares.
func TestStatsOf(t *testing.T) {
	var s viewStats
	err := torch.WithScope(func(_ *torch.Scope) {
		// Map 0 normalises to 0, 0.25, 0.75, 1; map 1 is flat (no cell above γ2, all in bin 0).
		raw := torch.FromSlice([]float32{-1, 0, 2, 3, 0.5, 0.5, 0.5, 0.5}).Reshape(2, 2, 2)
		gt := torch.FromSlice([]float32{0, 0, 1, 1, 1, 0, 0, 0}).Reshape(2, 4)
		s = statsOf(raw, 0.6, gt)
	})
	if err != nil {
		t.Fatal(err)
	}
	h0, h1 := s.hist[:ActBins], s.hist[ActBins:]
	want0 := make([]int64, ActBins)
	want0[0], want0[5], want0[15], want0[19] = 1, 1, 1, 1 // 0, 0.25, 0.75, 1 (the top bin holds 1)
	want1 := make([]int64, ActBins)
	want1[0] = 4
	if !slices.Equal(h0, want0) || !slices.Equal(h1, want1) {
		t.Errorf("histograms %v / %v", h0, h1)
	}
	near := func(a, b float64) bool { return math.Abs(a-b) < 1e-6 }
	if !near(s.above[0], 0.5) || s.above[1] != 0 || !near(s.mean[0], 1) || !near(s.max[0], 3) || !near(s.mean[1], 0.5) {
		t.Errorf("above %v mean %v max %v", s.above, s.mean, s.max)
	}
	// Map 0's anchors are its last two cells, both on the GT: weight 2 of 2.
	if !near(s.anchorGT[0], 2) || !near(s.anchors[0], 2) || !near(s.gts[0], 0.5) || s.anchors[1] != 0 {
		t.Errorf("GT: anchors on it %v of %v, cells %v", s.anchorGT, s.anchors, s.gts)
	}
}

// The α sweep of part discovery counts samples whose best p reaches α, unclustered ones never.
func TestPartShareByAlpha(t *testing.T) {
	o := Options{Alphas: []float64{0, 0.5, 0.6, 1}}
	o.defaults()
	c := newClass("x", o)
	c.Ego.Maps, c.Exo.Maps = 4, 12
	c.Discovery.Samples, c.Discovery.Unclustered = 4, 1
	c.Discovery.PScores = []float64{0.5, 0.6, 1}
	c.Clusters[0].Samples, c.Clusters[0].Clustered, c.Clusters[0].EmptyClusters, c.Clusters[0].PartLevel = 4, 3, 3, 2
	c.finish(o)
	if want := []float64{0.75, 0.75, 0.5, 0.25}; !slices.Equal(c.Discovery.PartShare, want) {
		t.Errorf("part share %v, want %v", c.Discovery.PartShare, want)
	}
	if k := c.Clusters[0]; k.K != 2 || k.EmptyShare != 0.5 || k.PartShare != 0.5 {
		t.Errorf("K=2 figures %+v", k)
	}
}
