package apitokens

import (
	"net"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Limits bound what one client address may send to the API origin. Zero
// fields take the defaults.
type Limits struct {
	// Rate and Burst bound every request: a DAV client syncing a calendar
	// sends bursts of small requests, which the burst absorbs.
	Rate  rate.Limit // requests per second; default 50
	Burst int        // default 200
	// FailureBurst bad tokens may come from one address at once, then one
	// more each FailureEvery; past that every request from the address is
	// refused until the allowance grows again, good tokens included, so
	// guessing goes no faster by mixing in a known token.
	FailureBurst int           // default 20
	FailureEvery time.Duration // default 5s
}

func (l Limits) withDefaults() Limits {
	if l.Rate <= 0 {
		l.Rate = 50
	}
	if l.Burst <= 0 {
		l.Burst = 200
	}
	if l.FailureBurst <= 0 {
		l.FailureBurst = 20
	}
	if l.FailureEvery <= 0 {
		l.FailureEvery = 5 * time.Second
	}
	return l
}

// addrLimiter keeps Limits per client address (an IPv6 address per /64,
// which one home is given whole).
type addrLimiter struct {
	lim Limits

	mu        sync.Mutex
	addrs     map[string]*addrState
	lastSweep time.Time
}

type addrState struct {
	req, fail *rate.Limiter
	seen      time.Time
}

func newAddrLimiter(l Limits) *addrLimiter {
	return &addrLimiter{lim: l, addrs: map[string]*addrState{}, lastSweep: time.Now()}
}

// key folds an IPv6 address to its /64.
func key(addr string) string {
	ip := net.ParseIP(addr)
	if ip == nil || ip.To4() != nil {
		return addr
	}
	return ip.Mask(net.CIDRMask(64, 128)).String() + "/64"
}

func (l *addrLimiter) state(addr string, now time.Time) *addrState {
	k := key(addr)
	st := l.addrs[k]
	if st == nil {
		st = &addrState{
			req:  rate.NewLimiter(l.lim.Rate, l.lim.Burst),
			fail: rate.NewLimiter(rate.Every(l.lim.FailureEvery), l.lim.FailureBurst),
		}
		l.addrs[k] = st
	}
	st.seen = now
	l.sweep(now)
	return st
}

// sweep forgets addresses quiet long enough that their allowances are
// full again, at most once a minute.
func (l *addrLimiter) sweep(now time.Time) {
	if now.Sub(l.lastSweep) < time.Minute {
		return
	}
	l.lastSweep = now
	full := time.Duration(l.lim.FailureBurst) * l.lim.FailureEvery
	for k, st := range l.addrs {
		if now.Sub(st.seen) > full && now.Sub(st.seen) > time.Minute {
			delete(l.addrs, k)
		}
	}
}

// allow counts one request from addr, or says how long it must wait.
func (l *addrLimiter) allow(addr string) (time.Duration, bool) {
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	st := l.state(addr, now)
	if st.fail.TokensAt(now) < 1 {
		return l.lim.FailureEvery, false
	}
	if !st.req.AllowN(now, 1) {
		return time.Second, false
	}
	return 0, true
}

// failed counts a bad token from addr.
func (l *addrLimiter) failed(addr string) {
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.state(addr, now).fail.AllowN(now, 1)
}
