package grains

import (
	"os"
	"testing"

	"erg/internal/testkit"
	"erg/sandbox"
)

func TestMain(m *testing.M) {
	sandbox.MaybeInit()
	code := m.Run()
	testkit.Cleanup()
	os.Exit(code)
}
