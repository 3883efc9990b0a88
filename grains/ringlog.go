package grains

import "sync"

// ringLog keeps the last size bytes written to it: a grain's output stays
// readable for debugging without ever growing the node's memory or disk.
type ringLog struct {
	mu   sync.Mutex
	buf  []byte
	next int  // where the next byte goes
	full bool // buf has wrapped at least once
}

func newRingLog(size int) *ringLog { return &ringLog{buf: make([]byte, size)} }

func (l *ringLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := len(p)
	if len(p) > len(l.buf) {
		p = p[len(p)-len(l.buf):]
	}
	for len(p) > 0 {
		c := copy(l.buf[l.next:], p)
		p = p[c:]
		l.next += c
		if l.next == len(l.buf) {
			l.next = 0
			l.full = true
		}
	}
	return n, nil
}

// Bytes returns a copy of what the log holds, oldest first.
func (l *ringLog) Bytes() []byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.full {
		return append([]byte(nil), l.buf[:l.next]...)
	}
	out := make([]byte, 0, len(l.buf))
	out = append(out, l.buf[l.next:]...)
	return append(out, l.buf[:l.next]...)
}
