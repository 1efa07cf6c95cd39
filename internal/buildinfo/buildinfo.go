// Package buildinfo says which commit of affgd a binary was built from, for the reports it
// writes. The Makefile records it with
//
//	go build -ldflags "-X github.com/affgd/affgd/internal/buildinfo.commit=$(git describe --always --dirty --abbrev=40)"
//
// and a plain `go build` in a git checkout records it in the binary's VCS stamp (unless
// -buildvcs=false), which Commit reads with debug.ReadBuildInfo when the flag was not given.
package buildinfo

import (
	"runtime/debug"
	"strings"
)

// commit is set at link time by the Makefile (-X); empty otherwise.
var commit string

// Unknown is what Commit returns when the binary carries no commit.
const Unknown = "unknown"

// Commit returns the affgd commit the binary was built from: the Makefile's -X value, else the
// Go toolchain's vcs.revision (with "-dirty" when vcs.modified), else "unknown".
func Commit() string {
	if c := strings.TrimSpace(commit); c != "" {
		return c
	}
	return fromBuildInfo(debug.ReadBuildInfo())
}

// fromBuildInfo reads the VCS stamp of a build.
func fromBuildInfo(bi *debug.BuildInfo, ok bool) string {
	if !ok || bi == nil {
		return Unknown
	}
	var rev, modified string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			modified = s.Value
		}
	}
	if rev == "" {
		return Unknown
	}
	if modified == "true" {
		rev += "-dirty"
	}
	return rev
}
