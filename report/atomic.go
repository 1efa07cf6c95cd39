package report

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// writeAtomic writes what write produces to path via a temporary file in the same folder, renamed
// over path once complete; on any failure the temporary file is removed and path is untouched.
func writeAtomic(path string, write func(w io.Writer) error) (err error) {
	if path == "" {
		return fmt.Errorf("empty output path")
	}
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".tmp-*")
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
	if err = write(f); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = os.Chmod(tmp, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
