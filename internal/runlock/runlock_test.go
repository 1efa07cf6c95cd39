package runlock

import (
	"bufio"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// A child process started by the tests below: it locks $RUNLOCK_DIR, says "locked", and holds
// the lock until its stdin closes (or it is killed).
func TestMain(m *testing.M) {
	if dir := os.Getenv("RUNLOCK_DIR"); dir != "" {
		l, err := Acquire(dir)
		if err != nil {
			os.Stdout.WriteString("error: " + err.Error() + "\n")
			os.Exit(3)
		}
		os.Stdout.WriteString("locked\n")
		bufio.NewReader(os.Stdin).ReadString('\n')
		l.Release()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// holderProcess starts a child that holds dir's lock.
func holderProcess(t *testing.T, dir string) (*exec.Cmd, func()) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "RUNLOCK_DIR="+dir)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, _ := bufio.NewReader(stdout).ReadString('\n')
	if line != "locked\n" {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("child: %q", line)
	}
	return cmd, func() { stdin.Close(); cmd.Wait() }
}

func TestTwoProcesses(t *testing.T) {
	dir := t.TempDir()
	child, release := holderProcess(t, dir)
	_, err := Acquire(dir)
	var held *HeldError
	if !errors.As(err, &held) || held.PID != child.Process.Pid || held.Dir != dir {
		t.Fatalf("Acquire while another process holds the folder: %v, want a HeldError naming pid %d", err, child.Process.Pid)
	}
	if !strings.Contains(err.Error(), dir) || !strings.Contains(err.Error(), "pid") {
		t.Errorf("message %q names neither the folder nor the pid", err)
	}
	release()
	if _, err := os.Stat(filepath.Join(dir, FileName)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the lock file is left after Release: %v", err)
	}
	l, err := Acquire(dir)
	if err != nil {
		t.Fatalf("Acquire after the holder released: %v", err)
	}
	b, _ := os.ReadFile(filepath.Join(dir, FileName))
	if strings.TrimSpace(string(b)) != itoa(os.Getpid()) {
		t.Errorf("lock file holds %q, want our pid %d", b, os.Getpid())
	}
	l.Release()
	l.Release() // twice is harmless
}

// TestKilledHolder: the kernel drops the lock of a killed process; its lock file stays behind
// and is taken over.
func TestKilledHolder(t *testing.T) {
	dir := t.TempDir()
	child, _ := holderProcess(t, dir)
	if err := child.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	child.Wait()
	if _, err := os.Stat(filepath.Join(dir, FileName)); err != nil {
		t.Fatalf("a killed holder's lock file should remain: %v", err)
	}
	l, err := Acquire(dir)
	if err != nil {
		t.Fatalf("Acquire after the holder was killed: %v", err)
	}
	defer l.Release()
	// A second Acquire in the same process is refused too (flock locks are per open file).
	if _, err := Acquire(dir); err == nil {
		t.Fatal("a second Acquire of a held folder succeeded")
	}
}

// TestReleaseRace: a process that opened the lock file just before the holder released (and
// removed) it must not end up holding a lock on the removed file while a third takes the new one.
func TestReleaseRace(t *testing.T) {
	dir := t.TempDir()
	for range 200 {
		a, err := Acquire(dir)
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan *Lock)
		go func() {
			for {
				l, err := Acquire(dir)
				if err == nil {
					done <- l
					return
				}
			}
		}()
		time.Sleep(time.Microsecond)
		a.Release()
		b := <-done
		// b must hold the file now at the path: a fresh Acquire sees it held.
		if _, err := Acquire(dir); err == nil {
			t.Fatal("two holders at once after a release")
		}
		if !same(b.f, b.path) {
			t.Fatal("the new holder locks a removed file")
		}
		b.Release()
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
