package data

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// TrainItem is one exocentric training image.
type TrainItem struct {
	Path, Action, Object string
	Label                int64
}

// group is one ACTION/OBJECT folder pair: its exocentric and egocentric image paths, sorted.
type group struct {
	exo, ego []string
}

// TrainSet is the training split of a dataset root (METHOD §1 layouts).
type TrainSet struct {
	Divide Divide
	Root   string
	Items  []TrainItem // sorted by path: deterministic
	groups map[string]*group
	// itemGroup[i] is the group of Items[i].
	itemGroup []*group
}

// splitDir returns the folder holding trainset/ and testset/ for d under root.
func splitDir(root string, d Divide) (string, error) {
	if _, ok := classes[d]; !ok {
		return "", fmt.Errorf("data: unknown divide %q (want seen, unseen or hico)", d)
	}
	if st, err := os.Stat(root); err != nil || !st.IsDir() {
		return "", fmt.Errorf("data: dataset root %s is not a folder", root)
	}
	switch d {
	case Seen:
		return filepath.Join(root, "Seen"), nil
	case Unseen:
		return filepath.Join(root, "Unseen"), nil
	}
	return root, nil
}

// listDir returns the sorted names of the entries of dir that are folders (dirs) or files.
func listDir(dir string, dirs bool) ([]string, error) {
	es, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range es {
		if strings.HasPrefix(e.Name(), ".") {
			continue
		}
		isDir := e.IsDir()
		if e.Type()&os.ModeSymlink != 0 {
			if st, err := os.Stat(filepath.Join(dir, e.Name())); err == nil {
				isDir = st.IsDir()
			}
		}
		if isDir == dirs {
			out = append(out, e.Name())
		}
	}
	sort.Strings(out)
	return out, nil
}

// needDir fails unless path is a folder, naming what it should hold.
func needDir(path, what string, d Divide) error {
	st, err := os.Stat(path)
	if err != nil || !st.IsDir() {
		return fmt.Errorf("data: missing folder %s (%s of the %s split; see METHOD §1 for the layout)", path, what, d)
	}
	return nil
}

// OpenTrain reads ROOT/{Seen,Unseen}/trainset/{exocentric,egocentric}/ACTION/OBJECT/* (AGD20K) or
// ROOT/trainset/... (HICO-IIF, d == HICO). root is the dataset root (the folder holding Seen/
// and Unseen/ for AGD20K). Every ACTION folder must be in the split's class list, and every
// ACTION/OBJECT with exocentric images must have egocentric images.
func OpenTrain(root string, d Divide) (*TrainSet, error) {
	base, err := splitDir(root, d)
	if err != nil {
		return nil, err
	}
	if err := needDir(base, "the split's folder", d); err != nil {
		return nil, err
	}
	exoRoot := filepath.Join(base, "trainset", "exocentric")
	egoRoot := filepath.Join(base, "trainset", "egocentric")
	if err := needDir(filepath.Join(base, "trainset"), "the training images", d); err != nil {
		return nil, err
	}
	if err := needDir(exoRoot, "the exocentric training images", d); err != nil {
		return nil, err
	}
	if err := needDir(egoRoot, "the egocentric training images", d); err != nil {
		return nil, err
	}
	s := &TrainSet{Divide: d, Root: root, groups: map[string]*group{}}
	actions, err := listDir(exoRoot, true)
	if err != nil {
		return nil, fmt.Errorf("data: %w", err)
	}
	for _, action := range actions {
		label, err := d.Label(action)
		if err != nil {
			return nil, fmt.Errorf("data: folder %s: %w (is --divide right?)", filepath.Join(exoRoot, action), err)
		}
		objects, err := listDir(filepath.Join(exoRoot, action), true)
		if err != nil {
			return nil, fmt.Errorf("data: %w", err)
		}
		for _, object := range objects {
			exoDir := filepath.Join(exoRoot, action, object)
			names, err := listDir(exoDir, false)
			if err != nil {
				return nil, fmt.Errorf("data: %w", err)
			}
			if len(names) == 0 {
				return nil, fmt.Errorf("data: exocentric folder %s holds no images", exoDir)
			}
			egoDir := filepath.Join(egoRoot, action, object)
			egoNames, err := listDir(egoDir, false)
			if err != nil || len(egoNames) == 0 {
				return nil, fmt.Errorf("data: egocentric folder %s holds no images, but %s has %d exocentric ones (each sample needs one egocentric image of the same action and object)", egoDir, exoDir, len(names))
			}
			g := &group{}
			for _, n := range names {
				g.exo = append(g.exo, filepath.Join(exoDir, n))
			}
			for _, n := range egoNames {
				g.ego = append(g.ego, filepath.Join(egoDir, n))
			}
			s.groups[action+"/"+object] = g
			for _, p := range g.exo {
				s.Items = append(s.Items, TrainItem{Path: p, Action: action, Object: object, Label: label})
			}
		}
	}
	if len(s.Items) == 0 {
		return nil, fmt.Errorf("data: no exocentric training images under %s", exoRoot)
	}
	sort.Slice(s.Items, func(i, j int) bool { return s.Items[i].Path < s.Items[j].Path })
	for _, it := range s.Items {
		s.itemGroup = append(s.itemGroup, s.groups[it.Action+"/"+it.Object])
	}
	return s, nil
}

// TestItem is one egocentric test image with its ground-truth mask.
type TestItem struct {
	Image, GT, Action, Object string
	Label                     int64
}

// TestSet is the test split of a dataset root.
type TestSet struct {
	Divide Divide
	Root   string
	Items  []TestItem // sorted by image path
}

// OpenTest lists testset/egocentric images that have a GT png (same stem, .png) under
// testset/GT/ACTION/OBJECT; images without one are skipped, as the released loader does.
func OpenTest(root string, d Divide) (*TestSet, error) {
	base, err := splitDir(root, d)
	if err != nil {
		return nil, err
	}
	if err := needDir(base, "the split's folder", d); err != nil {
		return nil, err
	}
	imRoot := filepath.Join(base, "testset", "egocentric")
	gtRoot := filepath.Join(base, "testset", "GT")
	if err := needDir(imRoot, "the egocentric test images", d); err != nil {
		return nil, err
	}
	if err := needDir(gtRoot, "the ground-truth masks", d); err != nil {
		return nil, err
	}
	s := &TestSet{Divide: d, Root: root}
	actions, err := listDir(imRoot, true)
	if err != nil {
		return nil, fmt.Errorf("data: %w", err)
	}
	for _, action := range actions {
		label, err := d.Label(action)
		if err != nil {
			return nil, fmt.Errorf("data: folder %s: %w (is --divide right?)", filepath.Join(imRoot, action), err)
		}
		objects, err := listDir(filepath.Join(imRoot, action), true)
		if err != nil {
			return nil, fmt.Errorf("data: %w", err)
		}
		for _, object := range objects {
			names, err := listDir(filepath.Join(imRoot, action, object), false)
			if err != nil {
				return nil, fmt.Errorf("data: %w", err)
			}
			for _, n := range names {
				gt := filepath.Join(gtRoot, action, object, strings.TrimSuffix(n, filepath.Ext(n))+".png")
				if st, err := os.Stat(gt); err != nil || st.IsDir() {
					continue
				}
				s.Items = append(s.Items, TestItem{Image: filepath.Join(imRoot, action, object, n), GT: gt, Action: action, Object: object, Label: label})
			}
		}
	}
	sort.Slice(s.Items, func(i, j int) bool { return s.Items[i].Image < s.Items[j].Image })
	if len(s.Items) == 0 {
		return nil, fmt.Errorf("data: empty test set: no image under %s has a ground-truth png (same name, .png) under %s", imRoot, gtRoot)
	}
	return s, nil
}
