package sandbox

import (
	"fmt"
	"os"
	"os/exec"
	"testing"
)

func TestStaleZygoteGroupsAreOnlyThoseOfGoneProcesses(t *testing.T) {
	gone := exec.Command("true")
	if err := gone.Run(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		stale bool
	}{
		{fmt.Sprintf("zygote-%d-a1b2c3", os.Getpid()), false},     // ours: being filled
		{fmt.Sprintf("zygote-%d-a1b2c3", gone.Process.Pid), true}, // its node is gone
		{"zygote-a1b2c3d4e5f6", true},                             // an older node's name
		{"zygote-x-a1b2c3", true},
		{"grain-a1b2c3", false},
	} {
		if got := staleZygote(tc.name); got != tc.stale {
			t.Errorf("staleZygote(%q) = %v, want %v", tc.name, got, tc.stale)
		}
	}
}
