package trainer

import (
	"errors"
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

// Set sets one key (a SettableKeys name) from its text as a YAML scalar, e.g. Set("alpha", "0.5")
// or Set("loss_weights.pixel", "0"). An unknown key lists the valid ones; a value of the wrong
// type names the key. Ranges are checked by Validate.
func (c *Config) Set(key, value string) error {
	if !slices.Contains(SettableKeys(), key) {
		return fmt.Errorf("unknown key %q (valid keys: %s)", key, strings.Join(SettableKeys(), ", "))
	}
	scalar := &yaml.Node{Kind: yaml.ScalarNode, Value: value}
	node := scalar
	path := strings.Split(key, ".")
	for i := len(path) - 1; i >= 0; i-- {
		node = &yaml.Node{Kind: yaml.MappingNode, Content: []*yaml.Node{{Kind: yaml.ScalarNode, Value: path[i]}, node}}
	}
	next := *c
	if err := node.Decode(&next); err != nil {
		msg := err.Error()
		var te *yaml.TypeError
		if errors.As(err, &te) && len(te.Errors) > 0 {
			msg = te.Errors[0]
			if i := strings.Index(msg, ": "); strings.HasPrefix(msg, "line ") && i >= 0 {
				msg = msg[i+2:]
			}
		}
		return fmt.Errorf("%s: %s", key, strings.TrimPrefix(msg, "yaml: "))
	}
	*c = next
	return nil
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
