// Package runlock gives one process at a time a folder: an exclusive flock(2) on a lock file in
// it, holding the holder's process id. The kernel drops the lock when the process ends however it
// ends (kill -9 included), so a lock is never stale; Release also removes the file.
package runlock

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// FileName is the lock file's name inside the locked folder.
const FileName = ".affgd.lock"

// HeldError reports a folder locked by another process.
type HeldError struct {
	Dir string
	PID int // the holder's process id; 0 when it could not be read
}

func (e *HeldError) Error() string {
	if e.PID > 0 {
		return fmt.Sprintf("%s is in use by another process (pid %d)", e.Dir, e.PID)
	}
	return fmt.Sprintf("%s is in use by another process", e.Dir)
}

// Lock is a held folder lock.
type Lock struct {
	f    *os.File
	path string
}

// Acquire locks dir (which must exist) without waiting: it returns a *HeldError when another
// process holds it.
func Acquire(dir string) (*Lock, error) {
	path := filepath.Join(dir, FileName)
	for attempt := 0; ; attempt++ {
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
		if err != nil {
			return nil, fmt.Errorf("cannot create the lock file: %w", err)
		}
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if errors.Is(err, syscall.EWOULDBLOCK) {
			pid := holder(f)
			f.Close()
			return nil, &HeldError{Dir: dir, PID: pid}
		}
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("cannot lock %s: %w", path, err)
		}
		// A holder releasing between our open and our flock has removed the file we opened: the
		// lock is then on an inode nobody else sees, so take the one now at path instead.
		if same(f, path) {
			if err := f.Truncate(0); err == nil {
				_, err = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
			}
			if err != nil {
				f.Close()
				return nil, fmt.Errorf("cannot write the lock file %s: %w", path, err)
			}
			return &Lock{f: f, path: path}, nil
		}
		f.Close()
		if attempt == 100 {
			return nil, fmt.Errorf("cannot lock %s: the lock file keeps being replaced", path)
		}
	}
}

// Release removes the lock file and drops the lock. It may be called more than once.
func (l *Lock) Release() {
	if l == nil || l.f == nil {
		return
	}
	os.Remove(l.path) // while still holding the lock: see Acquire
	l.f.Close()
	l.f = nil
}

// same reports whether f is the file at path.
func same(f *os.File, path string) bool {
	a, err := f.Stat()
	if err != nil {
		return false
	}
	b, err := os.Stat(path)
	return err == nil && os.SameFile(a, b)
}

// holder reads the holder's pid from the lock file. A holder that has just locked may not have
// written it yet, so an empty file is read again for a little while.
func holder(f *os.File) int {
	buf := make([]byte, 32)
	for range 50 {
		n, _ := f.ReadAt(buf, 0)
		if pid, err := strconv.Atoi(strings.TrimSpace(string(buf[:n]))); err == nil && pid > 0 {
			return pid
		}
		time.Sleep(10 * time.Millisecond)
	}
	return 0
}
