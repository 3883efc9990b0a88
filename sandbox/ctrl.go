package sandbox

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// The control channel is a SOCK_SEQPACKET socket pair: the host keeps one
// end, the init gets the other as fd 3. Every message is one packet whose
// first byte says what it is.
//
// The init is started before the host knows what it will run (a pooled
// "zygote", see zygote.go): it does what needs no spec, says 'I', and
// waits for 'G', which brings the spec and, as SCM_RIGHTS, the fds that
// belong to it: with Detached the detached mounts of the app tree and the
// var dir (moved to rootFd and varFd), then the app's stdout and stderr
// if Stdout and Stderr say so (moved to fds 1 and 2).
//
//	host -> init  'G' JSON initConfig       start: set up and exec the app
//	host -> init  'D' id:u32 port:u16       dial 127.0.0.1:port inside
//	init -> host  'I'                       ready for 'G' (once, before anything else)
//	init -> host  'R' pid:u32               app started (pid inside the sandbox)
//	init -> host  'E' text                  setup failed; init exits
//	init -> host  'D' id:u32 errno:u32      dial answer; errno 0 carries one fd (SCM_RIGHTS)
//	init -> host  'X' status:u32            app's wait status; init exits
//	init -> host  'T'                       with Trace, before 'R': one fd (SCM_RIGHTS), the seccomp listener
const (
	msgGo     = 'G'
	msgDial   = 'D'
	msgReady  = 'R'
	msgIdle   = 'I'
	msgError  = 'E'
	msgExit   = 'X'
	ctrlFd    = 3
	rootFd    = 4        // with initConfig.Detached: a detached mount of the app tree
	varFd     = 5        // and of the var dir (both arrive with 'G')
	maxCtrl   = 64 << 10 // largest message either side accepts
	maxErrMsg = 4 << 10
)

// initConfig is what the init needs to build the sandbox. The host sends it
// in the 'G' message rather than in argv or the environment, so nothing of
// it is visible in the app's /proc.
type initConfig struct {
	BecomeRoot bool // the host has just mapped root inside: become it (see lateMapping)
	Root       string
	Var        string
	Detached   bool // Root and Var arrive as detached mounts on rootFd and varFd
	Stdout     bool // 'G' carries the app's stdout; else it is /dev/null
	Stderr     bool // and its stderr
	TmpBytes   int64
	NoFile     uint64
	Args       []string
	Env        []string
	HostRO     []string // development root: see dev.go
	Trace      bool     // send the host a seccomp listener ('T'): see trace.go
	Bridge     uint16   // open the bridge's listeners ('B'), TCP on this port: see bridge.go
}

func dialMsg(id uint32, port uint16) []byte {
	b := []byte{msgDial, 0, 0, 0, 0, 0, 0}
	binary.LittleEndian.PutUint32(b[1:], id)
	binary.LittleEndian.PutUint16(b[5:], port)
	return b
}

func parseDialMsg(b []byte) (id uint32, port uint16, err error) {
	if len(b) != 7 || b[0] != msgDial {
		return 0, 0, errors.New("malformed dial request")
	}
	return binary.LittleEndian.Uint32(b[1:]), binary.LittleEndian.Uint16(b[5:]), nil
}

func u32Msg(kind byte, v uint32) []byte {
	b := []byte{kind, 0, 0, 0, 0}
	binary.LittleEndian.PutUint32(b[1:], v)
	return b
}

func dialReplyMsg(id uint32, errno uint32) []byte {
	b := make([]byte, 9)
	b[0] = msgDial
	binary.LittleEndian.PutUint32(b[1:], id)
	binary.LittleEndian.PutUint32(b[5:], errno)
	return b
}

// initMsg is one parsed message from the init.
type initMsg struct {
	kind  byte
	id    uint32 // dial reply
	errno uint32 // dial reply
	val   uint32 // ready: pid; exit: wait status
	text  string // error
}

// parseInitMsg checks a message from the init. The init runs inside the
// sandbox with the app's uid, so a compromised app could in principle
// forge anything here; nothing it sends may do more than fail a dial or end
// its own sandbox.
func parseInitMsg(b []byte) (initMsg, error) {
	if len(b) == 0 {
		return initMsg{}, errors.New("empty message")
	}
	m := initMsg{kind: b[0]}
	switch m.kind {
	case msgReady, msgExit:
		if len(b) != 5 {
			return m, fmt.Errorf("message %q: bad length %d", m.kind, len(b))
		}
		m.val = binary.LittleEndian.Uint32(b[1:])
	case msgDial:
		if len(b) != 9 {
			return m, fmt.Errorf("dial reply: bad length %d", len(b))
		}
		m.id = binary.LittleEndian.Uint32(b[1:])
		m.errno = binary.LittleEndian.Uint32(b[5:])
	case msgIdle:
		if len(b) != 1 {
			return m, fmt.Errorf("message %q: bad length %d", m.kind, len(b))
		}
	case msgError:
		t := b[1:]
		if len(t) > maxErrMsg {
			t = t[:maxErrMsg]
		}
		m.text = string(t)
	default:
		return m, fmt.Errorf("unknown message type %#x", m.kind)
	}
	return m, nil
}
