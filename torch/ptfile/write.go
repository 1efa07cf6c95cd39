package ptfile

import (
	"archive/zip"
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"strconv"
	"unicode/utf8"

	"github.com/affgd/affgd/internal/atomicfile"
)

// archiveName is the top folder of the zip records, as torch.save would
// name it after a file called archive.pt; readers accept any name.
const archiveName = "archive"

// storageAlignment is the alignment of tensor data within the file that
// PyTorch uses (and needs for torch.load(..., mmap=True)).
const storageAlignment = 64

// Write writes entries to the file at path in PyTorch's zip format, as a
// flat collections.OrderedDict from names to tensors (a state dict). It
// writes a temporary file in the same directory, syncs it and renames it
// over path, so path never holds a partial file.
func Write(path string, entries []Entry) error {
	if err := validate(entries); err != nil {
		return fmt.Errorf("ptfile: %s: %w", path, err)
	}
	if err := atomicfile.Write(path, func(w io.Writer) error { return writeTo(w, entries) }); err != nil {
		return fmt.Errorf("ptfile: %s: %w", path, err)
	}
	return nil
}

// WriteTo writes entries to w in PyTorch's zip format; see Write.
func WriteTo(w io.Writer, entries []Entry) error {
	if err := validate(entries); err != nil {
		return fmt.Errorf("ptfile: %w", err)
	}
	if err := writeTo(w, entries); err != nil {
		return fmt.Errorf("ptfile: %w", err)
	}
	return nil
}

// validate checks entries before anything is written.
func validate(entries []Entry) error {
	seen := make(map[string]bool, len(entries))
	for _, e := range entries {
		if !utf8.ValidString(e.Name) {
			return fmt.Errorf("tensor name %q is not valid UTF-8", e.Name)
		}
		if seen[e.Name] {
			return fmt.Errorf("duplicate tensor name %q", e.Name)
		}
		seen[e.Name] = true
		t := e.Tensor
		if t == nil {
			return fmt.Errorf("tensor %q is nil", e.Name)
		}
		if !t.DType.valid() {
			return fmt.Errorf("tensor %q has invalid dtype %v", e.Name, t.DType)
		}
		n := int64(t.DType.ElemSize())
		for _, d := range t.Shape {
			var ok bool
			if n, ok = mulNoOverflow(n, d); !ok {
				return fmt.Errorf("tensor %q has invalid shape %v", e.Name, t.Shape)
			}
		}
		if t.Data == nil && t.Load != nil {
			continue // checked when loaded
		}
		if int64(len(t.Data)) != n {
			return fmt.Errorf("tensor %q: shape %v of %s needs %d bytes of data, has %d", e.Name, t.Shape, t.DType, n, len(t.Data))
		}
	}
	return nil
}

func writeTo(w io.Writer, entries []Entry) error {
	cw := &countingWriter{w: w}
	zw := zip.NewWriter(cw)
	record := func(name string, data []byte) error {
		// Pad the local header with an extra field (ID "FB", as PyTorch
		// does) so that the data starts on an aligned offset.
		if err := zw.Flush(); err != nil {
			return err
		}
		name = archiveName + "/" + name
		start := cw.n + 30 + int64(len(name)) + 4
		pad := (storageAlignment - start%storageAlignment) % storageAlignment
		extra := append([]byte{'F', 'B', byte(pad), byte(pad >> 8)}, bytes.Repeat([]byte{'Z'}, int(pad))...)
		// CreateRaw with the sizes known up front writes no data descriptor
		// after the data, so the next record starts right where cw says.
		rw, err := zw.CreateRaw(&zip.FileHeader{
			Name:               name,
			Method:             zip.Store,
			Extra:              extra,
			CRC32:              crc32.ChecksumIEEE(data),
			CompressedSize64:   uint64(len(data)),
			UncompressedSize64: uint64(len(data)),
		})
		if err != nil {
			return err
		}
		_, err = rw.Write(data)
		return err
	}
	if err := record("data.pkl", statePickle(entries)); err != nil {
		return err
	}
	for _, r := range [][2]string{{".format_version", "1"}, {".storage_alignment", strconv.Itoa(storageAlignment)}, {"byteorder", "little"}} {
		if err := record(r[0], []byte(r[1])); err != nil {
			return err
		}
	}
	for i, e := range entries {
		data := e.Tensor.Data
		if data == nil && e.Tensor.Load != nil {
			var err error
			if data, err = e.Tensor.Load(); err != nil {
				return fmt.Errorf("tensor %q: %w", e.Name, err)
			}
			if want := e.Tensor.Numel() * int64(e.Tensor.DType.ElemSize()); int64(len(data)) != want {
				return fmt.Errorf("tensor %q: shape %v of %s needs %d bytes of data, loaded %d", e.Name, e.Tensor.Shape, e.Tensor.DType, want, len(data))
			}
		}
		if err := record("data/"+strconv.Itoa(i), data); err != nil {
			return err
		}
	}
	if err := record("version", []byte("3\n")); err != nil {
		return err
	}
	return zw.Close()
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// statePickle returns a protocol 2 pickle of an OrderedDict mapping each
// name to torch._utils._rebuild_tensor_v2(storage, 0, shape, stride,
// False, OrderedDict()), the storage of entry i being the persistent id
// ('storage', torch.<Type>Storage, 'i', 'cpu', numel).
func statePickle(entries []Entry) []byte {
	var p pickler
	p.WriteString("\x80\x02")
	p.global("collections", "OrderedDict")
	p.WriteString(")R")
	if len(entries) > 0 {
		p.WriteByte('(') // MARK
		for i, e := range entries {
			t := e.Tensor
			p.str(e.Name)
			p.global("torch._utils", "_rebuild_tensor_v2")
			p.WriteString("((") // MARK for args, MARK for the persistent id
			p.str("storage")
			p.global("torch", dtypeInfo[t.DType].storage)
			p.str(strconv.Itoa(i))
			p.str("cpu")
			p.int(t.Numel())
			p.WriteString("tQ") // TUPLE, BINPERSID
			p.int(0)
			p.tuple(t.Shape)
			p.tuple(contiguousStrides(t.Shape))
			p.WriteByte(0x89) // NEWFALSE: requires_grad
			p.global("collections", "OrderedDict")
			p.WriteString(")R") // backward hooks
			p.WriteString("tR") // TUPLE, REDUCE
		}
		p.WriteByte('u') // SETITEMS
	}
	p.WriteByte('.')
	return p.Bytes()
}

// contiguousStrides returns the strides PyTorch gives a contiguous tensor.
func contiguousStrides(shape []int64) []int64 {
	stride := make([]int64, len(shape))
	s := int64(1)
	for i := len(shape) - 1; i >= 0; i-- {
		stride[i] = s
		s *= max(shape[i], 1)
	}
	return stride
}

type pickler struct{ bytes.Buffer }

func (p *pickler) global(module, name string) {
	p.WriteString("c" + module + "\n" + name + "\n")
}

func (p *pickler) str(s string) {
	p.WriteByte('X') // BINUNICODE
	p.Write(binary.LittleEndian.AppendUint32(nil, uint32(len(s))))
	p.WriteString(s)
}

func (p *pickler) int(v int64) {
	switch {
	case v >= 0 && v < 1<<8:
		p.Write([]byte{'K', byte(v)})
	case v >= 0 && v < 1<<16:
		p.Write([]byte{'M', byte(v), byte(v >> 8)})
	case v >= math.MinInt32 && v <= math.MaxInt32:
		p.WriteByte('J')
		p.Write(binary.LittleEndian.AppendUint32(nil, uint32(v)))
	default: // LONG1 with 8 bytes of two's complement
		p.Write([]byte{0x8a, 8})
		p.Write(binary.LittleEndian.AppendUint64(nil, uint64(v)))
	}
}

func (p *pickler) tuple(vs []int64) {
	if len(vs) == 0 {
		p.WriteByte(')')
		return
	}
	if len(vs) > 3 {
		p.WriteByte('(')
	}
	for _, v := range vs {
		p.int(v)
	}
	if len(vs) > 3 {
		p.WriteByte('t')
	} else {
		p.WriteByte(0x84 + byte(len(vs))) // TUPLE1..3
	}
}
