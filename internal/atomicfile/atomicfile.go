// Package atomicfile writes files so that a reader never sees a partial one: the content goes to
// a temporary file beside the target, is synced, and is renamed over the target; on any failure
// (a full disk included) the temporary file is removed and the previous file is left untouched.
// Checkpoints, training state, logs, images and dumps all go through it.
package atomicfile

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// Write creates path with what write produces. The writer it gets is buffered; the file ends up
// with mode 0644 and the rename is synced to the folder.
func Write(path string, write func(w io.Writer) error) error {
	return writeFile(path, 1<<20, true, write)
}

// writeFile writes path through a temporary file beside it (buffered by bufSize bytes), then
// renames it into place; with durable, the file and the rename are synced first.
func writeFile(path string, bufSize int, durable bool, write func(w io.Writer) error) (err error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	if base == "" {
		return fmt.Errorf("%q names a folder, not a file", path)
	}
	f, err := os.CreateTemp(dir, "."+base+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	bw := bufio.NewWriterSize(f, bufSize)
	if err = write(bw); err != nil {
		return err
	}
	if err = bw.Flush(); err != nil {
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	if err = f.Chmod(0o644); err != nil {
		return err
	}
	if durable {
		if err = f.Sync(); err != nil {
			return err
		}
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = os.Rename(tmp, path); err != nil {
		return err
	}
	if durable {
		if d, derr := os.Open(dir); derr == nil { // make the rename durable
			d.Sync()
			d.Close()
		}
	}
	return nil
}

// WriteBytes creates path holding b; see Write.
func WriteBytes(path string, b []byte) error {
	return Write(path, func(w io.Writer) error {
		_, err := w.Write(b)
		return err
	})
}

// RemoveStale removes the temporary files that Write leaves beside dir/name, for each name, when
// its process is killed between creating and renaming one (".NAME.tmp…"), and returns their paths.
// Only call it while no other process can be writing those files (e.g. holding the folder's
// runlock).
func RemoveStale(dir string, names ...string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var removed []string
	for _, e := range entries {
		for _, name := range names {
			if rest, ok := strings.CutPrefix(e.Name(), "."+name+".tmp"); ok && isDigits(rest) && e.Type().IsRegular() {
				p := filepath.Join(dir, e.Name())
				if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
					return removed, err
				}
				removed = append(removed, p)
			}
		}
	}
	return removed, nil
}

// isDigits reports whether s is the non-empty run of digits os.CreateTemp puts for its "*".
func isDigits(s string) bool {
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return s != ""
}

// WriteUnsynced is Write without the syncs: readers still never see a partial file (temporary
// file, then rename), but after a crash the file may be lost or empty. It is for many small files
// that can be made again (a report's pictures), written in a burst and made durable together by
// one SyncFS before the file that refers to them is written with Write.
func WriteUnsynced(path string, write func(w io.Writer) error) error {
	return writeFile(path, 1<<16, false, write)
}

// SyncFS makes every write to the filesystem that holds dir durable (syncfs(2)): one flush for
// a burst of WriteUnsynced files.
func SyncFS(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := unix.Syncfs(int(d.Fd())); err != nil {
		return fmt.Errorf("syncfs %s: %w", dir, err)
	}
	return nil
}
