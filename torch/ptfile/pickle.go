package ptfile

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"math/big"
	"strconv"
	"strings"
	"unicode/utf8"
)

// This file is a small pickle virtual machine. It understands the opcodes
// that torch.save emits (and the rest of protocols 2-5 that need no
// out-of-band data), but it never imports or calls anything: a GLOBAL only
// names a class, and calling it either builds one of the few objects that
// PyTorch checkpoints are made of (see reduce) or yields an inert pyObject.

// Python values as the unpickler represents them: nil (None), bool, int64,
// *big.Int, float64, string, []byte, and the types below.
type (
	pyTuple  []any
	pyList   struct{ items []any } // list, set and frozenset
	pyGlobal struct{ module, name string }
	// pyObject is an instance of a class we do not know; its constructor
	// arguments are kept but nothing is ever executed.
	pyObject struct {
		class pyGlobal
		args  []any
		state any // set by BUILD
	}
	// pyDict is an insertion-ordered dict; assigning an existing (simple)
	// key replaces its value in place, as in Python.
	pyDict struct {
		keys, vals []any
		index      map[any]int
	}
)

func (g pyGlobal) String() string { return g.module + "." + g.name }

func newDict() *pyDict { return &pyDict{index: map[any]int{}} }

func (d *pyDict) set(k, v any) {
	switch k.(type) {
	case nil, bool, int64, float64, string:
		if i, ok := d.index[k]; ok {
			d.vals[i] = v
			return
		}
		d.index[k] = len(d.keys)
	}
	d.keys = append(d.keys, k)
	d.vals = append(d.vals, v)
}

// errUnsupported marks input that is well formed but uses a construct this
// package does not implement.
var errUnsupported = errors.New("unsupported")

// input reads a byte range of an io.ReaderAt through a small buffer and
// knows its exact position, so that a stream of several pickles followed by
// raw data (the legacy format) can be walked.
type input struct {
	r        io.ReaderAt
	pos, end int64
	buf      []byte
	bufPos   int64 // file offset of buf[0]
}

func newInput(r io.ReaderAt, off, end int64) *input {
	return &input{r: r, pos: off, end: end}
}

func (in *input) readByte() (byte, error) {
	if in.pos >= in.bufPos && in.pos < in.bufPos+int64(len(in.buf)) {
		b := in.buf[in.pos-in.bufPos]
		in.pos++
		return b, nil
	}
	if in.pos >= in.end {
		return 0, io.ErrUnexpectedEOF
	}
	n := min(in.end-in.pos, 64<<10)
	if int64(cap(in.buf)) < n {
		in.buf = make([]byte, n)
	}
	in.buf = in.buf[:n]
	m, err := in.r.ReadAt(in.buf, in.pos)
	in.buf, in.bufPos = in.buf[:m], in.pos
	if m == 0 {
		if err == nil || err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return 0, err
	}
	return in.readByte()
}

// read returns the next n bytes. n is checked against the end of the input
// before anything is allocated, so a corrupt length cannot exhaust memory.
func (in *input) read(n int64) ([]byte, error) {
	if n < 0 || n > in.end-in.pos {
		return nil, io.ErrUnexpectedEOF
	}
	p := make([]byte, n)
	if in.pos >= in.bufPos && in.pos+n <= in.bufPos+int64(len(in.buf)) {
		copy(p, in.buf[in.pos-in.bufPos:])
	} else if m, err := in.r.ReadAt(p, in.pos); int64(m) < n {
		if err == nil || err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	in.pos += n
	return p, nil
}

func (in *input) readLine() (string, error) {
	var sb strings.Builder
	for {
		b, err := in.readByte()
		if err != nil {
			return "", err
		}
		if b == '\n' {
			return sb.String(), nil
		}
		if sb.Len() >= 1<<16 {
			return "", errors.New("malformed pickle: line too long")
		}
		sb.WriteByte(b)
	}
}

func (in *input) uint(n int64) (uint64, error) {
	p, err := in.read(n)
	if err != nil {
		return 0, err
	}
	var v uint64
	for i := len(p) - 1; i >= 0; i-- {
		v = v<<8 | uint64(p[i])
	}
	return v, nil
}

// unpickler holds the state of one pickle being read.
type unpickler struct {
	in         *input
	stack      []any
	marks      []int
	memo       map[uint64]any
	persistent func(id any) (any, error)
	reduce     func(fn pyGlobal, args pyTuple) (any, error)
}

var errStackUnderflow = errors.New("malformed pickle: stack underflow")

func (u *unpickler) push(v any) { u.stack = append(u.stack, v) }

func (u *unpickler) pop() (any, error) {
	n := len(u.stack)
	if n == 0 || (len(u.marks) > 0 && u.marks[len(u.marks)-1] == n) {
		return nil, errStackUnderflow
	}
	v := u.stack[n-1]
	u.stack = u.stack[:n-1]
	return v, nil
}

func (u *unpickler) top() (any, error) {
	n := len(u.stack)
	if n == 0 || (len(u.marks) > 0 && u.marks[len(u.marks)-1] == n) {
		return nil, errStackUnderflow
	}
	return u.stack[n-1], nil
}

// popMark returns the items pushed since the last MARK and removes them.
func (u *unpickler) popMark() ([]any, error) {
	if len(u.marks) == 0 {
		return nil, errors.New("malformed pickle: no MARK on the stack")
	}
	m := u.marks[len(u.marks)-1]
	u.marks = u.marks[:len(u.marks)-1]
	items := append([]any(nil), u.stack[m:]...)
	u.stack = u.stack[:m]
	return items, nil
}

// load runs the pickle program from the current input position up to and
// including its STOP opcode and returns the object it built.
func (u *unpickler) load() (any, error) {
	u.stack, u.marks, u.memo = nil, nil, map[uint64]any{}
	for {
		start := u.in.pos
		op, err := u.in.readByte()
		if err != nil {
			return nil, err
		}
		done, err := u.step(op)
		if err != nil {
			return nil, fmt.Errorf("pickle opcode 0x%02x at offset %d: %w", op, start, err)
		}
		if done {
			if len(u.stack) != 1 || len(u.marks) != 0 {
				return nil, errors.New("malformed pickle: STOP with a stack that does not hold exactly one object")
			}
			return u.stack[0], nil
		}
	}
}

func (u *unpickler) step(op byte) (stop bool, err error) {
	in := u.in
	switch op {
	case 0x80: // PROTO
		if _, err = in.readByte(); err != nil {
			return
		}
	case 0x95: // FRAME: a buffering hint only
		_, err = in.read(8)
	case '.': // STOP
		return true, nil
	case '(': // MARK
		u.marks = append(u.marks, len(u.stack))
	case '0': // POP
		if len(u.marks) > 0 && u.marks[len(u.marks)-1] == len(u.stack) {
			_, err = u.popMark()
		} else {
			_, err = u.pop()
		}
	case '1': // POP_MARK
		_, err = u.popMark()
	case '2': // DUP
		var v any
		if v, err = u.top(); err == nil {
			u.push(v)
		}

	case 'N':
		u.push(nil)
	case 0x88:
		u.push(true)
	case 0x89:
		u.push(false)
	case 'K', 'M', 'J': // BININT1, BININT2, BININT
		size := argSize(op)
		var v uint64
		if v, err = in.uint(size); err == nil {
			if op == 'J' {
				u.push(int64(int32(uint32(v))))
			} else {
				u.push(int64(v))
			}
		}
	case 0x8a, 0x8b: // LONG1, LONG4
		var n uint64
		if n, err = in.uint(argSize(op)); err != nil {
			return
		}
		var p []byte
		if p, err = in.read(int64(n)); err == nil {
			u.push(decodeLong(p))
		}
	case 'I', 'L': // INT, LONG (text)
		var s string
		if s, err = in.readLine(); err != nil {
			return
		}
		s = strings.TrimSuffix(s, "L")
		switch s {
		case "00":
			u.push(false)
		case "01":
			u.push(true)
		default:
			n, ok := new(big.Int).SetString(s, 10)
			if !ok {
				return false, fmt.Errorf("malformed pickle: bad integer %q", s)
			}
			u.push(normLong(n))
		}
	case 'G': // BINFLOAT (big-endian)
		var p []byte
		if p, err = in.read(8); err == nil {
			u.push(math.Float64frombits(binary.BigEndian.Uint64(p)))
		}
	case 'F': // FLOAT (text)
		var s string
		if s, err = in.readLine(); err != nil {
			return
		}
		f, perr := strconv.ParseFloat(s, 64)
		if perr != nil {
			return false, fmt.Errorf("malformed pickle: bad float %q", s)
		}
		u.push(f)

	case 'X', 0x8c, 0x8d: // BINUNICODE, SHORT_BINUNICODE, BINUNICODE8
		var p []byte
		if p, err = u.counted(argSize(op)); err != nil {
			return
		}
		if !utf8.Valid(p) {
			return false, errors.New("malformed pickle: string is not valid UTF-8")
		}
		u.push(string(p))
	case 'T', 'U': // BINSTRING, SHORT_BINSTRING: Python 2 str, kept as bytes
		var p []byte
		if p, err = u.counted(argSize(op)); err == nil {
			u.push(p)
		}
	case 'B', 'C', 0x8e, 0x96: // BINBYTES, SHORT_BINBYTES, BINBYTES8, BYTEARRAY8
		var p []byte
		if p, err = u.counted(argSize(op)); err == nil {
			u.push(p)
		}

	case ')':
		u.push(pyTuple{})
	case 0x85, 0x86, 0x87: // TUPLE1..3
		n := int(op - 0x84)
		if len(u.stack) < n || (len(u.marks) > 0 && len(u.stack)-n < u.marks[len(u.marks)-1]) {
			return false, errStackUnderflow
		}
		t := append(pyTuple(nil), u.stack[len(u.stack)-n:]...)
		u.stack = append(u.stack[:len(u.stack)-n], t)
	case 't', 'l', 0x91: // TUPLE, LIST, FROZENSET
		var items []any
		if items, err = u.popMark(); err != nil {
			return
		}
		if op == 't' {
			u.push(pyTuple(items))
		} else {
			u.push(&pyList{items: items})
		}
	case ']', 0x8f: // EMPTY_LIST, EMPTY_SET
		u.push(&pyList{})
	case '}':
		u.push(newDict())
	case 'd': // DICT
		var items []any
		if items, err = u.popMark(); err != nil {
			return
		}
		d := newDict()
		if err = setItems(d, items); err == nil {
			u.push(d)
		}
	case 'a', 'e', 0x90: // APPEND, APPENDS, ADDITEMS
		var items []any
		if op == 'a' {
			var v any
			if v, err = u.pop(); err != nil {
				return
			}
			items = []any{v}
		} else if items, err = u.popMark(); err != nil {
			return
		}
		var target any
		if target, err = u.top(); err != nil {
			return
		}
		l, ok := target.(*pyList)
		if !ok {
			return false, fmt.Errorf("%w: append to %s", errUnsupported, typeName(target))
		}
		l.items = append(l.items, items...)
	case 's', 'u': // SETITEM, SETITEMS
		var items []any
		if op == 's' {
			var k, v any
			if v, err = u.pop(); err != nil {
				return
			}
			if k, err = u.pop(); err != nil {
				return
			}
			items = []any{k, v}
		} else if items, err = u.popMark(); err != nil {
			return
		}
		var target any
		if target, err = u.top(); err != nil {
			return
		}
		d, ok := target.(*pyDict)
		if !ok {
			return false, fmt.Errorf("%w: set item of %s", errUnsupported, typeName(target))
		}
		err = setItems(d, items)

	case 'h', 'j', 'g': // BINGET, LONG_BINGET, GET
		var i uint64
		if i, err = u.memoIndex(op, 'h', 'j'); err != nil {
			return
		}
		v, ok := u.memo[i]
		if !ok {
			return false, fmt.Errorf("malformed pickle: memo key %d not found", i)
		}
		u.push(v)
	case 'q', 'r', 'p', 0x94: // BINPUT, LONG_BINPUT, PUT, MEMOIZE
		var i uint64
		if op == 0x94 {
			i = uint64(len(u.memo))
		} else if i, err = u.memoIndex(op, 'q', 'r'); err != nil {
			return
		}
		var v any
		if v, err = u.top(); err == nil {
			u.memo[i] = v
		}

	case 'c': // GLOBAL
		var mod, name string
		if mod, err = in.readLine(); err != nil {
			return
		}
		if name, err = in.readLine(); err != nil {
			return
		}
		if err = codeGlobal(mod, name); err != nil {
			return
		}
		u.push(pyGlobal{mod, name})
	case 0x93: // STACK_GLOBAL
		var mod, name any
		if name, err = u.pop(); err != nil {
			return
		}
		if mod, err = u.pop(); err != nil {
			return
		}
		m, ok1 := mod.(string)
		n, ok2 := name.(string)
		if !ok1 || !ok2 {
			return false, errors.New("malformed pickle: STACK_GLOBAL needs two strings")
		}
		if err = codeGlobal(m, n); err != nil {
			return
		}
		u.push(pyGlobal{m, n})
	case 'R': // REDUCE
		var fn, args any
		if args, err = u.pop(); err != nil {
			return
		}
		if fn, err = u.pop(); err != nil {
			return
		}
		g, ok1 := fn.(pyGlobal)
		t, ok2 := args.(pyTuple)
		if !ok1 || !ok2 {
			return false, fmt.Errorf("%w: call of %s with %s", errUnsupported, typeName(fn), typeName(args))
		}
		var v any
		if v, err = u.reduce(g, t); err == nil {
			u.push(v)
		}
	case 0x81, 0x92: // NEWOBJ, NEWOBJ_EX: instances stay inert
		if op == 0x92 {
			if _, err = u.pop(); err != nil { // kwargs
				return
			}
		}
		var cls, args any
		if args, err = u.pop(); err != nil {
			return
		}
		if cls, err = u.pop(); err != nil {
			return
		}
		g, ok1 := cls.(pyGlobal)
		t, ok2 := args.(pyTuple)
		if !ok1 || !ok2 {
			return false, fmt.Errorf("%w: new object of %s", errUnsupported, typeName(cls))
		}
		u.push(&pyObject{class: g, args: t})
	case 'b': // BUILD: keep the state of inert objects, drop dict attributes
		var state, inst any
		if state, err = u.pop(); err != nil {
			return
		}
		if inst, err = u.top(); err == nil {
			if o, ok := inst.(*pyObject); ok {
				o.state = state
			}
		}
	case 'Q': // BINPERSID
		var id any
		if id, err = u.pop(); err != nil {
			return
		}
		var v any
		if v, err = u.persistent(id); err == nil {
			u.push(v)
		}
	default:
		return false, fmt.Errorf("%w pickle opcode", errUnsupported)
	}
	return false, err
}

// argSize is the size of the fixed-width integer argument (or length
// prefix) of op.
func argSize(op byte) int64 {
	switch op {
	case 'K', 0x8a, 0x8c, 'U', 'C':
		return 1
	case 'M':
		return 2
	case 'J', 0x8b, 'X', 'T', 'B':
		return 4
	}
	return 8 // 0x8d, 0x8e, 0x96
}

// counted reads a byte string preceded by its little-endian length.
func (u *unpickler) counted(lenSize int64) ([]byte, error) {
	n, err := u.in.uint(lenSize)
	if err != nil {
		return nil, err
	}
	if n > math.MaxInt64 {
		return nil, io.ErrUnexpectedEOF
	}
	return u.in.read(int64(n))
}

func (u *unpickler) memoIndex(op, one, four byte) (uint64, error) {
	switch op {
	case one:
		return u.in.uint(1)
	case four:
		return u.in.uint(4)
	}
	s, err := u.in.readLine()
	if err != nil {
		return 0, err
	}
	i, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("malformed pickle: bad memo index %q", s)
	}
	return i, nil
}

func setItems(d *pyDict, items []any) error {
	if len(items)%2 != 0 {
		return errors.New("malformed pickle: odd number of dict items")
	}
	for i := 0; i < len(items); i += 2 {
		d.set(items[i], items[i+1])
	}
	return nil
}

// decodeLong decodes a little-endian two's-complement integer.
func decodeLong(p []byte) any {
	if len(p) == 0 {
		return int64(0)
	}
	be := make([]byte, len(p))
	for i, b := range p {
		be[len(p)-1-i] = b
	}
	n := new(big.Int).SetBytes(be)
	if p[len(p)-1]&0x80 != 0 {
		n.Sub(n, new(big.Int).Lsh(big.NewInt(1), uint(8*len(p))))
	}
	return normLong(n)
}

func normLong(n *big.Int) any {
	if n.IsInt64() {
		return n.Int64()
	}
	return n
}

func typeName(v any) string {
	switch v := v.(type) {
	case nil:
		return "None"
	case pyGlobal:
		return v.String()
	case *pyObject:
		return v.class.String() + " object"
	case pyTuple:
		return "tuple"
	case *pyList:
		return "list"
	case *pyDict:
		return "dict"
	case *storageRef:
		return "storage"
	case *tensorRef:
		return "tensor"
	}
	return fmt.Sprintf("%T", v)
}
