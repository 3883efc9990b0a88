package lab

import (
	"os"
	"testing"

	"erg/nodetest"
)

func TestMain(m *testing.M) { os.Exit(nodetest.Main(m)) }
