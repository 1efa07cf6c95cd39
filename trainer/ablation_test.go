package trainer

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/affgd/affgd/discovery"
	"github.com/affgd/affgd/internal/testref"
	"github.com/affgd/affgd/train"
)

// The ablation keys: defaults are the released code's, bad values are errors naming the key
// and what is valid.
func TestAblationKeys(t *testing.T) {
	c := DefaultConfig()
	if c.KMeansK != 3 || c.Prototypes != PrototypesSelective || c.LossWeights != train.AllLosses {
		t.Fatalf("ablation defaults differ from the released code: %+v", c)
	}
	if d := c.DiscoveryOptions(); d != discovery.DefaultOptions() {
		t.Errorf("default discovery options %+v, want the released %+v", d, discovery.DefaultOptions())
	}
	for _, tc := range []struct {
		name, yaml string
		wantErr    []string // "" = valid; else every string must be in the message
	}{
		{"kmeans_k 0", valid + "kmeans_k: 0\n", []string{"kmeans_k", "in [1, 64]"}},
		{"kmeans_k 4", valid + "kmeans_k: 4\n", nil},
		{"negative weight", valid + "loss_weights: {pixel: -0.5}\n", []string{"loss_weights.pixel", "≥ 0"}},
		{"all weights 0", valid + "loss_weights: {ce_ego: 0, ce_exo: 0, pixel: 0, proto: 0}\n", []string{"loss_weights", "every weight is 0"}},
		{"unknown weight", valid + "loss_weights: {pix: 0}\n", []string{"loss_weights.pix", "ce_ego, ce_exo, pixel, proto"}},
		{"unknown prototypes", valid + "prototypes: parts\n", []string{"prototypes", `"selective", "object" or "part"`}},
		{"classification only", valid + "loss_weights: {pixel: 0, proto: 0}\n", nil},
		{"part", valid + "prototypes: part\n", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := ParseConfig([]byte(tc.yaml))
			if err == nil {
				err = c.Validate()
			}
			if tc.wantErr == nil {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("no error, want one naming %q", tc.wantErr)
			}
			for _, w := range tc.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not name %q", err, w)
				}
			}
		})
	}
	// A partial loss_weights keeps the other weights at 1.
	c, err := ParseConfig([]byte(valid + "loss_weights: {pixel: 0}\n"))
	if err != nil || c.LossWeights != (train.LossWeights{CEEgo: 1, CEExo: 1, Pixel: 0, Proto: 1}) {
		t.Errorf("partial loss_weights: %+v, %v", c.LossWeights, err)
	}
	// prototypes and kmeans_k reach part discovery.
	c.Prototypes, c.KMeansK = PrototypesPart, 5
	if d := c.DiscoveryOptions(); d.Prototypes != discovery.PartLevel || d.Clusters != 5 {
		t.Errorf("discovery options %+v", d)
	}
	c.Prototypes = PrototypesObject
	if d := c.DiscoveryOptions(); d.Prototypes != discovery.ObjectLevel {
		t.Errorf("discovery options %+v", d)
	}
}

func TestSetAblationKeys(t *testing.T) {
	c := DefaultConfig()
	for _, tc := range []struct{ key, value, wantErr string }{
		{"alpha", "0.4", ""},
		{"kmeans_k", "2", ""},
		{"loss_weights.pixel", "0", ""},
		{"prototypes", "object", ""},
		{"alfa", "0.4", "valid keys: data_root"},
		{"loss_weights.pix", "0", "loss_weights.pixel"},
		{"loss_weights", "0", "loss_weights.ce_ego"},
		{"kmeans_k", "two", "want an integer, got two"},
		{"loss_weights.pixel", ".inf", "want a finite number"},
	} {
		err := c.Set(tc.key, tc.value)
		switch {
		case tc.wantErr == "" && err != nil:
			t.Errorf("Set(%s, %s): %v", tc.key, tc.value, err)
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("Set(%s, %s): error %v, want one holding %q", tc.key, tc.value, err, tc.wantErr)
		}
	}
	if c.Alpha != 0.4 || c.KMeansK != 2 || c.LossWeights.Pixel != 0 || c.LossWeights.Proto != 1 || c.Prototypes != "object" {
		t.Errorf("after Set: %+v", c)
	}
	for key, want := range map[string]string{"alpha": "0.4", "loss_weights.pixel": "0", "prototypes": "object", "kmeans_k": "2"} {
		if got, err := c.Get(key); err != nil || got != want {
			t.Errorf("Get(%s) = %q, %v; want %q", key, got, err, want)
		}
	}
}

// Each configs/ablation file sets what its row of the paper's table trains, and names the row
// and the paper's figures.
func TestAblationConfigs(t *testing.T) {
	dir := filepath.Join(testref.RepoRoot(), "configs", "ablation")
	all := train.AllLosses
	noPix := train.LossWeights{CEEgo: 1, CEExo: 1, Proto: 1}
	for _, tc := range []struct {
		file, figures string
		weights       train.LossWeights
		prototypes    string
	}{
		{"1-classification-only.yaml", "1.349 / 0.365 / 1.138", train.LossWeights{CEEgo: 1, CEExo: 1}, PrototypesSelective},
		{"2-object-prototypes.yaml", "1.271 / 0.392 / 1.153", noPix, PrototypesObject},
		{"3-selective-prototypes.yaml", "1.164 / 0.416 / 1.290", noPix, PrototypesSelective},
		{"4-pixel-contrast.yaml", "1.142 / 0.415 / 1.303", all, PrototypesSelective},
		{"5-full-clip-calibration.yaml", "1.124 / 0.433 / 1.280", all, PrototypesSelective},
		{"part-only.yaml", "alpha", all, PrototypesPart},
	} {
		raw, err := os.ReadFile(filepath.Join(dir, tc.file))
		if err != nil {
			t.Error(err)
			continue
		}
		if !strings.Contains(string(raw), tc.figures) {
			t.Errorf("%s: its comment does not give %q", tc.file, tc.figures)
		}
		c, err := ParseConfig(raw)
		if err == nil {
			err = c.Validate()
		}
		if err != nil {
			t.Errorf("%s: %v", tc.file, err)
			continue
		}
		if c.LossWeights != tc.weights || c.Prototypes != tc.prototypes {
			t.Errorf("%s: loss_weights %+v prototypes %s; want %+v %s", tc.file, c.LossWeights, c.Prototypes, tc.weights, tc.prototypes)
		}
		d := DefaultConfig()
		d.DataRoot, d.DINO, d.CLIP, d.OutDir, d.Device, d.LossWeights, d.Prototypes = c.DataRoot, c.DINO, c.CLIP, c.OutDir, c.Device, c.LossWeights, c.Prototypes
		if diff := c.Diff(d); len(diff) > 0 {
			t.Errorf("%s changes %v besides the ablation keys", tc.file, diff)
		}
	}
}

// The log holds each epoch's p-score histogram and part-level share; a classification-only run
// logs neither, nor the losses it does not compute; prototypes: object logs no clustered sample.
func TestLogDiscoveryAndSkippedLosses(t *testing.T) {
	s := smallSynth(t)
	for _, tc := range []struct {
		name       string
		weights    train.LossWeights
		prototypes string
	}{
		{"released", train.AllLosses, PrototypesSelective},
		{"classification only", train.LossWeights{CEEgo: 1, CEExo: 1}, PrototypesSelective},
		{"object prototypes", train.LossWeights{CEEgo: 1, CEExo: 1, Proto: 1}, PrototypesObject},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := smallConfig(t, s)
			c.Epochs, c.MaxSteps, c.TestLimit = 1, 2, 2
			c.LossWeights, c.Prototypes = tc.weights, tc.prototypes
			if err := Run(context.Background(), c, false, &recorder{}); err != nil {
				t.Fatal(err)
			}
			l := readLog(t, c.OutDir)[0]
			for name, w := range map[string]float64{LossPix: tc.weights.Pixel, LossProto: tc.weights.Proto, LossCEEgo: 1, LossCEExo: 1} {
				if _, ok := l.Losses[name]; ok != (w != 0) {
					t.Errorf("%s logged %v with weight %v", name, ok, w)
				}
			}
			samples := l.PartLevel + l.ObjectLevel
			if tc.weights.Proto == 0 {
				if l.PScoreHist != nil || l.PartShare != nil || samples != 0 {
					t.Errorf("no part discovery, yet logged %+v, share %v, %d samples", l.PScoreHist, l.PartShare, samples)
				}
				return
			}
			h := l.PScoreHist
			if h == nil || l.PartShare == nil || len(h.Counts) != PScoreBins || len(h.Edges) != PScoreBins+1 {
				t.Fatalf("p-score histogram %+v, share %v", h, l.PartShare)
			}
			n := h.Unclustered
			for _, k := range h.Counts {
				n += k
			}
			if n != samples || samples != c.BatchSize*c.MaxSteps {
				t.Errorf("histogram holds %d samples, the epoch %d (%d part level)", n, samples, l.PartLevel)
			}
			if *l.PartShare != float64(l.PartLevel)/float64(samples) {
				t.Errorf("part_level_share %v, part %d of %d", *l.PartShare, l.PartLevel, samples)
			}
			if tc.prototypes == PrototypesObject && (h.Unclustered != samples || l.PartLevel != 0) {
				t.Errorf("prototypes object: %d unclustered, %d part level of %d", h.Unclustered, l.PartLevel, samples)
			}
		})
	}
}
