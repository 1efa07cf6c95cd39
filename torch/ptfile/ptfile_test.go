package ptfile

import (
	"errors"
	"github.com/affgd/affgd/internal/testref"

	"archive/zip"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// The reference data is made by tests/ptfile/gen_ptfile.py (make testdata).

type manifest struct {
	Tensors []struct {
		Name  string
		DType string
		Shape []int64
		Data  string // base64
	}
	Other map[string]any
}

type index struct {
	Cases []struct {
		Case     string
		Manifest string
		Files    []string
	}
	Errors []struct {
		File     string
		Contains string
	}
}

// repoRoot is the repository root, relative to this package's directory
// (where go test runs).
var repoRoot = filepath.Join("..", "..")

// testdata returns the directory of the reference data and its index:
// $AFFGD_TESTDATA/ptfile, by default <repo>/tests/testdata/ptfile.
func testdata(tb testing.TB) (string, index) {
	tb.Helper()
	dir := testref.Dir(tb, "ptfile")
	var idx index
	b, err := os.ReadFile(filepath.Join(dir, "index.json"))
	if err != nil {
		tb.Fatalf("reference data missing: run 'make testdata' (%v)", err)
	}
	if err := json.Unmarshal(b, &idx); err != nil {
		tb.Fatalf("bad %s/index.json: %v", dir, err)
	}
	return dir, idx
}

func readManifest(t *testing.T, path string) manifest {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var m manifest
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return m
}

// checkTensors compares entries with a manifest, byte for byte.
func checkTensors(t *testing.T, got []Entry, want manifest) {
	t.Helper()
	if len(got) != len(want.Tensors) {
		names := make([]string, len(got))
		for i, e := range got {
			names[i] = e.Name
		}
		t.Fatalf("got %d tensors %q, want %d", len(got), names, len(want.Tensors))
	}
	for i, w := range want.Tensors {
		g := got[i]
		data, err := base64.StdEncoding.DecodeString(w.Data)
		if err != nil {
			t.Fatal(err)
		}
		if w.Shape == nil {
			w.Shape = []int64{}
		}
		shape := g.Tensor.Shape
		if shape == nil {
			shape = []int64{}
		}
		switch {
		case g.Name != w.Name:
			t.Errorf("tensor %d: name %q, want %q", i, g.Name, w.Name)
		case g.Tensor.DType.String() != w.DType:
			t.Errorf("%s: dtype %v, want %s", w.Name, g.Tensor.DType, w.DType)
		case !reflect.DeepEqual(shape, w.Shape):
			t.Errorf("%s: shape %v, want %v", w.Name, shape, w.Shape)
		case !bytes.Equal(g.Tensor.Data, data):
			t.Errorf("%s: data differs:\n got %x\nwant %x", w.Name, g.Tensor.Data, data)
		}
	}
}

// jsonNormal converts v to what encoding/json decodes its encoding to.
func jsonNormal(t *testing.T, v any) any {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var out any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestReadReference(t *testing.T) {
	dir, idx := testdata(t)
	for _, c := range idx.Cases {
		want := readManifest(t, filepath.Join(dir, c.Manifest))
		for _, file := range c.Files {
			t.Run(file, func(t *testing.T) {
				path := filepath.Join(dir, file)
				got, other, err := ReadAll(path)
				if err != nil {
					t.Fatal(err)
				}
				checkTensors(t, got, want)
				if want.Other == nil {
					want.Other = map[string]any{}
				}
				if g := jsonNormal(t, other); !reflect.DeepEqual(g, any(want.Other)) {
					t.Errorf("other values:\n got %v\nwant %v", g, want.Other)
				}

				// ReadFrom on the bytes gives the same.
				b, err := os.ReadFile(path)
				if err != nil {
					t.Fatal(err)
				}
				got2, err := ReadFrom(bytes.NewReader(b), int64(len(b)), file)
				if err != nil {
					t.Fatal(err)
				}
				checkTensors(t, got2, want)
			})
		}
	}
}

// Tensors that share a storage in the file must not share memory.
func TestReadSharedStorageIsCopied(t *testing.T) {
	dir, _ := testdata(t)
	for _, file := range []string{"views_zip.pt", "views_legacy.pt"} {
		entries, err := Read(filepath.Join(dir, file))
		if err != nil {
			t.Fatal(err)
		}
		byName := map[string]*Tensor{}
		for _, e := range entries {
			byName[e.Name] = e.Tensor
		}
		base, flat := byName["base"], byName["flat"]
		if base == nil || flat == nil || !bytes.Equal(base.Data, flat.Data) {
			t.Fatalf("%s: base and flat missing or different", file)
		}
		for i := range base.Data {
			base.Data[i] = 0xAB
		}
		if bytes.Equal(base.Data, flat.Data) {
			t.Errorf("%s: base and flat share memory", file)
		}
	}
}

func TestReadErrors(t *testing.T) {
	dir, idx := testdata(t)
	zipFile, err := os.ReadFile(filepath.Join(dir, "dtypes_zip.pt"))
	if err != nil {
		t.Fatal(err)
	}
	legacyFile, err := os.ReadFile(filepath.Join(dir, "dtypes_legacy.pt"))
	if err != nil {
		t.Fatal(err)
	}
	var noPickle bytes.Buffer
	zw := zip.NewWriter(&noPickle)
	for _, name := range []string{"archive/version", "archive/data/0"} {
		w, _ := zw.Create(name)
		w.Write([]byte("3\n"))
	}
	zw.Close()
	random := make([]byte, 4096)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range random {
		random[i] = byte(r.Uint32())
	}

	tests := []badInput{
		{"empty file", "empty file", nil},
		{"random bytes", "not a PyTorch checkpoint (no data.pkl in zip and no legacy magic number)", random},
		{"text", "not a PyTorch checkpoint", []byte("hello, world\n")},
		{"truncated zip", "corrupt or truncated zip archive", zipFile[:len(zipFile)/2]},
		{"zip without data.pkl", "not a PyTorch checkpoint (zip archive without <archive>/data.pkl)", noPickle.Bytes()},
		{"legacy cut in storages", "truncated file", legacyFile[:len(legacyFile)-10]},
		{"legacy cut in pickle", "truncated file", legacyFile[:200]},
		{"legacy cut in magic", "not a PyTorch checkpoint", legacyFile[:5]},
	}
	for _, e := range idx.Errors {
		b, err := os.ReadFile(filepath.Join(dir, e.File))
		if err != nil {
			t.Fatal(err)
		}
		tests = append(tests, badInput{e.File, e.Contains, b})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			const name = "/x/y.pth"
			_, err := ReadFrom(bytes.NewReader(tt.data), int64(len(tt.data)), name)
			if err == nil {
				t.Fatal("no error")
			}
			t.Log(err)
			if !strings.HasPrefix(err.Error(), "ptfile: "+name+": ") || !strings.Contains(err.Error(), tt.contains) {
				t.Errorf("error %q, want it to start with %q and contain %q", err, "ptfile: "+name+": ", tt.contains)
			}
		})
	}

	if _, err := Read(filepath.Join(t.TempDir(), "missing.pt")); err == nil || !strings.Contains(err.Error(), "missing.pt") {
		t.Errorf("Read of a missing file: %v", err)
	}
}

func TestRoundTrip(t *testing.T) {
	dir, idx := testdata(t)
	out := t.TempDir()
	var pairs []string // FILE MANIFEST arguments for check_roundtrip.py
	for _, c := range idx.Cases {
		want := readManifest(t, filepath.Join(dir, c.Manifest))
		entries, err := Read(filepath.Join(dir, c.Files[0]))
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(out, c.Case+".pt")
		if err := Write(path, entries); err != nil {
			t.Fatal(err)
		}
		t.Run(c.Case, func(t *testing.T) {
			got, err := Read(path)
			if err != nil {
				t.Fatal(err)
			}
			checkTensors(t, got, want)

			var buf bytes.Buffer
			if err := WriteTo(&buf, entries); err != nil {
				t.Fatal(err)
			}
			if b, _ := os.ReadFile(path); !bytes.Equal(b, buf.Bytes()) {
				t.Error("Write and WriteTo output differ")
			}
			checkAligned(t, buf.Bytes())
		})
		pairs = append(pairs, path, filepath.Join(dir, c.Manifest))
	}
	if names, _ := filepath.Glob(filepath.Join(out, ".*")); len(names) > 0 {
		t.Errorf("temporary files left behind: %q", names)
	}

	t.Run("torch.load", func(t *testing.T) {
		python := os.Getenv("AFFGD_PYTHON")
		if python == "" {
			t.Skip("AFFGD_PYTHON is not set: skipping the check that torch.load reads written files (make test sets it)")
		}
		cmd := exec.Command(python, append([]string{filepath.Join(repoRoot, "tests", "ptfile", "check_roundtrip.py")}, pairs...)...)
		outb, err := cmd.CombinedOutput()
		t.Logf("%s", outb)
		if err != nil {
			t.Fatalf("check_roundtrip.py: %v", err)
		}
	})
}

// checkAligned checks that every data record's payload starts at a
// multiple of 64 bytes.
func checkAligned(t *testing.T, b []byte) {
	t.Helper()
	zr, err := zip.NewReader(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range zr.File {
		off, err := f.DataOffset()
		if err != nil {
			t.Fatal(err)
		}
		if off%storageAlignment != 0 {
			t.Errorf("record %s starts at offset %d", f.Name, off)
		}
	}
}

func TestWrite(t *testing.T) {
	f32 := func(shape ...int64) *Tensor {
		n := int64(4)
		for _, d := range shape {
			n *= d
		}
		return &Tensor{DType: Float32, Shape: shape, Data: make([]byte, n)}
	}
	big := make([]byte, 8)
	for i := range big {
		big[i] = byte(i + 1)
	}
	ok := []Entry{
		{"layer.0.weight", f32(2, 3)},
		{"scalar", f32()},
		{"empty", f32(0, 5)},
		{"wide", f32(1, 1, 1, 1, 2)},
		{"", &Tensor{DType: Int64, Shape: []int64{}, Data: big}},
		{"ünïcode", &Tensor{DType: Bool, Shape: []int64{3}, Data: []byte{1, 0, 1}}},
	}
	path := filepath.Join(t.TempDir(), "w.pt")
	if err := Write(path, ok); err != nil {
		t.Fatal(err)
	}
	got, err := Read(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(ok) {
		t.Fatalf("read %d entries, wrote %d", len(got), len(ok))
	}
	for i := range ok {
		g, w := got[i], ok[i]
		if g.Name != w.Name || g.Tensor.DType != w.Tensor.DType || len(g.Tensor.Shape) != len(w.Tensor.Shape) || !bytes.Equal(g.Tensor.Data, w.Tensor.Data) {
			t.Errorf("entry %d: got %q %v %v, want %q %v %v", i, g.Name, g.Tensor.DType, g.Tensor.Shape, w.Name, w.Tensor.DType, w.Tensor.Shape)
		}
	}

	bad := []struct {
		name     string
		entries  []Entry
		contains string
	}{
		{"nil tensor", []Entry{{"a", nil}}, `tensor "a" is nil`},
		{"duplicate", []Entry{{"a", f32(1)}, {"a", f32(1)}}, `duplicate tensor name "a"`},
		{"bad dtype", []Entry{{"a", &Tensor{Shape: []int64{1}, Data: make([]byte, 4)}}}, "invalid dtype"},
		{"short data", []Entry{{"a", &Tensor{DType: Float64, Shape: []int64{2}, Data: make([]byte, 8)}}}, "needs 16 bytes"},
		{"negative dim", []Entry{{"a", &Tensor{DType: Float32, Shape: []int64{-1}}}}, "invalid shape"},
		{"bad utf-8", []Entry{{"\xff", f32(1)}}, "not valid UTF-8"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "bad.pt")
			err := Write(p, tt.entries)
			if err == nil || !strings.Contains(err.Error(), tt.contains) {
				t.Errorf("Write: %v, want error containing %q", err, tt.contains)
			}
			if _, serr := os.Stat(p); !os.IsNotExist(serr) {
				t.Errorf("failed Write left %s behind", p)
			}
			if err := WriteTo(&bytes.Buffer{}, tt.entries); err == nil {
				t.Error("WriteTo: no error")
			}
		})
	}
}

func TestDType(t *testing.T) {
	tests := []struct {
		d    DType
		name string
		size int
	}{
		{Float32, "float32", 4}, {Float64, "float64", 8}, {Float16, "float16", 2},
		{BFloat16, "bfloat16", 2}, {Int64, "int64", 8}, {Int32, "int32", 4},
		{Int16, "int16", 2}, {Int8, "int8", 1}, {Uint8, "uint8", 1}, {Bool, "bool", 1},
		{0, "DType(0)", 0}, {99, "DType(99)", 0},
	}
	for _, tt := range tests {
		if tt.d.String() != tt.name || tt.d.ElemSize() != tt.size {
			t.Errorf("DType %d: %q, %d; want %q, %d", int(tt.d), tt.d.String(), tt.d.ElemSize(), tt.name, tt.size)
		}
	}
}

// FuzzRead checks that no input makes the reader panic (or allocate far
// more than the input's size). Run with: go test -fuzz=FuzzRead ./torch/ptfile/
func FuzzRead(f *testing.F) {
	dir, idx := testdata(f)
	for _, c := range idx.Cases {
		for _, file := range c.Files {
			if b, err := os.ReadFile(filepath.Join(dir, file)); err == nil && len(b) <= 8<<10 {
				f.Add(b)
			}
		}
	}
	for _, h := range hostile {
		f.Add(h.data)
	}
	var buf bytes.Buffer
	WriteTo(&buf, []Entry{{"a", &Tensor{DType: Float16, Shape: []int64{2}, Data: []byte{1, 2, 3, 4}}}})
	f.Add(buf.Bytes())
	defer func(n int64) { extraOutputBytes = n }(extraOutputBytes)
	extraOutputBytes = 1 << 20
	f.Fuzz(func(t *testing.T, b []byte) {
		// A hang is a bug too: crash so that the fuzzer records the input.
		tm := time.AfterFunc(10*time.Second, func() { panic("FuzzRead: input took over 10s") })
		defer tm.Stop()
		// decode, not ReadFrom: a panic must fail the fuzzer, not be recovered.
		tensors, _, err := decode(bytes.NewReader(b), int64(len(b)), "fuzz")
		if err != nil {
			return
		}
		for _, e := range tensors {
			if int64(len(e.Tensor.Data)) != e.Tensor.Numel()*int64(e.Tensor.DType.ElemSize()) {
				t.Fatalf("%s: %d bytes for shape %v of %v", e.Name, len(e.Tensor.Data), e.Tensor.Shape, e.Tensor.DType)
			}
		}
	})
}

// torchZip builds a zip checkpoint from a hand-written pickle and storage
// records (named by key).
func torchZip(pkl string, storages map[string][]byte) []byte {
	var b bytes.Buffer
	zw := zip.NewWriter(&b)
	w, _ := zw.Create("x/data.pkl")
	w.Write([]byte(pkl))
	for k, v := range storages {
		w, _ := zw.Create("x/data/" + k)
		w.Write(v)
	}
	zw.Close()
	return b.Bytes()
}

// tensorPickle returns pickle opcodes that push a float32 tensor on storage
// key "0" of numel elements, with the given offset, shape and stride
// (written as BININT1 tuples).
func tensorPickle(numel, offset byte, shape, stride []byte) string {
	tuple := func(v []byte) string {
		s := "("
		for _, x := range v {
			s += "K" + string([]byte{x})
		}
		return s + "t"
	}
	return "ctorch._utils\n_rebuild_tensor_v2\n((X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x000X\x03\x00\x00\x00cpuK" +
		string([]byte{numel}) + "tQK" + string([]byte{offset}) + tuple(shape) + tuple(stride) + "\x89}tR"
}

// hostile holds hand-written files that a malicious checkpoint could be.
// badInput is a file that Read must reject with an error containing
// contains.
type badInput struct {
	name, contains string
	data           []byte
}

var hostile = func() []badInput {
	one := make([]byte, 4*5)
	return []badInput{
		{"dict containing itself", "contains itself", torchZip("\x80\x02}q\x00X\x01\x00\x00\x00ah\x00s.", nil)},
		{"exponential sharing", "expands to too much data", torchZip("\x80\x02N"+strings.Repeat("2\x86", 60)+".", nil)},
		{"expanded view", "expands to too much data", torchZip("\x80\x02"+tensorPickle(1, 0, []byte{255, 255, 255, 255, 255}, []byte{0, 0, 0, 0, 0})+".", map[string][]byte{"0": one})},
		{"view out of bounds", "lies outside its storage", torchZip("\x80\x02"+tensorPickle(5, 1, []byte{5}, []byte{1})+".", map[string][]byte{"0": one})},
		{"storage record short", "holds 20 bytes, expected 24", torchZip("\x80\x02"+tensorPickle(6, 0, []byte{6}, []byte{1})+".", map[string][]byte{"0": one})},
		{"storage record missing", "storage record x/data/0 is missing", torchZip("\x80\x02"+tensorPickle(5, 0, []byte{5}, []byte{1})+".", nil)},
		{"memo miss", "memo key 7 not found", torchZip("\x80\x02h\x07.", nil)},
		{"stack underflow", "stack underflow", torchZip("\x80\x02R.", nil)},
		{"extension opcode", "unsupported pickle opcode", torchZip("\x80\x02\x82\x01.", nil)},
		{"huge string length", "truncated file", torchZip("\x80\x02\x8d\xff\xff\xff\xff\xff\xff\xff\x7f.", nil)},
		{"code in the pickle", "nothing in it was executed", torchZip("\x80\x02cos\nsystem\nX\x02\x00\x00\x00id\x85R.", nil)},
		{"rebuild of unknown kind", "unsupported call torch._utils._rebuild_sparse_tensor", torchZip("\x80\x02ctorch._utils\n_rebuild_sparse_tensor\n)R.", nil)},
	}
}()

func TestReadHostile(t *testing.T) {
	one := make([]byte, 4*5)
	tests := hostile
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ReadFrom(bytes.NewReader(tt.data), int64(len(tt.data)), "h.pt")
			if err == nil || !strings.Contains(err.Error(), tt.contains) {
				t.Errorf("error %v, want one containing %q", err, tt.contains)
			}
		})
	}

	// A call of an unknown class is never executed: it yields an inert object among the other
	// values.
	pkl := "\x80\x02}(X\x03\x00\x00\x00argcargparse\nNamespace\n)RX\x01\x00\x00\x00t" + tensorPickle(5, 0, []byte{5}, []byte{1}) + "u."
	data := torchZip(pkl, map[string][]byte{"0": one})
	f := filepath.Join(t.TempDir(), "inert.pt")
	if err := os.WriteFile(f, data, 0o644); err != nil {
		t.Fatal(err)
	}
	tensors, other, err := ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	if len(tensors) != 1 || tensors[0].Name != "t" || !reflect.DeepEqual(other, map[string]any{"arg": Object{Class: "argparse.Namespace"}}) {
		t.Errorf("got %v, %v", tensors, other)
	}
}

// A pickle naming a callable that runs code (what a malicious "checkpoint" holds: a __reduce__
// to os.system, eval, subprocess) is refused with a *CodeError saying nothing was executed, before
// anything else of the file is read; a file whose top level is an object is refused too.
func TestReadCode(t *testing.T) {
	one := make([]byte, 4*5)
	tensor := tensorPickle(5, 0, []byte{5}, []byte{1})
	for _, tc := range []struct{ name, pkl, global string }{
		{"GLOBAL os.system REDUCE at the top", "\x80\x02cos\nsystem\nX\x02\x00\x00\x00id\x85R.", "os.system"},
		{"os.system inside a state dict", "\x80\x02}(X\x03\x00\x00\x00cmdcos\nsystem\nX\x04\x00\x00\x00exit\x85RX\x01\x00\x00\x00t" + tensor + "u.", "os.system"},
		{"STACK_GLOBAL posix.system", "\x80\x04\x8c\x05posix\x8c\x06system\x93\x8c\x02id\x85R.", "posix.system"},
		{"builtins.eval", "\x80\x02cbuiltins\neval\nX\x04\x00\x00\x001+1\x85R.", "builtins.eval"},
		{"builtins.getattr chain", "\x80\x02c__builtin__\ngetattr\n.", "__builtin__.getattr"},
		{"subprocess.Popen NEWOBJ", "\x80\x02csubprocess\nPopen\n)\x81.", "subprocess.Popen"},
		{"nested module", "\x80\x02cos.path\njoin\n.", "os.path.join"},
		{"torch.hub.load", "\x80\x02ctorch.hub\nload\n.", "torch.hub.load"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := torchZip(tc.pkl, map[string][]byte{"0": one})
			_, err := ReadFrom(bytes.NewReader(data), int64(len(data)), "evil.pt")
			var ce *CodeError
			if !errors.As(err, &ce) || ce.Global != tc.global {
				t.Fatalf("error %v, want a CodeError naming %s", err, tc.global)
			}
			for _, want := range []string{"evil.pt", tc.global, "a checkpoint never contains", "nothing in it was executed"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not say %q", err, want)
				}
			}
		})
	}
	data := torchZip("\x80\x02cargparse\nNamespace\n)R.", nil)
	if _, err := ReadFrom(bytes.NewReader(data), int64(len(data)), "obj.pt"); err == nil ||
		!strings.Contains(err.Error(), "pickled argparse.Namespace object, not a dict of tensors") {
		t.Errorf("top-level object: %v", err)
	}
	// Safe builtins stay allowed.
	data = torchZip("\x80\x02}X\x01\x00\x00\x00scbuiltins\nset\n]\x85Rs.", nil)
	if _, err := ReadFrom(bytes.NewReader(data), int64(len(data)), "set.pt"); err != nil {
		t.Errorf("builtins.set: %v", err)
	}
}
