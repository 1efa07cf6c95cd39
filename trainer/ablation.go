package trainer

import (
	"fmt"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/affgd/affgd/discovery"
)

// LossWeightKeys lists the keys under loss_weights.
func LossWeightKeys() []string { return []string{"ce_ego", "ce_exo", "pixel", "proto"} }

// SettableKeys lists every key Set accepts: the config keys, with loss_weights spelled out as
// loss_weights.ce_ego and so on.
func SettableKeys() []string {
	var ks []string
	for _, k := range Keys() {
		if k == "loss_weights" {
			for _, w := range LossWeightKeys() {
				ks = append(ks, k+"."+w)
			}
			continue
		}
		ks = append(ks, k)
	}
	return ks
}

// Get returns one key's value as Set accepts it (the YAML scalar of the effective config).
func (c Config) Get(key string) (string, error) {
	if !slices.Contains(SettableKeys(), key) {
		return "", fmt.Errorf("unknown key %q (valid keys: %s)", key, strings.Join(SettableKeys(), ", "))
	}
	var node yaml.Node
	if err := node.Encode(c); err != nil {
		return "", err
	}
	cur := &node
	for _, part := range strings.Split(key, ".") {
		var next *yaml.Node
		for i := 0; i+1 < len(cur.Content); i += 2 {
			if cur.Content[i].Value == part {
				next = cur.Content[i+1]
			}
		}
		if next == nil {
			return "", fmt.Errorf("key %q not in the config", key)
		}
		cur = next
	}
	return cur.Value, nil
}

// DiscoveryOptions are part discovery's options for this run: γ1, α, kmeans_k clusters, the
// exo-map indexing and the prototypes mode.
func (c Config) DiscoveryOptions() discovery.Options {
	d := discovery.DefaultOptions()
	d.Gamma1, d.Alpha, d.Clusters = c.Gamma1, c.Alpha, c.KMeansK
	d.PerImageExo = c.ExoMaps == ExoMapsPerImage
	switch c.Prototypes {
	case PrototypesObject:
		d.Prototypes = discovery.ObjectLevel
	case PrototypesPart:
		d.Prototypes = discovery.PartLevel
	}
	return d
}
