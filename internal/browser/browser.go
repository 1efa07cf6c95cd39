// Package browser drives a headless Chromium over the DevTools protocol (chromedp) for the tests
// of affgd's HTML reports: open a page from a file URL, collect what its console and the
// browser's log report as errors, click, read values with JavaScript, take screenshots.
//
// Only tests import it; the affgd binary does not link it. Chromium is Debian's `chromium`
// package (`make deps` installs it, scripts/deps-browser.sh), or whatever $AFFGD_CHROMIUM names.
package browser

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// Find returns the Chromium to use: $AFFGD_CHROMIUM, else the first of chromium,
// chromium-browser, google-chrome, google-chrome-stable on PATH. Without one it returns an error
// that says how to install it.
func Find() (string, error) {
	if p := os.Getenv("AFFGD_CHROMIUM"); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("$AFFGD_CHROMIUM: %w", err)
		}
		return p, nil
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p, nil
		}
	}
	return "", errors.New("no Chromium found (install Debian's chromium package: `make deps` does, or set $AFFGD_CHROMIUM)")
}

// Browser is one headless Chromium with one tab.
type Browser struct {
	ctx    context.Context
	cancel []context.CancelFunc
	mu     sync.Mutex
	errs   []string
}

// Options of a browser.
type Options struct {
	Width, Height int           // the window; 0 = 1400×1000
	Timeout       time.Duration // for everything the browser does; 0 = 90 s
}

// New starts Chromium bin headless (no sandbox, as root in CI needs; no GPU) with one blank tab.
func New(bin string, o Options) (*Browser, error) {
	if o.Width == 0 {
		o.Width, o.Height = 1400, 1000
	}
	if o.Timeout == 0 {
		o.Timeout = 90 * time.Second
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(bin),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.WindowSize(o.Width, o.Height),
		chromedp.Flag("hide-scrollbars", true),
		chromedp.Flag("mute-audio", true),
		chromedp.Flag("disable-dev-shm-usage", true), // small /dev/shm in containers
	)
	b := &Browser{}
	ctx, c0 := context.WithTimeout(context.Background(), o.Timeout)
	ctx, c1 := chromedp.NewExecAllocator(ctx, opts...)
	ctx, c2 := chromedp.NewContext(ctx)
	b.ctx, b.cancel = ctx, []context.CancelFunc{c2, c1, c0}
	// Listen sees an event before the reply to any command sent after it, so Errors is complete
	// for everything that happened before the last command returned.
	err := chromedp.Listen(ctx, func(ev any) {
		switch e := ev.(type) {
		case *runtime.EventConsoleAPICalled:
			if e.Type == runtime.ConsoleAPICalledTypeError || e.Type == runtime.ConsoleAPICalledTypeAssert {
				var parts []string
				for _, a := range e.Args {
					if a.Description != "" {
						parts = append(parts, a.Description)
					} else {
						parts = append(parts, fmt.Sprint(a.Value))
					}
				}
				b.addErr("console." + string(e.Type) + ": " + strings.Join(parts, " "))
			}
		case *runtime.EventExceptionThrown:
			d := e.ExceptionDetails
			msg := d.Text
			if d.Exception != nil && d.Exception.Description != "" {
				msg += " " + d.Exception.Description
			}
			b.addErr(fmt.Sprintf("uncaught exception at %s:%d: %s", d.URL, d.LineNumber+1, msg))
		case *cdplog.EventEntryAdded:
			if e.Entry != nil && e.Entry.Level == cdplog.EntryLevelError {
				b.addErr(fmt.Sprintf("browser log (%s): %s %s", e.Entry.Source, e.Entry.Text, e.Entry.URL))
			}
		}
	})
	if err != nil {
		b.Close()
		return nil, fmt.Errorf("starting %s: %w", bin, err)
	}
	return b, nil
}

func (b *Browser) addErr(s string) {
	b.mu.Lock()
	b.errs = append(b.errs, s)
	b.mu.Unlock()
}

// Errors returns what the page's console and the browser's log reported as errors so far:
// console.error calls, uncaught exceptions, resources that failed to load.
func (b *Browser) Errors() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.errs...)
}

// Close ends the browser.
func (b *Browser) Close() {
	for _, c := range b.cancel {
		c()
	}
}

// Open navigates to url and waits for its load event (pictures not lazily loaded included).
func (b *Browser) Open(url string) error {
	return chromedp.Do(b.ctx, chromedp.Navigate(url))
}

// Eval evaluates a JavaScript expression in b's page and returns its value decoded as T.
func Eval[T any](b *Browser, js string) (T, error) {
	return chromedp.Run(b.ctx, chromedp.Evaluate[T](js))
}

// Click clicks the first element that matches the CSS selector sel, as a mouse does (it
// scrolls it into view first).
func (b *Browser) Click(sel string) error {
	return chromedp.Do(b.ctx, chromedp.Click(chromedp.CSS(sel)))
}

// WaitTrue polls a JavaScript expression until it is true, for at most d.
func (b *Browser) WaitTrue(js string, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		ok, err := Eval[bool](b, js)
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s still false after %v", js, d)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Screenshot captures the whole page (full height) as a PNG.
func (b *Browser) Screenshot() ([]byte, error) {
	return chromedp.Run(b.ctx, chromedp.FullScreenshot(100))
}

// ViewportScreenshot captures what the window shows as a PNG.
func (b *Browser) ViewportScreenshot() ([]byte, error) {
	return chromedp.Run(b.ctx, chromedp.CaptureScreenshot())
}

// ForTest returns the Chromium for a test, or skips the test saying why there is none
// (with $AFFGD_REQUIRE_BROWSER=1 it fails instead, for machines that must run the browser tests).
func ForTest(t testing.TB) string {
	t.Helper()
	bin, err := Find()
	if err != nil {
		if os.Getenv("AFFGD_REQUIRE_BROWSER") == "1" {
			t.Fatalf("browser test: %v", err)
		}
		t.Skipf("browser test skipped: %v", err)
	}
	return bin
}
