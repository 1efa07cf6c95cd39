package train

import (
	"encoding/json"
	"fmt"
	"os"
	"strconv"

	"github.com/affgd/affgd/torch"
	"github.com/affgd/affgd/torch/nn"
)

// LoadBatch reads a batch file: a torch.save dict with exo float32 (B, E, 3, H, W), ego
// (B, 3, H, W) and label int64 (B), placing the tensors on dev. exo may be absent when needExo is
// false (inference).
func LoadBatch(path string, dev torch.Device, needExo bool) (Batch, error) {
	f, err := nn.ReadFile(path)
	if err != nil {
		return Batch{}, err
	}
	var b Batch
	for _, k := range []string{"ego", "label", "exo"} {
		if _, ok := f.Tensors[k]; !ok && (k != "exo" || needExo) {
			return b, fmt.Errorf("batch %s has no %q tensor (want exo (B,E,3,H,W), ego (B,3,H,W), label (B) int64)", path, k)
		}
	}
	err = torch.Try(func() {
		b.Ego = f.Tensors["ego"].ToDType(torch.Float32).To(dev)
		b.Label = f.Tensors["label"].ToDType(torch.Int64).To(dev)
		if x, ok := f.Tensors["exo"]; ok {
			b.Exo = x.ToDType(torch.Float32).To(dev)
		}
	})
	return b, err
}

// ReadKMeansInit reads a JSON object {"<sample index>": [i, j, k], ...} of injected K-means
// initialisations (candidate indices per sample); an empty path gives none.
func ReadKMeansInit(path string) (map[int][]int64, error) {
	if path == "" {
		return nil, nil
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var m map[string][]int64
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("%s: want a JSON object {\"<sample>\": [i, j, k]}: %v", path, err)
	}
	out := map[int][]int64{}
	for k, v := range m {
		i, err := strconv.Atoi(k)
		if err != nil || i < 0 {
			return nil, fmt.Errorf("%s: key %q is not a sample index", path, k)
		}
		out[i] = v
	}
	return out, nil
}
