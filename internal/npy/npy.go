// Package npy reads and writes NumPy .npy files (format version 1.0, little-endian, C order) of
// the element types affgd exchanges with its Python references and outside checks.
package npy

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"

	"github.com/affgd/affgd/internal/atomicfile"
)

// Array is a dense C-ordered array: Descr is NumPy's type string ("<f4", "<f8", "<i8", "<i4",
// "|u1", "|b1"), Data its little-endian bytes.
type Array struct {
	Descr string
	Shape []int64
	Data  []byte
}

var itemSize = map[string]int{"<f4": 4, "<f8": 8, "<i8": 8, "<i4": 4, "|u1": 1, "|b1": 1}

// Numel returns the number of elements.
func (a *Array) Numel() int64 {
	n := int64(1)
	for _, s := range a.Shape {
		n *= s
	}
	return n
}

// Write writes a to path atomically (temporary file in the same folder, then rename).
func Write(path string, a *Array) error {
	size, ok := itemSize[a.Descr]
	if !ok {
		return fmt.Errorf("npy: %s: unsupported dtype %q", path, a.Descr)
	}
	if int64(len(a.Data)) != a.Numel()*int64(size) {
		return fmt.Errorf("npy: %s: %d bytes for shape %v of %s", path, len(a.Data), a.Shape, a.Descr)
	}
	dims := make([]string, len(a.Shape))
	for i, s := range a.Shape {
		dims[i] = strconv.FormatInt(s, 10)
	}
	shape := strings.Join(dims, ", ")
	if len(a.Shape) == 1 {
		shape += ","
	}
	header := fmt.Sprintf("{'descr': '%s', 'fortran_order': False, 'shape': (%s), }", a.Descr, shape)
	// magic(6) + version(2) + header length(2) + header + padding + '\n' is a multiple of 64.
	pad := 64 - (10+len(header)+1)%64
	if pad == 64 {
		pad = 0
	}
	header += strings.Repeat(" ", pad) + "\n"
	var buf bytes.Buffer
	buf.WriteString("\x93NUMPY\x01\x00")
	binary.Write(&buf, binary.LittleEndian, uint16(len(header)))
	buf.WriteString(header)
	buf.Write(a.Data)

	if err := atomicfile.WriteBytes(path, buf.Bytes()); err != nil {
		return fmt.Errorf("npy: writing %s: %w", path, err)
	}
	return nil
}

var (
	descrRE   = regexp.MustCompile(`'descr':\s*'([^']*)'`)
	fortranRE = regexp.MustCompile(`'fortran_order':\s*(True|False)`)
	shapeRE   = regexp.MustCompile(`'shape':\s*\(([^)]*)\)`)
)

// Read reads an .npy file.
func Read(path string) (*Array, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("npy: %w", err)
	}
	defer f.Close()
	a, err := ReadFrom(bufio.NewReader(f))
	if err != nil {
		return nil, fmt.Errorf("npy: %s: %w", path, err)
	}
	return a, nil
}

// ReadFrom reads an .npy stream.
func ReadFrom(r io.Reader) (*Array, error) {
	var magic [8]byte
	if _, err := io.ReadFull(r, magic[:]); err != nil || string(magic[:6]) != "\x93NUMPY" {
		return nil, fmt.Errorf("not an .npy file")
	}
	var hlen int
	switch magic[6] {
	case 1:
		var n uint16
		if err := binary.Read(r, binary.LittleEndian, &n); err != nil {
			return nil, fmt.Errorf("truncated header")
		}
		hlen = int(n)
	case 2, 3:
		var n uint32
		if err := binary.Read(r, binary.LittleEndian, &n); err != nil {
			return nil, fmt.Errorf("truncated header")
		}
		hlen = int(n)
	default:
		return nil, fmt.Errorf("unsupported .npy version %d", magic[6])
	}
	if hlen > 1<<20 {
		return nil, fmt.Errorf("header of %d bytes", hlen)
	}
	h := make([]byte, hlen)
	if _, err := io.ReadFull(r, h); err != nil {
		return nil, fmt.Errorf("truncated header")
	}
	hs := string(h)
	d, fo, sh := descrRE.FindStringSubmatch(hs), fortranRE.FindStringSubmatch(hs), shapeRE.FindStringSubmatch(hs)
	if d == nil || fo == nil || sh == nil {
		return nil, fmt.Errorf("malformed header %q", hs)
	}
	if fo[1] == "True" {
		return nil, fmt.Errorf("Fortran-ordered arrays are not supported")
	}
	descr := d[1]
	size, ok := itemSize[descr]
	if !ok {
		return nil, fmt.Errorf("unsupported dtype %q (want <f4, <f8, <i8, <i4, |u1 or |b1)", d[1])
	}
	a := &Array{Descr: descr}
	for _, s := range strings.Split(sh[1], ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 0 {
			return nil, fmt.Errorf("bad shape %q", sh[1])
		}
		a.Shape = append(a.Shape, n)
	}
	n := a.Numel() * int64(size)
	if n > 1<<34 {
		return nil, fmt.Errorf("array of %d bytes", n)
	}
	a.Data = make([]byte, n)
	if _, err := io.ReadFull(r, a.Data); err != nil {
		return nil, fmt.Errorf("truncated data (want %d bytes)", n)
	}
	return a, nil
}
