package sandbox

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Freeze pauses every process of the sandbox, for a consistent copy of
// its files, and returns the function that resumes them. On cgroup v2 it
// uses cgroup.freeze; on v1 (where the runner places sandboxes in the
// memory and pids hierarchies only) it stops each process of the group
// with SIGSTOP until no running one is left, and thaw sends SIGCONT.
func (s *Sandbox) Freeze() (thaw func(), err error) {
	g := s.cgroup()
	switch g.version {
	case "v2":
		return freezeV2(g.dirs[0])
	case "v1":
		return freezeSignals(filepath.Join(g.dirs[len(g.dirs)-1], "cgroup.procs"))
	}
	return nil, errors.New("no cgroup to freeze the sandbox with")
}

func freezeV2(dir string) (func(), error) {
	if err := writeFile(filepath.Join(dir, "cgroup.freeze"), "1"); err != nil {
		return nil, err
	}
	thaw := func() { writeFile(filepath.Join(dir, "cgroup.freeze"), "0") }
	deadline := time.Now().Add(5 * time.Second)
	for {
		b, err := os.ReadFile(filepath.Join(dir, "cgroup.events"))
		if err == nil && strings.Contains(string(b), "frozen 1") {
			return thaw, nil
		}
		if time.Now().After(deadline) {
			thaw()
			return nil, errors.New("the sandbox did not freeze in 5s")
		}
		time.Sleep(time.Millisecond)
	}
}

func freezeSignals(procs string) (func(), error) {
	stopped := map[int]bool{}
	thaw := func() {
		for pid := range stopped {
			unix.Kill(pid, unix.SIGCONT)
		}
	}
	// A process may fork between reading the list and stopping it: read
	// again until a pass finds nothing new.
	for range 100 {
		b, err := os.ReadFile(procs)
		if err != nil {
			thaw()
			return nil, err
		}
		fresh := false
		for _, f := range strings.Fields(string(b)) {
			pid, err := strconv.Atoi(f)
			if err != nil || pid <= 0 || stopped[pid] {
				continue
			}
			if unix.Kill(pid, unix.SIGSTOP) == nil {
				stopped[pid] = true
				fresh = true
			}
		}
		if !fresh {
			// SIGSTOP is asynchronous: wait until each is really stopped.
			for pid := range stopped {
				waitStopped(pid)
			}
			return thaw, nil
		}
	}
	thaw()
	return nil, errors.New("the sandbox kept forking while being frozen")
}

func waitStopped(pid int) {
	deadline := time.Now().Add(time.Second)
	for time.Now().Before(deadline) {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			return
		}
		// state is the field after the ")" closing the command name
		s := string(b)
		if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) && (s[i+2] == 'T' || s[i+2] == 't') {
			return
		}
		time.Sleep(100 * time.Microsecond)
	}
}
