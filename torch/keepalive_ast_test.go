package torch

import (
	"bytes"
	"go/ast"
	"go/parser"
	"go/printer"
	"go/token"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// The binding's memory safety rests on one rule: a Go value (*Tensor, *Generator) whose handle
// is passed to a cgo call must stay reachable until the call returns, or its collection cleanup
// may free the handle while C uses it. The checker below enforces the rule mechanically on the
// package's sources: every argument of a C.* call that is a handle taken from a Go value —
// hdl(x), x.h, x.handle(), x.g, or a slice made by handles(xs) — needs runtime.KeepAlive(x)
// (resp. xs) in the same function, deferred, or as a statement after the call.

// keepAliveViolation is one cgo call whose handle's owner is not kept alive.
type keepAliveViolation struct {
	Pos   token.Position
	Call  string // the C function
	Owner string // the Go value that must be kept alive
}

// checkKeepAlive returns the violations in the files, and how many handle-taking cgo calls it
// checked.
func checkKeepAlive(fset *token.FileSet, files []*ast.File) (bad []keepAliveViolation, calls int) {
	expr := func(e ast.Expr) string {
		var b bytes.Buffer
		_ = printer.Fprint(&b, fset, e)
		return b.String()
	}
	isC := func(e ast.Expr) (string, bool) {
		sel, ok := e.(*ast.SelectorExpr)
		if !ok {
			return "", false
		}
		id, ok := sel.X.(*ast.Ident)
		return sel.Sel.Name, ok && id.Name == "C"
	}
	for _, f := range files {
		for _, decl := range f.Decls {
			fn, ok := decl.(*ast.FuncDecl)
			if !ok || fn.Body == nil {
				continue
			}
			// Variables holding handles(xs)'s results stand for xs.
			sliceOwner := map[string]string{}
			ast.Inspect(fn.Body, func(n ast.Node) bool {
				as, ok := n.(*ast.AssignStmt)
				if !ok || len(as.Rhs) != 1 {
					return true
				}
				call, ok := as.Rhs[0].(*ast.CallExpr)
				if !ok || len(call.Args) != 1 {
					return true
				}
				if id, ok := call.Fun.(*ast.Ident); ok && id.Name == "handles" {
					for _, l := range as.Lhs {
						if li, ok := l.(*ast.Ident); ok && li.Name != "_" {
							sliceOwner[li.Name] = expr(call.Args[0])
						}
					}
				}
				return true
			})
			// KeepAlive(x): deferred (anywhere) or a plain statement (with its position).
			deferred := map[string]bool{}
			after := map[string][]token.Pos{}
			ast.Inspect(fn.Body, func(n ast.Node) bool {
				var call *ast.CallExpr
				isDefer := false
				switch s := n.(type) {
				case *ast.DeferStmt:
					call, isDefer = s.Call, true
				case *ast.ExprStmt:
					call, _ = s.X.(*ast.CallExpr)
				}
				if call == nil || len(call.Args) != 1 {
					return true
				}
				sel, ok := call.Fun.(*ast.SelectorExpr)
				if !ok || sel.Sel.Name != "KeepAlive" {
					return true
				}
				if id, ok := sel.X.(*ast.Ident); !ok || id.Name != "runtime" {
					return true
				}
				a := expr(call.Args[0])
				if isDefer {
					deferred[a] = true
				} else {
					after[a] = append(after[a], call.Pos())
				}
				return true
			})
			kept := func(owner string, end token.Pos) bool {
				if deferred[owner] {
					return true
				}
				for _, p := range after[owner] {
					if p > end {
						return true
					}
				}
				return false
			}
			ast.Inspect(fn.Body, func(n ast.Node) bool {
				call, ok := n.(*ast.CallExpr)
				if !ok {
					return true
				}
				name, ok := isC(call.Fun)
				if !ok {
					return true
				}
				var owners []string
				for _, a := range call.Args {
					ast.Inspect(a, func(m ast.Node) bool {
						switch x := m.(type) {
						case *ast.CallExpr:
							if id, ok := x.Fun.(*ast.Ident); ok && id.Name == "hdl" && len(x.Args) == 1 {
								owners = append(owners, expr(x.Args[0]))
								return false
							}
							if sel, ok := x.Fun.(*ast.SelectorExpr); ok && sel.Sel.Name == "handle" && len(x.Args) == 0 {
								owners = append(owners, expr(sel.X))
								return false
							}
						case *ast.SelectorExpr:
							if x.Sel.Name == "h" || x.Sel.Name == "g" {
								if id, ok := x.X.(*ast.Ident); ok && id.Name != "C" {
									owners = append(owners, expr(x.X))
									return false
								}
							}
						case *ast.Ident:
							if o, ok := sliceOwner[x.Name]; ok {
								owners = append(owners, o)
							}
						}
						return true
					})
				}
				if len(owners) > 0 {
					calls++
				}
				seen := map[string]bool{}
				for _, o := range owners {
					if seen[o] {
						continue
					}
					seen[o] = true
					if !kept(o, call.End()) {
						bad = append(bad, keepAliveViolation{Pos: fset.Position(call.Pos()), Call: "C." + name, Owner: o})
					}
				}
				return true
			})
		}
	}
	return bad, calls
}

// TestCgoCallsKeepHandlesAlive runs the checker on this package's sources.
func TestCgoCallsKeepHandlesAlive(t *testing.T) {
	fset := token.NewFileSet()
	paths, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(paths)
	var files []*ast.File
	for _, p := range paths {
		if strings.HasSuffix(p, "_test.go") {
			continue
		}
		src, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		f, err := parser.ParseFile(fset, p, src, 0)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	bad, calls := checkKeepAlive(fset, files)
	for _, v := range bad {
		t.Errorf("%s: %s takes a handle of %s, which is not kept alive (add defer runtime.KeepAlive(%s))", v.Pos, v.Call, v.Owner, v.Owner)
	}
	// The package has well over a hundred such calls; far fewer means the checker stopped
	// recognising them.
	if calls < 100 {
		t.Errorf("the checker found only %d cgo calls taking handles in %d files", calls, len(files))
	}
	t.Logf("%d cgo calls taking tensor or generator handles, in %d files: all keep their owners alive", calls, len(files))
}

// TestKeepAliveCheckerFinds checks the checker on sources that break the rule in each way it
// knows, and on ones that follow it.
func TestKeepAliveCheckerFinds(t *testing.T) {
	const src = `package torch
import "runtime"
func ok1(t *Tensor) { defer runtime.KeepAlive(t); C.at_a(hdl(t)) }
func ok2(t *Tensor) { C.at_a(t.h); runtime.KeepAlive(t) }
func ok3(ts []*Tensor) { defer runtime.KeepAlive(ts); p, n, hs := handles(ts); C.at_b(p, n); _ = hs }
func ok4(g *Generator) { defer runtime.KeepAlive(g); C.at_c(g.handle()) }
func bad1(t *Tensor) { C.at_a(hdl(t)) }
func bad2(t, o *Tensor) { defer runtime.KeepAlive(t); C.at_d(hdl(t), hdl(o)) }
func bad3(t *Tensor) { runtime.KeepAlive(t); C.at_a(t.h) }
func bad4(ts []*Tensor) { p, n, hs := handles(ts); C.at_b(p, n); _ = hs }
func bad5(g *Generator) { C.at_c(g.handle()) }
func bad6(g *Generator) { C.at_c(g.g) }
`
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "x.go", src, 0)
	if err != nil {
		t.Fatal(err)
	}
	bad, calls := checkKeepAlive(fset, []*ast.File{f})
	if calls != 10 {
		t.Errorf("found %d handle-taking calls, want 10", calls)
	}
	got := map[string]bool{}
	for _, v := range bad {
		got[v.Owner+"@"+strings.Split(v.Pos.String(), ":")[1]] = true
	}
	want := []string{"t@7", "o@8", "t@9", "ts@10", "g@11", "g@12"}
	if len(bad) != len(want) {
		t.Errorf("violations %v, want %v", bad, want)
	}
	for _, w := range want {
		if !got[w] {
			t.Errorf("missed %s (found %v)", w, bad)
		}
	}
}
