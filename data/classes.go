// Package data holds what affgd knows about its datasets: the affordance class lists of
// AGD20K (Seen and Unseen splits) and HICO-IIF, in the order whose index is the label.
package data

import (
	"fmt"
	"strings"
)

// Divide names a dataset split with its own class list.
type Divide string

// The three splits of METHOD.md §1.
const (
	Seen   Divide = "seen"
	Unseen Divide = "unseen"
	HICO   Divide = "hico"
)

var classes = map[Divide][]string{
	Seen: {"beat", "boxing", "brush_with", "carry", "catch", "cut", "cut_with", "drag", "drink_with", "eat",
		"hit", "hold", "jump", "kick", "lie_on", "lift", "look_out", "open", "pack", "peel", "pick_up", "pour",
		"push", "ride", "sip", "sit_on", "stick", "stir", "swing", "take_photo", "talk_on", "text_on", "throw",
		"type_on", "wash", "write"},
	Unseen: {"carry", "catch", "cut", "cut_with", "drink_with", "eat", "hit", "hold", "jump", "kick", "lie_on",
		"open", "peel", "pick_up", "pour", "push", "ride", "sip", "sit_on", "stick", "swing", "take_photo",
		"throw", "type_on", "wash"},
	HICO: {"cut_with", "drink_with", "hold", "open", "pour", "sip", "stick", "stir", "swing", "type_on"},
}

// ParseDivide accepts "seen", "unseen" or "hico" (any case; "hico-iif" too).
func ParseDivide(s string) (Divide, error) {
	switch d := Divide(strings.ToLower(s)); d {
	case Seen, Unseen, HICO:
		return d, nil
	case "hico-iif":
		return HICO, nil
	}
	return "", fmt.Errorf("data: unknown divide %q (want seen, unseen or hico)", s)
}

// Classes returns the split's action names; the label of an action is its index.
func (d Divide) Classes() []string { return append([]string(nil), classes[d]...) }

// Label returns the label of action in the split, or an error listing the valid actions.
func (d Divide) Label(action string) (int64, error) {
	for i, c := range classes[d] {
		if c == action {
			return int64(i), nil
		}
	}
	return 0, fmt.Errorf("data: action %q is not in the %s class list; valid actions: %s", action, d, strings.Join(classes[d], ", "))
}
