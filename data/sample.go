package data

import (
	"math/rand/v2"
	"path/filepath"
)

// Sample is one training sample's files: E exocentric paths (the item first) and one egocentric
// path.
type Sample struct {
	Exo   []string
	Ego   string
	Label int64
}

// Sample draws the partners and the egocentric image of item i as METHOD §1 says, from rng:
// first the egocentric image, uniform over egocentric/ACTION/OBJECT; then the e−1 partners from
// the item's own exocentric folder (the item included among the candidates). When the folder
// holds more than e images the names are distinct (each draw is repeated while its name is
// already taken, the item's included, as the released loader does); otherwise they are drawn
// with replacement. The item comes first. It panics if i is out of range or e < 1.
func (s *TrainSet) Sample(i, e int, rng *rand.Rand) Sample {
	it := s.Items[i]
	g := s.itemGroup[i]
	if e < 1 {
		panic("data: Sample needs e ≥ 1")
	}
	out := Sample{Label: it.Label, Exo: make([]string, 0, e)}
	out.Ego = g.ego[rng.IntN(len(g.ego))]
	out.Exo = append(out.Exo, it.Path)
	if len(g.exo) > e {
		taken := map[string]bool{filepath.Base(it.Path): true}
		for len(out.Exo) < e {
			p := g.exo[rng.IntN(len(g.exo))]
			if taken[filepath.Base(p)] {
				continue
			}
			taken[filepath.Base(p)] = true
			out.Exo = append(out.Exo, p)
		}
	} else {
		for len(out.Exo) < e {
			out.Exo = append(out.Exo, g.exo[rng.IntN(len(g.exo))])
		}
	}
	return out
}
