package unixsock

import (
	"io/fs"

	"golang.org/x/sys/unix"
)

// currentUmask is the process's umask when the tests start (reading it
// means setting it, so only here, before any test runs).
var currentUmask = func() fs.FileMode {
	old := unix.Umask(0)
	unix.Umask(old)
	return fs.FileMode(old)
}()
