//go:build !amd64

package sandbox

import "errors"

// tracedCalls is empty: NewRunner refuses architectures other than amd64.
var tracedCalls = map[uintptr]pathArg{}

func startTrace() error { return errors.New("sandbox: file tracing exists only for amd64") }

// auditArch matches no notification: nothing is traced here.
const auditArch = 0
