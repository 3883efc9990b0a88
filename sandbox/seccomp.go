package sandbox

import (
	"fmt"
	"slices"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The seccomp filter is an allow-list: a table (seccomp_<arch>.go) puts
// every syscall number the architecture has into a group with a verdict
// and the reason for it. Numbers the table does not know, including those
// the kernel adds after this was written, get ENOSYS, so that libc and
// language runtimes fall back to an older call as they do on an older
// kernel; known calls a grain has no business making get EPERM. A few
// calls are allowed only with certain arguments (socket families, clone
// flags, ioctl requests): their group carries an argument check.
//
// The table is compiled into a classic BPF program that does a binary
// search over ranges of equal verdict, so a call costs about eight
// comparisons however long the table grows. decide evaluates the same
// table in Go; the conformance test runs the compiled program in a BPF
// interpreter for every number and compares.

// Offsets in struct seccomp_data.
const (
	offNr   = 0
	offArch = 4
)

// offArg is the offset of the low 32 bits of argument i (little-endian).
// Every argument the filter checks is an int or unsigned int in the
// kernel, which ignores the high half too.
func offArg(i int) uint32 { return 16 + 8*uint32(i) }

const (
	bpfLd   = unix.BPF_LD | unix.BPF_W | unix.BPF_ABS
	bpfJeq  = unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K
	bpfJge  = unix.BPF_JMP | unix.BPF_JGE | unix.BPF_K
	bpfJset = unix.BPF_JMP | unix.BPF_JSET | unix.BPF_K
	bpfJa   = unix.BPF_JMP | unix.BPF_JA
	bpfRet  = unix.BPF_RET | unix.BPF_K
)

const (
	retAllow = unix.SECCOMP_RET_ALLOW
	retKill  = unix.SECCOMP_RET_KILL_PROCESS
)

func retErrno(e syscall.Errno) uint32 {
	return unix.SECCOMP_RET_ERRNO | uint32(e)&unix.SECCOMP_RET_DATA
}

// argCheck decides a call by its arguments. code is a self-contained BPF
// block (every path ends in a return) entered with the syscall number
// already matched; eval is the same decision in Go.
type argCheck struct {
	code []unix.SockFilter
	eval func(args [6]uint32) uint32
}

// group is a set of syscalls with one verdict (ret, or check when it is
// set) and the reason for it.
type group struct {
	why   string
	ret   uint32
	check *argCheck
	nrs   []uintptr
}

// policy is a whole table: the groups, and the highest number the table
// knows (anything above, up to the x32 range, is unknown: ENOSYS).
type policy struct {
	arch   uint32
	maxNr  uintptr
	groups []group
	index  []*group // by number, made by lookup
}

// lookup returns the group of nr, or nil.
func (p *policy) lookup(nr uintptr) *group {
	if p.index == nil {
		p.index = make([]*group, p.maxNr+1)
		for i := range p.groups {
			for _, n := range p.groups[i].nrs {
				if n <= p.maxNr {
					p.index[n] = &p.groups[i]
				}
			}
		}
	}
	if nr > p.maxNr {
		return nil
	}
	return p.index[nr]
}

// decide is the table's verdict for a call, evaluated in Go.
func (p *policy) decide(arch, nr uint32, args [6]uint32) uint32 {
	switch {
	case arch != p.arch:
		return retKill
	case nr >= x32Bit:
		return retErrno(unix.EPERM)
	}
	g := p.lookup(uintptr(nr))
	switch {
	case g == nil:
		return retErrno(unix.ENOSYS)
	case g.check != nil:
		return g.check.eval(args)
	}
	return g.ret
}

// validate reports a number in two groups or above maxNr: a table bug.
func (p *policy) validate() error {
	seen := map[uintptr]string{}
	for _, g := range p.groups {
		if g.check == nil && g.ret == 0 {
			return fmt.Errorf("seccomp group %q has no verdict", g.why)
		}
		for _, nr := range g.nrs {
			if other, ok := seen[nr]; ok {
				return fmt.Errorf("seccomp: syscall %d is in both %q and %q", nr, other, g.why)
			}
			if nr > p.maxNr {
				return fmt.Errorf("seccomp: syscall %d in %q is above the table's highest, %d", nr, g.why, p.maxNr)
			}
			seen[nr] = g.why
		}
	}
	return nil
}

// span is a range [lo, hi) of syscall numbers compiled to one block.
type span struct {
	lo, hi uint64
	code   []unix.SockFilter
}

// compile turns the table into a seccomp program.
func (p *policy) compile() []unix.SockFilter {
	if err := p.validate(); err != nil {
		panic(err)
	}
	ret := func(v uint32) []unix.SockFilter { return []unix.SockFilter{{Code: bpfRet, K: v}} }
	var spans []span
	add := func(lo, hi uint64, code []unix.SockFilter, mergeable bool) {
		if n := len(spans); mergeable && n > 0 && spans[n-1].hi == lo && len(spans[n-1].code) == 1 &&
			len(code) == 1 && spans[n-1].code[0] == code[0] {
			spans[n-1].hi = hi
			return
		}
		spans = append(spans, span{lo, hi, code})
	}
	for nr := uintptr(0); nr <= p.maxNr; nr++ {
		g := p.lookup(nr)
		switch {
		case g == nil:
			add(uint64(nr), uint64(nr)+1, ret(retErrno(unix.ENOSYS)), true)
		case g.check != nil:
			add(uint64(nr), uint64(nr)+1, g.check.code, false)
		default:
			add(uint64(nr), uint64(nr)+1, ret(g.ret), true)
		}
	}
	add(uint64(p.maxNr)+1, x32Bit, ret(retErrno(unix.ENOSYS)), true)
	add(x32Bit, 1<<32, ret(retErrno(unix.EPERM)), true) // x32 calls reuse x86_64's arch value
	prog := []unix.SockFilter{
		{Code: bpfLd, K: offArch},
		{Code: bpfJeq, Jt: 1, K: p.arch},
		{Code: bpfRet, K: retKill}, // another ABI: the numbers would mean other calls
		{Code: bpfLd, K: offNr},
	}
	prog = append(prog, search(spans)...)
	if len(prog) > unix.BPF_MAXINSNS {
		panic(fmt.Sprintf("seccomp: program of %d instructions is too long", len(prog)))
	}
	return prog
}

// search emits a binary search over spans (sorted, adjacent) with the
// syscall number in A. Blocks are self-contained, so they nest.
func search(spans []span) []unix.SockFilter {
	if len(spans) == 1 {
		return spans[0].code
	}
	mid := len(spans) / 2
	left, right := search(spans[:mid]), search(spans[mid:])
	k := uint32(spans[mid].lo)
	var out []unix.SockFilter
	if len(left) <= 255 {
		out = append(out, unix.SockFilter{Code: bpfJge, Jt: uint8(len(left)), K: k})
	} else {
		// Too far for a conditional jump: true falls onto a long jump.
		out = append(out, unix.SockFilter{Code: bpfJge, Jt: 0, Jf: 1, K: k},
			unix.SockFilter{Code: bpfJa, K: uint32(len(left))})
	}
	out = append(out, left...)
	return append(out, right...)
}

// oneOf builds an argCheck on the low 32 bits of argument arg: values in
// allowed pass (a nested check may refine one of them), the rest get
// otherwise.
func oneOf(arg int, allowed []uint32, refine map[uint32]*argCheck, otherwise uint32) *argCheck {
	var code []unix.SockFilter
	code = append(code, unix.SockFilter{Code: bpfLd, K: offArg(arg)})
	// Each value: jeq v -> its block; the blocks follow the final return.
	var blocks [][]unix.SockFilter
	for _, v := range allowed {
		b := []unix.SockFilter{{Code: bpfRet, K: retAllow}}
		if r := refine[v]; r != nil {
			b = r.code
		}
		blocks = append(blocks, b)
	}
	// From jeq i: past the jeqs after it and the otherwise return, then
	// past the blocks before its own.
	n := len(allowed)
	for i, v := range allowed {
		off := n - i
		for _, b := range blocks[:i] {
			off += len(b)
		}
		if off > 255 {
			panic("seccomp: argument check too long")
		}
		code = append(code, unix.SockFilter{Code: bpfJeq, Jt: uint8(off), K: v})
	}
	code = append(code, unix.SockFilter{Code: bpfRet, K: otherwise})
	for _, b := range blocks {
		code = append(code, b...)
	}
	return &argCheck{code: code, eval: func(args [6]uint32) uint32 {
		v := args[arg]
		if !slices.Contains(allowed, v) {
			return otherwise
		}
		if r := refine[v]; r != nil {
			return r.eval(args)
		}
		return retAllow
	}}
}

// noneOf builds an argCheck refusing the listed values of argument arg
// with refused; everything else passes.
func noneOf(arg int, values []uint32, refused uint32) *argCheck {
	code := []unix.SockFilter{{Code: bpfLd, K: offArg(arg)}}
	for i, v := range values {
		code = append(code, unix.SockFilter{Code: bpfJeq, Jt: uint8(len(values) - i), K: v})
	}
	code = append(code, unix.SockFilter{Code: bpfRet, K: retAllow}, unix.SockFilter{Code: bpfRet, K: refused})
	return &argCheck{code: code, eval: func(args [6]uint32) uint32 {
		if slices.Contains(values, args[arg]) {
			return refused
		}
		return retAllow
	}}
}

// noBits builds an argCheck refusing argument arg with refused when it
// has any of bits set.
func noBits(arg int, bits, refused uint32) *argCheck {
	return &argCheck{
		code: []unix.SockFilter{
			{Code: bpfLd, K: offArg(arg)},
			{Code: bpfJset, Jt: 1, K: bits},
			{Code: bpfRet, K: retAllow},
			{Code: bpfRet, K: refused},
		},
		eval: func(args [6]uint32) uint32 {
			if args[arg]&bits != 0 {
				return refused
			}
			return retAllow
		},
	}
}

// RefusedSyscall is a syscall the sandbox refuses whatever its
// arguments, and the errno it answers.
type RefusedSyscall struct {
	Nr    uintptr
	Errno syscall.Errno
}

// RefusedSyscalls lists every syscall number up to the highest the table
// knows that the filter refuses outright, for a test inside a grain to
// try each one.
func RefusedSyscalls() []RefusedSyscall {
	p := sandboxPolicy()
	var out []RefusedSyscall
	for nr := uintptr(0); nr <= p.maxNr; nr++ {
		g := p.lookup(nr)
		switch {
		case g == nil:
			out = append(out, RefusedSyscall{nr, unix.ENOSYS})
		case g.check == nil && g.ret&unix.SECCOMP_RET_ACTION_FULL == unix.SECCOMP_RET_ERRNO:
			out = append(out, RefusedSyscall{nr, syscall.Errno(g.ret & unix.SECCOMP_RET_DATA)})
		}
	}
	return out
}

// filter returns the seccomp program installed in every sandbox.
func filter() []unix.SockFilter { return sandboxPolicy().compile() }

// SeccompProgram returns the sandbox's seccomp filter as raw struct
// sock_filter bytes, the form bwrap's --seccomp option reads. It lets a
// benchmark give another sandbox the same filter.
func SeccompProgram() []byte {
	prog := filter()
	size := len(prog) * int(unsafe.Sizeof(prog[0]))
	return append([]byte(nil), unsafe.Slice((*byte)(unsafe.Pointer(&prog[0])), size)...)
}
