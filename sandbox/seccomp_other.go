//go:build !amd64

package sandbox

// x32Bit has no meaning off x86_64; the compiler needs a value.
const x32Bit = 0x40000000

// sandboxPolicy exists only for amd64 so far; NewRunner refuses other
// architectures before anything would install a filter.
func sandboxPolicy() *policy { panic("sandbox: no seccomp table for this architecture") }
