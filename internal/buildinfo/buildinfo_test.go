package buildinfo

import (
	"runtime/debug"
	"testing"
)

func TestFromBuildInfo(t *testing.T) {
	rev := "0123456789abcdef0123456789abcdef01234567"
	for _, tc := range []struct {
		name string
		bi   *debug.BuildInfo
		ok   bool
		want string
	}{
		{"no build info", nil, false, Unknown},
		{"no vcs stamp (-buildvcs=false)", &debug.BuildInfo{}, true, Unknown},
		{"clean", &debug.BuildInfo{Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: rev}, {Key: "vcs.modified", Value: "false"}}}, true, rev},
		{"modified", &debug.BuildInfo{Settings: []debug.BuildSetting{{Key: "vcs.modified", Value: "true"}, {Key: "vcs.revision", Value: rev}}}, true, rev + "-dirty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := fromBuildInfo(tc.bi, tc.ok); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestCommitPrefersLinkerFlag(t *testing.T) {
	old := commit
	defer func() { commit = old }()
	commit = "abc123-dirty"
	if got := Commit(); got != "abc123-dirty" {
		t.Errorf("Commit() = %q with -X commit=abc123-dirty", got)
	}
}
