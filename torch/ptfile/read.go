package ptfile

import (
	"archive/zip"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"math/big"
	"strconv"
	"strings"
)

// ReadFrom is like Read but reads the size bytes of r. The name is used in
// error messages only.
func ReadFrom(r io.ReaderAt, size int64, name string) ([]Entry, error) {
	tensors, _, err := readAll(r, size, name)
	return tensors, err
}

// readAll turns any panic, which would be a bug, into an error.
func readAll(r io.ReaderAt, size int64, name string) (tensors []Entry, other map[string]any, err error) {
	defer func() {
		if p := recover(); p != nil {
			tensors, other = nil, nil
			err = fmt.Errorf("ptfile: %s: internal error reading file: %v", name, p)
		}
	}()
	return decode(r, size, name)
}

var legacyMagic, _ = new(big.Int).SetString("1950a86a20f9469cfc6c", 16)

const legacyProtocol = 1001

// storageRef is a storage named by a persistent id in the pickle.
type storageRef struct {
	dtype DType
	key   string
	numel int64
	root  *storageRef // set for a view into another storage (legacy only)
	off   int64       // element offset of a view in root
	data  []byte      // loaded bytes of a root storage
	refs  int         // tensors still to be materialised from a root
}

// tensorRef is a tensor as described in the pickle: a strided view.
type tensorRef struct {
	storage       *storageRef
	offset        int64
	shape, stride []int64
}

func decode(r io.ReaderAt, size int64, name string) ([]Entry, map[string]any, error) {
	wrap := func(err error) error {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return fmt.Errorf("ptfile: %s: truncated file: %w", name, err)
		}
		return fmt.Errorf("ptfile: %s: %w", name, err)
	}
	if size == 0 {
		return nil, nil, wrap(fmt.Errorf("empty file, expected a PyTorch checkpoint"))
	}
	head := make([]byte, min(size, 512))
	if _, err := r.ReadAt(head, 0); err != nil && err != io.EOF {
		return nil, nil, wrap(err)
	}
	var (
		obj  any
		load func(*storageRef) error
		err  error
	)
	switch {
	case bytes.HasPrefix(head, []byte("PK\x03\x04")) || bytes.HasPrefix(head, []byte("PK\x05\x06")):
		obj, load, err = readZip(r, size)
	case len(head) > 262 && string(head[257:262]) == "ustar":
		err = fmt.Errorf("legacy tar checkpoint (PyTorch < 0.4) is not supported")
	default:
		obj, load, err = readLegacy(r, size)
	}
	if err != nil {
		return nil, nil, wrap(err)
	}
	tensors, other, err := flatten(obj, load, size)
	if err != nil {
		return nil, nil, wrap(err)
	}
	return tensors, other, nil
}

// readZip reads the zip format: <archive>/data.pkl holds the pickle and
// <archive>/data/<key> the bytes of each storage.
func readZip(r io.ReaderAt, size int64) (any, func(*storageRef) error, error) {
	zr, err := zip.NewReader(r, size)
	if err != nil {
		return nil, nil, fmt.Errorf("corrupt or truncated zip archive: %v", err)
	}
	prefix := ""
	records := map[string]*zip.File{}
	for _, f := range zr.File {
		records[f.Name] = f
		if dir, ok := strings.CutSuffix(f.Name, "/data.pkl"); ok && prefix == "" && dir != "" && !strings.Contains(dir, "/") {
			prefix = dir + "/"
		}
	}
	if prefix == "" {
		return nil, nil, fmt.Errorf("not a PyTorch checkpoint (zip archive without <archive>/data.pkl)")
	}
	if records[prefix+"constants.pkl"] != nil {
		return nil, nil, fmt.Errorf("TorchScript archive (torch.jit.save) is not supported, expected a torch.save checkpoint")
	}
	if f := records[prefix+"byteorder"]; f != nil {
		b, err := readRecord(f, 16, size)
		if err != nil {
			return nil, nil, fmt.Errorf("reading %s: %w", f.Name, err)
		}
		switch string(b) {
		case "little":
		case "big":
			return nil, nil, fmt.Errorf("big-endian checkpoint is not supported")
		default:
			return nil, nil, fmt.Errorf("bad byteorder record %q", b)
		}
	}
	pkl, err := readRecord(records[prefix+"data.pkl"], -1, size)
	if err != nil {
		return nil, nil, fmt.Errorf("reading %sdata.pkl: %w", prefix, err)
	}
	storages := map[string]*storageRef{}
	u := &unpickler{
		in:     newInput(bytes.NewReader(pkl), 0, int64(len(pkl))),
		reduce: reduce,
		persistent: func(id any) (any, error) {
			t, ok := id.(pyTuple)
			if !ok || len(t) != 5 || pyString(t[0]) != "storage" {
				return nil, fmt.Errorf("%w persistent id %s, expected ('storage', type, key, location, numel)", errUnsupported, describe(id))
			}
			s, err := newStorage(t[1], t[2], t[4])
			if err != nil {
				return nil, err
			}
			if old := storages[s.key]; old != nil {
				if old.dtype != s.dtype || old.numel != s.numel {
					return nil, fmt.Errorf("storage %s is used as both %d %s and %d %s elements", s.key, old.numel, old.dtype, s.numel, s.dtype)
				}
				return old, nil
			}
			storages[s.key] = s
			return s, nil
		},
	}
	obj, err := u.load()
	if err != nil {
		return nil, nil, fmt.Errorf("reading %sdata.pkl: %w", prefix, err)
	}
	load := func(s *storageRef) error {
		f := records[prefix+"data/"+s.key]
		if f == nil {
			return fmt.Errorf("storage record %sdata/%s is missing", prefix, s.key)
		}
		need, ok := mulNoOverflow(s.numel, int64(s.dtype.ElemSize()))
		if !ok {
			return fmt.Errorf("storage %s is too large", s.key)
		}
		data, err := readRecord(f, need, size)
		if err != nil {
			return fmt.Errorf("reading %s: %w", f.Name, err)
		}
		if int64(len(data)) < need {
			return fmt.Errorf("storage record %s holds %d bytes, expected %d", f.Name, len(data), need)
		}
		s.data = data
		return nil
	}
	return obj, load, nil
}

// readRecord returns the first n bytes of the zip record f (all of it if n
// is negative, or if it is shorter). Memory is allocated up front only when
// the record is stored uncompressed and so cannot be larger than the
// archive; otherwise it grows with the data actually decompressed.
func readRecord(f *zip.File, n, archiveSize int64) ([]byte, error) {
	rc, err := f.Open()
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	if f.Method == zip.Store && f.UncompressedSize64 <= uint64(archiveSize) {
		all := int64(f.UncompressedSize64)
		if n < 0 || n > all {
			n = all
		}
		buf := make([]byte, n)
		if _, err := io.ReadFull(rc, buf); err != nil {
			return nil, err
		}
		if n == all { // read on to EOF so that the CRC is checked
			if _, err := rc.Read(make([]byte, 1)); err != io.EOF {
				if err == nil {
					err = errors.New("record longer than its header says")
				}
				return nil, err
			}
		}
		return buf, nil
	}
	if n < 0 {
		n = math.MaxInt64
	}
	return io.ReadAll(io.LimitReader(rc, n))
}

// readLegacy reads the pre-1.6 format: pickles of the magic number, the
// protocol version, system information and the object, then a pickled
// list of storage keys, then each storage in that order as an int64
// element count followed by the raw elements.
func readLegacy(r io.ReaderAt, size int64) (any, func(*storageRef) error, error) {
	in := newInput(r, 0, size)
	roots := map[string]*storageRef{}
	u := &unpickler{
		in:     in,
		reduce: reduce,
		persistent: func(id any) (any, error) {
			t, ok := id.(pyTuple)
			if ok && len(t) >= 2 && pyString(t[0]) == "module" {
				return t[1], nil // source code of a pickled module class: ignored
			}
			if !ok || len(t) != 6 || pyString(t[0]) != "storage" {
				return nil, fmt.Errorf("%w persistent id %s, expected ('storage', type, key, location, numel, view)", errUnsupported, describe(id))
			}
			s, err := newStorage(t[1], t[2], t[4])
			if err != nil {
				return nil, err
			}
			root := roots[s.key]
			if root == nil {
				root = s
				roots[s.key] = s
			} else if root.dtype != s.dtype {
				return nil, fmt.Errorf("storage %s is used as both %s and %s elements", s.key, root.dtype, s.dtype)
			}
			if t[5] == nil {
				return root, nil
			}
			view, ok := t[5].(pyTuple)
			if !ok || len(view) != 3 {
				return nil, fmt.Errorf("bad storage view %s", describe(t[5]))
			}
			off, ok1 := view[1].(int64)
			n, ok2 := view[2].(int64)
			if !ok1 || !ok2 || off < 0 || n < 0 {
				return nil, fmt.Errorf("bad storage view %s", describe(t[5]))
			}
			return &storageRef{dtype: root.dtype, key: pyString(view[0]), numel: n, root: root, off: off}, nil
		},
	}
	magic, err := u.load()
	if n, ok := magic.(*big.Int); err != nil || !ok || n.Cmp(legacyMagic) != 0 {
		return nil, nil, fmt.Errorf("not a PyTorch checkpoint (no data.pkl in zip and no legacy magic number)")
	}
	if v, err := u.load(); err != nil {
		return nil, nil, fmt.Errorf("reading protocol version: %w", err)
	} else if v != int64(legacyProtocol) {
		return nil, nil, fmt.Errorf("unsupported legacy protocol version %s, expected %d", describe(v), legacyProtocol)
	}
	info, err := u.load()
	if err != nil {
		return nil, nil, fmt.Errorf("reading system info: %w", err)
	}
	if d, ok := info.(*pyDict); ok {
		for i, k := range d.keys {
			if pyString(k) == "little_endian" && d.vals[i] == false {
				return nil, nil, fmt.Errorf("big-endian checkpoint is not supported")
			}
		}
	}
	obj, err := u.load()
	if err != nil {
		return nil, nil, fmt.Errorf("reading object pickle: %w", err)
	}
	keys, err := u.load()
	if err != nil {
		return nil, nil, fmt.Errorf("reading storage keys: %w", err)
	}
	list, ok := keys.(*pyList)
	if !ok {
		return nil, nil, fmt.Errorf("bad storage key list %s", describe(keys))
	}
	for _, k := range list.items {
		s := roots[pyString(k)]
		if s == nil {
			return nil, nil, fmt.Errorf("storage key %s is not used by the object", describe(k))
		}
		numel, err := in.uint(8)
		if err != nil {
			return nil, nil, fmt.Errorf("reading storage %s: %w", s.key, err)
		}
		nbytes, ok := mulNoOverflow(int64(numel), int64(s.dtype.ElemSize()))
		if numel > math.MaxInt64 || !ok || nbytes > size-in.pos {
			return nil, nil, fmt.Errorf("reading storage %s of %d elements: %w", s.key, numel, io.ErrUnexpectedEOF)
		}
		if s.data, err = in.read(nbytes); err != nil {
			return nil, nil, fmt.Errorf("reading storage %s: %w", s.key, err)
		}
		s.numel = int64(numel)
	}
	load := func(s *storageRef) error {
		return fmt.Errorf("storage %s has no data in the file", s.key)
	}
	return obj, load, nil
}

// newStorage makes a storageRef from the storage type, key and element
// count of a persistent id.
func newStorage(typ, key, numel any) (*storageRef, error) {
	g, _ := typ.(pyGlobal)
	var dt DType
	if g.module == "torch" || g.module == "torch.cuda" {
		for d := Float32; d.valid(); d++ {
			if dtypeInfo[d].storage == g.name {
				dt = d
			}
		}
	}
	if dt == 0 {
		return nil, fmt.Errorf("%w storage type %s", errUnsupported, describe(typ))
	}
	n, ok := numel.(int64)
	if !ok || n < 0 {
		return nil, fmt.Errorf("bad storage size %s", describe(numel))
	}
	k, ok := key.(string)
	if b, isBytes := key.([]byte); isBytes {
		k, ok = string(b), true
	}
	if !ok {
		return nil, fmt.Errorf("bad storage key %s", describe(key))
	}
	return &storageRef{dtype: dt, key: k, numel: n}, nil
}

// reduce applies a pickled callable to its arguments. Only the callables
// that PyTorch checkpoints are made of do anything; others give an inert
// object.
func reduce(fn pyGlobal, args pyTuple) (any, error) {
	switch fn.String() {
	case "collections.OrderedDict", "builtins.dict", "__builtin__.dict":
		d := newDict()
		if len(args) == 0 {
			return d, nil
		}
		var pairs []any
		switch a := args[0].(type) {
		case *pyList:
			pairs = a.items
		case pyTuple:
			pairs = a
		}
		for _, p := range pairs {
			kv, ok := p.(pyTuple)
			if !ok || len(kv) != 2 {
				return nil, fmt.Errorf("%w arguments to %s", errUnsupported, fn)
			}
			d.set(kv[0], kv[1])
		}
		return d, nil
	case "torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_tensor":
		return rebuildTensor(fn, args)
	case "torch._utils._rebuild_parameter", "torch._utils._rebuild_parameter_with_state":
		if len(args) >= 1 {
			if t, ok := args[0].(*tensorRef); ok {
				return t, nil
			}
		}
	case "torch._tensor._rebuild_from_type_v2":
		// (func, new_type, args, state): a tensor subclass; keep the tensor.
		if len(args) == 4 {
			f, ok1 := args[0].(pyGlobal)
			a, ok2 := args[2].(pyTuple)
			if ok1 && ok2 && f.String() != fn.String() {
				return reduce(f, a)
			}
		}
	case "torch.Size":
		if len(args) == 1 {
			if t, ok := args[0].(pyTuple); ok {
				return t, nil
			}
		}
	default:
		if !strings.HasPrefix(fn.module, "torch") || !strings.HasPrefix(fn.name, "_rebuild") {
			return &pyObject{class: fn, args: args}, nil
		}
	}
	return nil, fmt.Errorf("%w call %s%s", errUnsupported, fn, describe(args))
}

func rebuildTensor(fn pyGlobal, args pyTuple) (any, error) {
	if len(args) < 4 {
		return nil, fmt.Errorf("%s needs at least 4 arguments, got %d", fn, len(args))
	}
	s, ok := args[0].(*storageRef)
	if !ok {
		return nil, fmt.Errorf("%w tensor storage %s", errUnsupported, describe(args[0]))
	}
	off, ok := args[1].(int64)
	shape, ok1 := intTuple(args[2])
	stride, ok2 := intTuple(args[3])
	if !ok || !ok1 || !ok2 || off < 0 || len(shape) != len(stride) {
		return nil, fmt.Errorf("bad tensor geometry: offset %s, size %s, stride %s", describe(args[1]), describe(args[2]), describe(args[3]))
	}
	return &tensorRef{storage: s, offset: off, shape: shape, stride: stride}, nil
}

// intTuple converts a tuple of non-negative ints.
func intTuple(v any) ([]int64, bool) {
	t, ok := v.(pyTuple)
	if !ok {
		return nil, false
	}
	out := make([]int64, len(t))
	for i, x := range t {
		if out[i], ok = x.(int64); !ok || out[i] < 0 {
			return nil, false
		}
	}
	return out, true
}

// A file can make the reader produce much more than it holds: zero
// strides (expand), several views of one storage, or one container or
// tensor referenced from many places (the pickle memo makes that cheap).
// Work is therefore budgeted: the walk may visit about as many objects as
// the file has bytes, and the tensor data and names produced may total
// 8 times the file size plus extraOutputBytes.
var extraOutputBytes int64 = 1 << 30

var errTooLarge = errors.New("checkpoint expands to too much data (an object or storage shared too often?)")

// flattener walks the unpickled object, collecting tensors and other
// leaves under their flattened names.
type flattener struct {
	refs   []*tensorRef
	names  []string
	other  map[string]any
	onPath map[any]bool
	steps  int64 // objects that may still be visited
	out    int64 // bytes that may still be produced
}

// flatten walks obj and materialises its tensors; size is the file size.
func flatten(obj any, load func(*storageRef) error, size int64) ([]Entry, map[string]any, error) {
	f := &flattener{
		other:  map[string]any{},
		onPath: map[any]bool{},
		steps:  size + 1024,
		out:    8*size + extraOutputBytes,
	}
	if err := f.walk(obj, "", 0); err != nil {
		return nil, nil, err
	}
	seen := make(map[string]bool, len(f.names))
	for i, r := range f.refs {
		if seen[f.names[i]] {
			return nil, nil, fmt.Errorf("two tensors are both named %q after flattening", f.names[i])
		}
		seen[f.names[i]] = true
		root := r.storage
		if root.root != nil {
			root = root.root
		}
		root.refs++
	}
	entries := make([]Entry, len(f.refs))
	for i, r := range f.refs {
		t, err := f.materialise(r, load)
		if err != nil {
			return nil, nil, fmt.Errorf("tensor %q: %w", f.names[i], err)
		}
		entries[i] = Entry{Name: f.names[i], Tensor: t}
	}
	return entries, f.other, nil
}

func (f *flattener) walk(v any, name string, depth int) error {
	if f.steps--; f.steps < 0 {
		return errTooLarge
	}
	if depth > 100 {
		return fmt.Errorf("containers nested too deeply at %q", name)
	}
	join := func(k string) (string, error) {
		if depth > 0 {
			k = name + "." + k
		}
		if f.out -= int64(len(k)); f.out < 0 {
			return "", errTooLarge
		}
		return k, nil
	}
	switch v.(type) {
	case *pyDict, *pyList:
		if f.onPath[v] {
			return fmt.Errorf("container at %q contains itself", name)
		}
		f.onPath[v] = true
		defer delete(f.onPath, v)
	}
	var keys []string
	var items []any
	switch v := v.(type) {
	case *tensorRef:
		f.refs = append(f.refs, v)
		f.names = append(f.names, name)
		return nil
	case *pyDict:
		for _, k := range v.keys {
			ks, err := keyString(k)
			if err != nil {
				return err
			}
			keys = append(keys, ks)
		}
		items = v.vals
	case *pyList:
		items = v.items
	case pyTuple:
		items = v
	case *pyObject:
		if f.containsTensor(v, map[any]bool{}, 0) {
			what := fmt.Sprintf("%q", name)
			if depth == 0 {
				what = "the checkpoint"
			}
			return fmt.Errorf("%s is a pickled %s object holding tensors; only (nested) dicts, lists and tuples of tensors are supported (save a state_dict() instead)", what, v.class)
		}
		if depth == 0 {
			return fmt.Errorf("the file holds a pickled %s object, not a dict of tensors as a checkpoint does (nothing in it was executed)", v.class)
		}
		f.other[name] = plain(v)
		return nil
	default:
		f.other[name] = plain(v)
		return nil
	}
	for i, x := range items {
		k := strconv.Itoa(i)
		if keys != nil {
			k = keys[i]
		}
		k, err := join(k)
		if err != nil {
			return err
		}
		if err := f.walk(x, k, depth+1); err != nil {
			return err
		}
	}
	return nil
}

// containsTensor reports whether a tensor can be reached from v.
func (f *flattener) containsTensor(v any, seen map[any]bool, depth int) bool {
	if f.steps--; f.steps < 0 || depth > 100 {
		return false
	}
	var items []any
	switch v := v.(type) {
	case *tensorRef:
		return true
	case pyTuple:
		items = v
	case *pyList:
		items = v.items
	case *pyDict:
		items = append(v.keys[:len(v.keys):len(v.keys)], v.vals...)
	case *pyObject:
		items = append(v.args[:len(v.args):len(v.args)], v.state)
	default:
		return false
	}
	switch v.(type) {
	case *pyList, *pyDict, *pyObject:
		if seen[v] {
			return false
		}
		seen[v] = true
	}
	for _, x := range items {
		if f.containsTensor(x, seen, depth+1) {
			return true
		}
	}
	return false
}

// materialise copies the elements of a strided view into a new contiguous
// tensor, checking that the view lies within its storage.
func (f *flattener) materialise(r *tensorRef, load func(*storageRef) error) (*Tensor, error) {
	s, base := r.storage, int64(0)
	if s.root != nil {
		s, base = s.root, r.storage.off
		if r.storage.off > s.numel || r.storage.numel > s.numel-r.storage.off {
			return nil, fmt.Errorf("storage view %s lies outside storage %s", r.storage.key, s.key)
		}
	}
	if s.data == nil {
		if need, ok := mulNoOverflow(s.numel, int64(s.dtype.ElemSize())); !ok || need > f.out {
			return nil, errTooLarge
		}
		if err := load(s); err != nil {
			return nil, err
		}
	}
	defer func() {
		if s.refs--; s.refs == 0 {
			s.data = nil
		}
	}()
	limit := s.numel - base // elements visible from the view's start
	if r.storage.root != nil {
		limit = r.storage.numel
	}

	es := int64(s.dtype.ElemSize())
	numel := int64(1)
	for _, d := range r.shape {
		var ok bool
		if numel, ok = mulNoOverflow(numel, d); !ok {
			return nil, fmt.Errorf("shape %v is too large", r.shape)
		}
	}
	nbytes, ok := mulNoOverflow(numel, es)
	if !ok {
		return nil, fmt.Errorf("shape %v is too large", r.shape)
	}
	t := &Tensor{DType: s.dtype, Shape: r.shape}
	if numel == 0 {
		t.Data = []byte{}
		return t, nil
	}
	// Largest element index reached, checked without overflow.
	last := r.offset
	for i, d := range r.shape {
		span, ok := mulNoOverflow(d-1, r.stride[i])
		if !ok || span > limit || last > limit-span {
			return nil, fmt.Errorf("view (offset %d, size %v, stride %v) lies outside its storage of %d elements", r.offset, r.shape, r.stride, limit)
		}
		last += span
	}
	if last >= limit {
		return nil, fmt.Errorf("view (offset %d, size %v, stride %v) lies outside its storage of %d elements", r.offset, r.shape, r.stride, limit)
	}
	if f.out -= nbytes; f.out < 0 {
		return nil, errTooLarge
	}
	src := s.data[(base+r.offset)*es : (base+last+1)*es]

	if isContiguous(r.shape, r.stride) {
		if s.refs == 1 && int64(len(src)) == int64(len(s.data)) {
			t.Data = src // sole user of the whole storage: no copy needed
		} else {
			t.Data = bytes.Clone(src)
		}
		return t, nil
	}
	// Copy row by row (the last dimension), an odometer walking the others.
	t.Data = make([]byte, 0, nbytes)
	nd := len(r.shape)
	rowLen, rowStride := r.shape[nd-1], r.stride[nd-1]
	idx := make([]int64, nd-1)
	for {
		off := int64(0)
		for i, x := range idx {
			off += x * r.stride[i]
		}
		if rowStride == 1 {
			t.Data = append(t.Data, src[off*es:(off+rowLen)*es]...)
		} else {
			for j := int64(0); j < rowLen; j++ {
				p := (off + j*rowStride) * es
				t.Data = append(t.Data, src[p:p+es]...)
			}
		}
		i := nd - 2
		for ; i >= 0; i-- {
			if idx[i]++; idx[i] < r.shape[i] {
				break
			}
			idx[i] = 0
		}
		if i < 0 {
			return t, nil
		}
	}
}

// isContiguous reports whether strides are those of a C-contiguous array,
// ignoring dimensions of size 1 (whose stride does not matter).
func isContiguous(shape, stride []int64) bool {
	want := int64(1)
	for i := len(shape) - 1; i >= 0; i-- {
		if shape[i] != 1 && stride[i] != want {
			return false
		}
		want *= shape[i]
	}
	return true
}

func mulNoOverflow(a, b int64) (int64, bool) {
	if a < 0 || b < 0 {
		return 0, false
	}
	if a == 0 || b == 0 {
		return 0, true
	}
	if a > math.MaxInt64/b {
		return 0, false
	}
	return a * b, true
}

func keyString(k any) (string, error) {
	switch k := k.(type) {
	case string:
		return k, nil
	case []byte:
		return string(k), nil
	case int64:
		return strconv.FormatInt(k, 10), nil
	case *big.Int:
		return k.String(), nil
	case bool:
		if k {
			return "True", nil
		}
		return "False", nil
	case nil:
		return "None", nil
	}
	return "", fmt.Errorf("%w dict key %s", errUnsupported, describe(k))
}

// pyString returns a str (or Python 2 byte string) value, or "".
func pyString(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case []byte:
		return string(v)
	}
	return ""
}

// plain converts a non-container, non-tensor value for ReadAll.
func plain(v any) any {
	switch v := v.(type) {
	case nil, bool, int64, *big.Int, float64, string, []byte:
		return v
	case pyGlobal:
		return Object{Class: v.String()}
	case *pyObject:
		return Object{Class: v.class.String()}
	case *storageRef:
		return Object{Class: "torch." + dtypeInfo[v.dtype].storage}
	}
	return Object{Class: typeName(v)}
}

// describe renders a value briefly for error messages.
func describe(v any) string { return describeDepth(v, 0) }

func describeDepth(v any, depth int) string {
	switch v := v.(type) {
	case string:
		return strconv.Quote(v)
	case int64, float64, bool, *big.Int:
		return fmt.Sprint(v)
	case pyTuple:
		if len(v) > 8 || depth > 2 {
			return fmt.Sprintf("(tuple of %d)", len(v))
		}
		parts := make([]string, len(v))
		for i, x := range v {
			parts[i] = describeDepth(x, depth+1)
		}
		return "(" + strings.Join(parts, ", ") + ")"
	}
	return typeName(v)
}
