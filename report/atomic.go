package report

import (
	"fmt"
	"io"

	"github.com/affgd/affgd/internal/atomicfile"
)

// writeAtomic writes what write produces to path via a temporary file in the same folder, renamed
// over path once complete; on any failure the temporary file is removed and path is untouched.
func writeAtomic(path string, write func(w io.Writer) error) error {
	if path == "" {
		return fmt.Errorf("empty output path")
	}
	return atomicfile.Write(path, write)
}
