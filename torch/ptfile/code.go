package ptfile

import (
	"fmt"
	"strings"
)

// CodeError reports a pickle that names a Python callable that runs code (os.system,
// subprocess.Popen, builtins.eval, …): a checkpoint never holds one, and a file that does was
// made to run code when Python's pickle loads it. This package never imports or calls anything,
// so nothing was executed; the file is refused.
type CodeError struct {
	Global string // module.name, e.g. "os.system"
}

func (e *CodeError) Error() string {
	return fmt.Sprintf("the file holds a reference to %s, a Python object a checkpoint never contains "+
		"(a pickle built to run code when Python loads it); it was refused and nothing in it was executed", e.Global)
}

// codeModules are modules whose callables run commands or code, open files or sockets, or call
// other callables by name, after the lists of pickle scanners (picklescan, fickling). Their
// submodules count too.
var codeModules = []string{
	"os", "posix", "nt", "subprocess", "sys", "pty", "shutil", "socket", "runpy", "importlib", "imp",
	"ctypes", "code", "codeop", "commands", "popen2", "platform", "webbrowser", "multiprocessing",
	"threading", "_thread", "thread", "asyncio", "signal", "pickle", "_pickle", "cPickle", "marshal",
	"shelve", "dill", "joblib", "bdb", "pdb", "timeit", "trace", "profile", "cProfile", "pydoc",
	"site", "pip", "setuptools", "distutils", "ensurepip", "venv", "types", "operator", "functools",
	"io", "_io", "pathlib", "tempfile", "glob", "http", "httplib", "urllib", "urllib2", "ftplib",
	"smtplib", "telnetlib", "requests", "aiohttp", "sqlite3", "torch.hub", "numpy.f2py", "numpy.testing",
}

// safeBuiltins are the builtins a pickle may name: types whose call only builds a value.
var safeBuiltins = map[string]bool{
	"dict": true, "list": true, "tuple": true, "set": true, "frozenset": true, "bytearray": true,
	"bytes": true, "complex": true, "int": true, "float": true, "bool": true, "str": true,
	"slice": true, "range": true, "object": true, "unicode": true, "long": true,
}

// codeGlobal returns a *CodeError when module.name is a callable that runs code.
func codeGlobal(module, name string) error {
	if module == "builtins" || module == "__builtin__" {
		if safeBuiltins[name] {
			return nil
		}
		return &CodeError{Global: module + "." + name}
	}
	for _, m := range codeModules {
		if module == m || strings.HasPrefix(module, m+".") {
			return &CodeError{Global: module + "." + name}
		}
	}
	return nil
}
