// Package unixsock listens on a Unix socket only its owner may connect
// to, without touching the process's umask: umask is process-wide, so
// setting it around a listen gave every file another goroutine made in
// that moment the socket's mode (app trees copied 0400, a grain's /var
// unreadable to it), which made grains fail to start at random when
// nodes started side by side.
package unixsock

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
)

// Listen binds path with mode 0600. The socket is made in a new private
// directory beside path (0700, so nobody else can connect while its mode
// is still the umask's) and renamed into place once it is 0600. Closing
// the listener does not remove path; the caller does when it is done.
func Listen(path string) (*net.UnixListener, error) {
	dir, err := os.MkdirTemp(filepath.Dir(path), ".sock-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	tmp := filepath.Join(dir, "s")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: tmp, Net: "unix"})
	if err != nil {
		return nil, err
	}
	ln.SetUnlinkOnClose(false)
	if err := os.Chmod(tmp, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("socket %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		ln.Close()
		return nil, fmt.Errorf("socket %s: %w", path, err)
	}
	return ln, nil
}
