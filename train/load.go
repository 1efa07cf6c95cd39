package train

import (
	"fmt"
	"strings"

	"github.com/affgd/affgd/data"
	"github.com/affgd/affgd/models/clip"
	"github.com/affgd/affgd/models/dino"
	"github.com/affgd/affgd/models/head"
	"github.com/affgd/affgd/models/tokenizer"
	"github.com/affgd/affgd/torch"
	"github.com/affgd/affgd/torch/nn"
)

// Files names the weights a [Model] is built from: either Checkpoint (one released-style state
// dict holding vit_model.*, net.* and the head's keys) or DINO and CLIP in any supported format
// plus, optionally, Head (a state dict with the released key names); without a head, a fresh one
// is initialised from Seed.
type Files struct {
	Checkpoint       string
	DINO, CLIP, Head string
	Seed             uint64
	Vocab            string // CLIP's bpe_simple_vocab_16e6.txt.gz; "" = $AFFGD_BPE_VOCAB, else the embedded copy
	Divide           data.Divide
	Device           torch.Device
}

// Load builds the model from f, checking every key and shape of every file.
func Load(f Files) (*Model, error) {
	if err := torch.CheckDevice(f.Device); err != nil {
		return nil, err
	}
	classes := f.Divide.Classes()
	if len(classes) == 0 {
		return nil, fmt.Errorf("train: unknown divide %q", f.Divide)
	}
	dinoPath, clipPath, headPath := f.DINO, f.CLIP, f.Head
	if f.Checkpoint != "" {
		if f.DINO != "" || f.CLIP != "" || f.Head != "" {
			return nil, fmt.Errorf("train: give either a checkpoint or separate dino/clip/head files, not both")
		}
		dinoPath, clipPath, headPath = f.Checkpoint, f.Checkpoint, f.Checkpoint
	}
	if dinoPath == "" || clipPath == "" {
		return nil, fmt.Errorf("train: no weights: give a checkpoint, or both a DINO and a CLIP file")
	}
	tok, _, err := tokenizer.LoadOrEmbedded(f.Vocab)
	if err != nil {
		return nil, err
	}
	// A checkpoint holding every part is read once.
	files := map[string]*nn.File{}
	defer func() {
		for _, file := range files {
			for _, t := range file.Tensors {
				t.Free()
			}
		}
	}()
	read := func(path string) (*nn.File, error) {
		if file, ok := files[path]; ok {
			return file, nil
		}
		file, err := nn.ReadFile(path)
		if err != nil {
			return nil, err
		}
		files[path] = file
		return file, nil
	}
	df, err := read(dinoPath)
	if err != nil {
		return nil, fmt.Errorf("dino: %w", err)
	}
	vit, err := dino.LoadFile(df, dino.OnDevice(f.Device))
	if err != nil {
		return nil, err
	}
	cf, err := read(clipPath)
	if err != nil {
		return nil, fmt.Errorf("clip: %w", err)
	}
	cm, err := clip.LoadFile(cf)
	if err != nil {
		return nil, err
	}
	if err := cm.To(f.Device); err != nil {
		return nil, err
	}
	hd, err := newHead(int64(len(classes)), f.Seed, f.Device)
	if err != nil {
		return nil, err
	}
	if headPath != "" {
		file, err := read(headPath)
		if err != nil {
			return nil, fmt.Errorf("head: %w", err)
		}
		ignore := func(k string) bool { return strings.HasPrefix(k, "vit_model.") || strings.HasPrefix(k, "net.") }
		if err := nn.Load(hd, file.Tensors, headPath, nn.LoadOptions{Ignore: ignore}); err != nil {
			return nil, fmt.Errorf("head (%d classes of divide %q): %w", len(classes), f.Divide, err)
		}
	}
	return &Model{DINO: vit, CLIP: cm, Head: hd, Tok: tok, Classes: classes}, nil
}

// newHead initialises a head from seed on the CPU generator (so a seed means the same weights on
// every device) and moves it to d.
func newHead(k int64, seed uint64, d torch.Device) (*head.Head, error) {
	var h *head.Head
	err := torch.Try(func() {
		g, err := torch.NewGenerator(seed, torch.CPU)
		torch.Raise(err)
		h = head.New(k, g)
		if d.IsCPU() {
			return
		}
		gd, err := torch.NewGenerator(seed, d)
		torch.Raise(err)
		on := head.New(k, gd, d)
		torch.Raise(nn.Load(on, nn.StateDict(h), "initial head", nn.LoadOptions{}))
		h = on
	})
	if err != nil {
		return nil, fmt.Errorf("head: %w", err)
	}
	return h, nil
}
