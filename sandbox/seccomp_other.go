//go:build !amd64

package sandbox

import "golang.org/x/sys/unix"

// filter exists only for amd64 so far; NewRunner refuses other
// architectures before anything would install it.
func filter() []unix.SockFilter { panic("sandbox: no seccomp filter for this architecture") }

// SeccompProgram returns nil: there is no filter for this architecture.
func SeccompProgram() []byte { return nil }
